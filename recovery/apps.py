from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    """Snapshots, restores, replays, resyncs and verifications as approved, resumable jobs."""

    name = "recovery"

    def ready(self) -> None:
        # Connects the login receiver that starts the re-authentication clock (before any request).
        from recovery import reauth  # noqa: F401
        from recovery.kinds.backfill import request_backfill
        from recovery.kinds.base import consumer_links as job_links
        from recovery.selectors import rebuilding_consumers
        from streams import consumer_links, health, source_services

        health.report_rebuilding(rebuilding_consumers)
        consumer_links.offer(job_links)
        # A new source's history is copied by a job, with progress and an ETA.
        source_services.copy_history_with(request_backfill)
