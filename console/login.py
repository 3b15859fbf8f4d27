"""The console's login page, with a limit on failed logins per username and per IP address.

Once either has failed too often in its window (settings.REPLAYDESK_RATES "login_user" and
"login_ip"), the page answers 429 with Retry-After and does not check the password at all, so that
guessing stops there. A successful login forgets the username's failures, not the address's.
"""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.forms.forms import NON_FIELD_ERRORS
from django.forms.utils import ErrorDict
from rest_framework.throttling import BaseThrottle

from console import limits
from console.signals import MAX_USERNAME


def _keys(request) -> list[tuple[str, limits.Rate]]:
    username = str(request.POST.get("username", ""))[:MAX_USERNAME]
    keys = []
    for scope, who in (
        ("login_user", limits.digest(username)),
        # The same address as the API's limits see (DRF's reading of REMOTE_ADDR / X-Forwarded-For).
        ("login_ip", limits.digest(BaseThrottle().get_ident(request) or "")),
    ):
        limit = limits.rate(scope)
        if limit is not None:
            keys.append((f"{scope}:{who}", limit))
    return keys


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        windows = [(limits.peek(name, limit), limit) for name, limit in _keys(request)]
        waits = [window.retry_after for window, limit in windows if window.used >= limit.count]
        if waits:
            return self._too_many(max(waits))
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        for name, limit in _keys(self.request):
            if name.startswith("login_user:"):
                limits.forget(name, limit)
        return super().form_valid(form)

    def form_invalid(self, form):
        for name, limit in _keys(self.request):
            limits.hit(name, limit)
        return super().form_invalid(form)

    def _too_many(self, retry_after: int):
        form = self.get_form()
        minutes = -(-retry_after // 60)
        # Set as the form's errors so that the password is never checked (full_clean would).
        form._errors = ErrorDict(
            {
                NON_FIELD_ERRORS: form.error_class(
                    [
                        "Too many failed logins for this username or from this address. "
                        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
                    ]
                )
            }
        )
        response = self.render_to_response(self.get_context_data(form=form), status=429)
        response["Retry-After"] = str(retry_after)
        return response
