from django.urls import path

from streams import api, views

app_name = "streams"

api_urlpatterns = [
    path("streams", api.stream_list, name="api-stream-list"),
    path("streams/<str:stream>", api.stream_detail, name="api-stream-detail"),
    path("streams/<str:stream>/events", api.stream_events, name="api-stream-events"),
    path("events", api.event_list, name="api-event-list"),
    path("events/<str:event_id>", api.event_detail, name="api-event-detail"),
]

urlpatterns = [
    path("streams/", views.stream_list, name="list"),
    path("streams/<str:name>/", views.stream_detail, name="detail"),
    path("events/", views.event_log, name="log"),
    path("events/<uuid:event_id>/", views.event_detail, name="event"),
]
