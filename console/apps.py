from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"

    def ready(self) -> None:
        from django.contrib.admin.models import LogEntry
        from django.contrib.auth import signals as auth
        from django.db.models.signals import post_save

        from console import oidc, signals

        if oidc.enabled():
            oidc.role_map()  # a group=role map naming no role stops the start, saying which entry

        auth.user_logged_in.connect(signals.user_logged_in, dispatch_uid="console.audit.login")
        auth.user_logged_out.connect(signals.user_logged_out, dispatch_uid="console.audit.logout")
        auth.user_login_failed.connect(signals.user_login_failed, dispatch_uid="console.audit.login_failed")
        post_save.connect(signals.admin_change, sender=LogEntry, dispatch_uid="console.audit.admin_change")
