"""Approving or rejecting a job asks for the password again, unless it was given within
REPLAYDESK_REAUTH_SECONDS (5 minutes): a session left open on someone's desk cannot approve a replay.

A browser session remembers when its password was last given: at login (the `user_logged_in` signal)
and at each re-authentication. A token client has no such memory, so it sends its password every time.
A wrong password is audited; a missing one is only a question still to answer.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest
from rest_framework.authentication import SessionAuthentication

from core.audit import AuditType, user_subject
from core.roles import Can, can
from recovery.models import Job
from streams import audit

SESSION_KEY = "replaydesk_password_given_at"


class ReauthFailed(Exception):
    """The password was needed and is missing or wrong; the message says which."""

    def __init__(self, message: str, *, wrong: bool):
        super().__init__(message)
        self.wrong = wrong


@receiver(user_logged_in, dispatch_uid="replaydesk-reauth-login")
def _password_given_at_login(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        remember(request)


def remember(request: HttpRequest) -> None:
    request.session[SESSION_KEY] = time.time()


def window_seconds() -> float:
    return float(settings.REPLAYDESK_REAUTH_SECONDS)


def due(request: HttpRequest) -> bool:
    """Whether the next approval or rejection needs the password."""
    if not _by_session(request):
        return True
    given_at = request.session.get(SESSION_KEY)
    return given_at is None or time.time() - float(given_at) > window_seconds()


def confirm(request: HttpRequest, password: str | None, *, action: str) -> None:
    """Let the caller go on when re-authentication is not due or `password` is right; ReauthFailed
    otherwise (a wrong password is audited as a failed re-authentication)."""
    if not due(request):
        return
    minutes = f"{window_seconds() / 60:g} minute" + ("" if window_seconds() == 60 else "s")
    if not password:
        message = (
            f"enter your password: deciding a job asks for it again unless you gave it in the last {minutes}"
            if _by_session(request)
            else "send your password: a token client gives it with every approval or rejection"
        )
        raise ReauthFailed(message, wrong=False)
    user = request.user
    if not user.check_password(password):
        name = user.get_username()
        audit.record(
            subject=user_subject(name),
            type=AuditType.REAUTHENTICATION_FAILED,
            actor=name,
            data={"user": name, "action": action},
            request=request,
        )
        raise ReauthFailed("the password is wrong; nothing was decided", wrong=True)
    if _by_session(request):
        remember(request)


def refusal_status(job: Job, user) -> int:
    """403 for a refusal about who is asking (their own request, no approve permission), 409 for one
    about the job (its parameters changed, it is not waiting, it was approved already)."""
    if job.requested_by == user.get_username() or not can(user, Can.APPROVE):
        return 403
    return 409


def _by_session(request: HttpRequest) -> bool:
    # A DRF request says how it was authenticated; a page is always a browser session.
    authenticator = getattr(request, "successful_authenticator", None)
    if hasattr(request, "successful_authenticator"):
        return isinstance(authenticator, SessionAuthentication)
    return hasattr(request, "session")
