"""Logins, failed logins and logouts in the console's audit trail (django.contrib.auth's signals).

Connected in ConsoleConfig.ready(). Each event goes to the user's stream, `console-user.<name>`, next to
the user's creation and role changes, with the IP address and user agent of the request.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest

from core.audit import AuditType, user_subject
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
