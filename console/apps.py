from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ConsoleConfig(AppConfig):
    name = "console"

    def ready(self) -> None:
        from django.contrib.auth import signals as auth

        from console import signals

        post_migrate.connect(_ensure_groups, sender=self)
        auth.user_logged_in.connect(signals.user_logged_in, dispatch_uid="console.audit.login")
        auth.user_logged_out.connect(signals.user_logged_out, dispatch_uid="console.audit.logout")
        auth.user_login_failed.connect(signals.user_login_failed, dispatch_uid="console.audit.login_failed")


def _ensure_groups(**kwargs) -> None:
    """The four roles exist as groups wherever the database was migrated."""
    from console.roles import ensure_groups

    ensure_groups()
