"""The console's login page, with a limit on failed logins per username and per IP address; the Django
admin's login page has the same limit (`limit_failed_logins`), so that it is no way around them.

Failures are counted per username and address ("login_user_ip" in settings.REPLAYDESK_RATES), per
username from anywhere ("login_user", higher: guesses spread over many addresses) and per address
("login_ip"). Once one has failed too often in its window, the page answers 429 with Retry-After and
does not check the password at all, so that guessing stops there. One address failing for a username
does not lock the username out for everyone else. A successful login forgets the username's failures,
not the address's.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UsernameField
from django.forms.forms import NON_FIELD_ERRORS
from django.forms.utils import ErrorDict
from django.http import HttpResponse
from rest_framework.throttling import BaseThrottle

from console import oidc
from console.signals import MAX_USERNAME
from core import limits


def _username(request) -> str:
    """The username as the login form reads it (stripped, NFKC-normalised): "olivia " and its
    full-width twin are the same person's guesses, so they count against the same limits."""
    return UsernameField().to_python(str(request.POST.get("username", "")))[:MAX_USERNAME]


def _keys(request) -> list[tuple[str, limits.Rate]]:
    username = _username(request)
    # The same address as the API's limits see (DRF's reading of REMOTE_ADDR / X-Forwarded-For).
    address = BaseThrottle().get_ident(request) or ""
    keys = []
    for scope, who in (
        ("login_user_ip", limits.digest(f"{username}\0{address}")),
        ("login_user", limits.digest(username)),
        ("login_ip", limits.digest(address)),
    ):
        limit = limits.rate(scope)
        if limit is not None:
            keys.append((f"{scope}:{who}", limit))
    return keys


def _blocked_for(request) -> int | None:
    """Seconds until this login may be tried again, or None when it may be tried now."""
    windows = [(limits.peek(name, limit), limit) for name, limit in _keys(request)]
    waits = [window.retry_after for window, limit in windows if window.used >= limit.count]
    return max(waits) if waits else None


def _succeeded(request) -> None:
    for name, limit in _keys(request):
        if name.startswith(("login_user:", "login_user_ip:")):
            limits.forget(name, limit)


def _failed(request) -> None:
    for name, limit in _keys(request):
        limits.hit(name, limit)


def _message(retry_after: int) -> str:
    minutes = -(-retry_after // 60)
    return (
        "Too many failed logins for this username or from this address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs) | {
            "sso": oidc.enabled(),
            "sso_name": settings.REPLAYDESK_OIDC_NAME,
            "sso_refused": oidc.refusal(self.request),
            "local_login": settings.REPLAYDESK_LOCAL_LOGIN,
        }

    def post(self, request, *args, **kwargs):
        retry_after = _blocked_for(request)
        if retry_after is not None:
            return self._too_many(retry_after)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        _succeeded(self.request)
        return super().form_valid(form)

    def form_invalid(self, form):
        _failed(self.request)
        return super().form_invalid(form)

    def _too_many(self, retry_after: int):
        form = self.get_form()
        # Set as the form's errors so that the password is never checked (full_clean would).
        form._errors = ErrorDict({NON_FIELD_ERRORS: form.error_class([_message(retry_after)])})
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(retry_after)
        return response


def limit_failed_logins(login):
    """The same limit around another login view (the Django admin's): a POST over the limit is answered
    429 without the view, a POST that logs nobody in counts as a failure."""

    @functools.wraps(login)
    def limited(request, *args, **kwargs):
        if request.method != "POST":
            return login(request, *args, **kwargs)
        retry_after = _blocked_for(request)
        if retry_after is not None:
            response = HttpResponse(_message(retry_after), status=429, content_type="text/plain")
            response["Retry-After"] = str(retry_after)
            return response
        response = login(request, *args, **kwargs)
        if request.user.is_authenticated and response.status_code in (301, 302):
            _succeeded(request)
        else:
            _failed(request)
        return response

    return limited
