from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    name = "console"

    def ready(self) -> None:
        post_migrate.connect(_ensure_groups, sender=self)


def _ensure_groups(**kwargs) -> None:
    """The four roles exist as groups wherever the database was migrated."""
    from console.roles import ensure_groups

    ensure_groups()
