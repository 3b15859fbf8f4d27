from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Event store"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from streams import consumer_kinds, sink_destinations

        autodiscover_modules("projections")
        consumer_kinds.discover()
        # A mistyped REPLAYDESK_SINK_ALLOW stops the start, rather than the first delivery.
        sink_destinations.allowlist()
