from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    """Snapshots, restores, replays, resyncs and verifications as approved, resumable jobs."""

    name = "recovery"
