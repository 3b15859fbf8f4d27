from django.apps import AppConfig


class StreamsConfig(AppConfig):
    name = "streams"
    verbose_name = "Event store"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from streams import consumer_kinds

        autodiscover_modules("projections")
        consumer_kinds.discover()
