from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    """Snapshots, restores, replays, resyncs and verifications as approved, resumable jobs."""

    name = "recovery"

    def ready(self) -> None:
        # Connects the login receiver that starts the re-authentication clock (before any request).
        from recovery import reauth  # noqa: F401
        from recovery.kinds.backfill import request_backfill
        from recovery.kinds.base import consumer_links as job_links
        from recovery.kinds.base import source_links as source_job_links
        from recovery.selectors import rebuilding_consumers
        from recovery.source_commands import VERIFY
        from streams import consumer_links, health, source_commands, source_links, source_services

        health.report_rebuilding(rebuilding_consumers)
        consumer_links.offer(job_links)
        source_links.offer(source_job_links)
        source_commands.offer(VERIFY)
        # A new source's history is copied by a job, with progress and an ETA.
        source_services.copy_history_with(request_backfill)
