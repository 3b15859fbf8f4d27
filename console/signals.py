"""Logins, failed logins and logouts in the console's audit trail (django.contrib.auth's signals), and
the Django admin's changes to users and groups (its LogEntry rows, written after each change is saved).

Connected in ConsoleConfig.ready(). Each event goes to the user's stream, `console-user.<name>`, next to
the user's creation and role changes, with the IP address and user agent of the request; a group's go to
`console-group.<name>`.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import HttpRequest

from core.audit import AuditType, subject, user_subject
from streams import audit

# Longer than any username Django accepts (150); what a failed login typed is cut here.
MAX_USERNAME = 200


def user_logged_in(sender, request: HttpRequest | None, user, **kwargs: Any) -> None:
    name = user.get_username()
    audit.record(
        subject=user_subject(name),
        type=AuditType.USER_LOGGED_IN,
        actor=name,
        data={"user": name},
        request=request,
    )


def user_logged_out(sender, request: HttpRequest | None, user, **kwargs: Any) -> None:
    if user is None:  # a logout without a session logs nobody out
        return
    name = user.get_username()
    audit.record(
        subject=user_subject(name),
        type=AuditType.USER_LOGGED_OUT,
        actor=name,
        data={"user": name},
        request=request,
    )


def user_login_failed(
    sender, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs
) -> None:
    # Only the username is kept: Django has masked the password here already, but even a mask tells
    # nothing an audit needs, and other keys (tokens, one-time codes) must not reach the log either.
    tried = str(credentials.get(get_user_model().USERNAME_FIELD) or "")[:MAX_USERNAME]
    audit.record(
        subject=user_subject(tried),
        type=AuditType.USER_LOGIN_FAILED,
        actor="anonymous",
        data={"username": tried},
        request=request,
    )


_ADMIN_TYPES = {
    "user": {
        ADDITION: AuditType.USER_CREATED,
        CHANGE: AuditType.USER_UPDATED,
        DELETION: AuditType.USER_DELETED,
    },
    "group": {
        ADDITION: AuditType.GROUP_CREATED,
        CHANGE: AuditType.GROUP_UPDATED,
        DELETION: AuditType.GROUP_DELETED,
    },
}


def admin_change(sender, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    """A user or group added, changed or deleted in the Django admin: its roles and members as they are
    now, with what the admin says it changed."""
    model = instance.content_type.model_class() if instance.content_type_id else None
    if not created or model not in (get_user_model(), Group):
        return
    what = "user" if model is get_user_model() else "group"
    data: dict[str, Any] = {what: instance.object_repr, "change": instance.get_change_message()}
    found = model.objects.filter(pk=instance.object_id).first()
    if found is not None and what == "user":
        data |= {
            "roles": sorted(found.groups.values_list("name", flat=True)),
            "is_active": found.is_active,
            "is_superuser": found.is_superuser,
        }
    elif found is not None:
        data["members"] = sorted(found.user_set.values_list("username", flat=True))
    audit.record(
        subject=subject(what, instance.object_repr),
        type=_ADMIN_TYPES[what][instance.action_flag],
        actor=instance.user.get_username(),
        data=data,
    )
