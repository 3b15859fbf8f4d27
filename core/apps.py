from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"

    def ready(self) -> None:
        post_migrate.connect(_ensure_groups, sender=self)


def _ensure_groups(**kwargs) -> None:
    """The four roles exist as groups wherever the database was migrated."""
    from core.roles import ensure_groups

    ensure_groups()
