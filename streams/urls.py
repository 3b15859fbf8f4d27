from django.urls import path

from streams import api, consumer_views, sink_views, views

app_name = "streams"

api_urlpatterns = [
    path("streams", api.stream_list, name="api-stream-list"),
    path("streams/<str:stream>", api.stream_detail, name="api-stream-detail"),
    path("streams/<str:stream>/events", api.stream_events, name="api-stream-events"),
    path("events", api.event_list, name="api-event-list"),
    path("events/<str:event_id>", api.event_detail, name="api-event-detail"),
]

urlpatterns = [
    path("dashboard/", consumer_views.dashboard, name="dashboard"),
    path("consumers/", consumer_views.consumer_list, name="consumers"),
    path("consumers/sinks/new", sink_views.sink_new, name="sink-new"),
    path("consumers/<str:name>/", consumer_views.consumer_detail, name="consumer"),
    path("consumers/<str:name>/sink", sink_views.sink_edit, name="sink-edit"),
    path("consumers/<str:name>/pause", consumer_views.pause, name="consumer-pause"),
    path("consumers/<str:name>/resume", consumer_views.resume, name="consumer-resume"),
    path("consumers/<str:name>/parked/<int:parked_id>/retry", consumer_views.retry, name="parked-retry"),
    path("consumers/<str:name>/parked/<int:parked_id>/skip", consumer_views.skip, name="parked-skip"),
    path("streams/", views.stream_list, name="list"),
    path("streams/<str:name>/", views.stream_detail, name="detail"),
    path("events/", views.event_log, name="log"),
    path("events/<uuid:event_id>/", views.event_detail, name="event"),
]
