from django.urls import path

from streams import (
    api,
    api_audit,
    api_sources,
    api_subscriptions,
    audit_views,
    consumer_views,
    lookup,
    sink_views,
    source_views,
    views,
)

app_name = "streams"

api_urlpatterns = [
    path("streams", api.stream_list, name="api-stream-list"),
    path("streams/<str:stream>", api.stream_detail, name="api-stream-detail"),
    path("streams/<str:stream>/events", api.stream_events, name="api-stream-events"),
    path("events", api.event_list, name="api-event-list"),
    path("events/<str:event_id>", api.event_detail, name="api-event-detail"),
    path("subscriptions", api_subscriptions.subscription_list, name="api-subscription-list"),
    path("subscriptions/<str:name>", api_subscriptions.subscription_detail, name="api-subscription-detail"),
    path("subscriptions/<str:name>/fetch", api_subscriptions.fetch, name="api-subscription-fetch"),
    path("subscriptions/<str:name>/ack", api_subscriptions.ack, name="api-subscription-ack"),
    path("subscriptions/<str:name>/nack", api_subscriptions.nack, name="api-subscription-nack"),
    path("sources", api_sources.source_list, name="api-source-list"),
    path("sources/<str:name>", api_sources.source_detail, name="api-source-detail"),
    path("sources/<str:name>/pause", api_sources.source_pause, name="api-source-pause"),
    path("sources/<str:name>/resume", api_sources.source_resume, name="api-source-resume"),
    path("sources/<str:name>/parked", api_sources.source_parked, name="api-source-parked"),
    path("sources/<str:name>/write-dsn", api_sources.source_write_dsn, name="api-source-write-dsn"),
    path(
        "sources/<str:name>/parked/<int:parked_id>/retry",
        api_sources.source_parked_retry,
        name="api-source-parked-retry",
    ),
    path(
        "sources/<str:name>/parked/<int:parked_id>/skip",
        api_sources.source_parked_skip,
        name="api-source-parked-skip",
    ),
]

# Mounted under /api/v1/ next to api_urlpatterns (console/urls.py).
audit_api_urlpatterns = [
    path("audit/search", api_audit.search, name="api-audit-search"),
    path("streams/<str:stream>/state", api_audit.stream_state, name="api-stream-state"),
    path("events/<str:event_id>/unmask", api_audit.event_unmask, name="api-event-unmask"),
]

urlpatterns = [
    path("consumers/", consumer_views.consumer_list, name="consumers"),
    path("consumers/sinks/new", sink_views.sink_new, name="sink-new"),
    path("consumers/<str:name>/", consumer_views.consumer_detail, name="consumer"),
    path("consumers/<str:name>/sink", sink_views.sink_edit, name="sink-edit"),
    path("consumers/<str:name>/partitions", consumer_views.subscription_live, name="subscription-live"),
    path("consumers/<str:name>/live", consumer_views.consumer_live, name="consumer-live"),
    path("consumers/<str:name>/pause", consumer_views.pause, name="consumer-pause"),
    path("consumers/<str:name>/resume", consumer_views.resume, name="consumer-resume"),
    path("consumers/<str:name>/parked/<int:parked_id>/retry", consumer_views.retry, name="parked-retry"),
    path("consumers/<str:name>/parked/<int:parked_id>/skip", consumer_views.skip, name="parked-skip"),
    path("sources/", source_views.source_list, name="sources"),
    path("sources/new", source_views.source_new, name="source-new"),
    path("sources/<str:name>/", source_views.source_detail, name="source"),
    path("sources/<str:name>/live", source_views.source_live, name="source-live"),
    path("sources/<str:name>/pause", source_views.pause, name="source-pause"),
    path("sources/<str:name>/resume", source_views.resume, name="source-resume"),
    path("sources/<str:name>/parked/<int:parked_id>/retry", source_views.retry, name="source-parked-retry"),
    path("sources/<str:name>/parked/<int:parked_id>/skip", source_views.skip, name="source-parked-skip"),
    path("streams/", views.stream_list, name="list"),
    path("streams/<str:name>/", views.stream_detail, name="detail"),
    path("events/", views.event_log, name="log"),
    path("events/<uuid:event_id>/", views.event_detail, name="event"),
    path("audit/", audit_views.search, name="audit"),
    path("lookup", lookup.lookup, name="lookup"),
    path("audit/export.csv", audit_views.export, {"fmt": "csv"}, name="audit-export-csv"),
    path("audit/export.json", audit_views.export, {"fmt": "json"}, name="audit-export-json"),
    path("audit/unmask", audit_views.unmask, name="audit-unmask"),
    path("audit/mask", audit_views.mask_again, name="audit-mask"),
]
