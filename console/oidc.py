"""Single sign-on with an OpenID provider (mozilla-django-oidc), beside or instead of local accounts.

- On when OIDC_RP_CLIENT_ID is set (with the provider's endpoints: OIDC_OP_AUTHORIZATION_ENDPOINT,
  OIDC_OP_TOKEN_ENDPOINT, OIDC_OP_USER_ENDPOINT, OIDC_OP_JWKS_ENDPOINT, and OIDC_RP_CLIENT_SECRET).
- A sign-in is the account whose username is the REPLAYDESK_OIDC_USERNAME_CLAIM (preferred_username):
  someone with a local account and an SSO identity of the same name is one account, so the four-eyes
  rule, which compares accounts, keeps them from approving their own request either way. An account
  made by a sign-in has no usable password.
- Roles come from the provider at every sign-in: the values of REPLAYDESK_OIDC_ROLE_CLAIM (a list or a
  string, `groups` by default) mapped through REPLAYDESK_OIDC_ROLE_MAP (`group=role,…`). A sign-in that
  maps to no role is refused and says so. The roles given are written to the audit trail
  (UserRolesMapped) when they change; logins and logouts are audited as local ones are.
- REPLAYDESK_LOCAL_LOGIN=false switches local passwords off (the login page offers only the provider).
- Re-authentication before an approval (recovery/reauth.py) is, for an account without a usable
  password, a fresh sign-in at the provider: `prompt=login` and `max_age=0`, and the ID token's
  `auth_time` must be later than the moment it was asked for.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.http import Http404, HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from core.audit import AuditType, user_subject
from core.roles import ROLES, ensure_groups
from streams import audit

# Set in the session when a fresh sign-in was asked for (Unix time); the callback checks auth_time.
FRESH_KEY = "replaydesk_oidc_fresh_since"
# The provider's clock and ours may differ a little.
CLOCK_SKEW_SECONDS = 30


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))


def role_map() -> dict[str, str]:
    """REPLAYDESK_OIDC_ROLE_MAP as {claim value: role}; an unknown role stops the start."""
    found = {}
    for entry in settings.REPLAYDESK_OIDC_ROLE_MAP:
        value, _, role = entry.rpartition("=")
        if not value or role not in ROLES:
            raise ImproperlyConfigured(
                f"REPLAYDESK_OIDC_ROLE_MAP: {entry!r} is not group=role with a role of {', '.join(ROLES)}"
            )
        found[value.strip()] = role
    return found


def roles_from(claims: dict[str, Any]) -> set[str]:
    given = claims.get(settings.REPLAYDESK_OIDC_ROLE_CLAIM)
    values = given if isinstance(given, list) else [given] if isinstance(given, str) else []
    mapping = role_map()
    return {mapping[value] for value in values if isinstance(value, str) and value in mapping}


class Backend(OIDCAuthenticationBackend):
    def filter_users_by_claims(self, claims):
        username = claims.get(settings.REPLAYDESK_OIDC_USERNAME_CLAIM)
        if not username:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(username=username)

    def verify_claims(self, claims) -> bool:
        if not claims.get(settings.REPLAYDESK_OIDC_USERNAME_CLAIM):
            self._refuse(f"the provider gave no {settings.REPLAYDESK_OIDC_USERNAME_CLAIM}")
            return False
        if not roles_from(claims):
            self._refuse(
                f"the provider's {settings.REPLAYDESK_OIDC_ROLE_CLAIM} give no Replaydesk role "
                "(REPLAYDESK_OIDC_ROLE_MAP)"
            )
            return False
        return True

    def get_or_create_user(self, access_token, id_token, payload):
        fresh_since = self.request.session.pop(FRESH_KEY, None) if self.request else None
        if fresh_since is not None:
            auth_time = payload.get("auth_time")
            if not isinstance(auth_time, int | float) or auth_time < fresh_since - CLOCK_SKEW_SECONDS:
                self._refuse("the provider did not ask for the password again (auth_time is older)")
                return None
        return super().get_or_create_user(access_token, id_token, payload)

    def create_user(self, claims):
        username = claims[settings.REPLAYDESK_OIDC_USERNAME_CLAIM]
        user = self.UserModel.objects.create_user(username, email=claims.get("email", ""))
        user.set_unusable_password()
        user.save(update_fields=["password"])
        self._apply_roles(user, claims)
        return user

    def update_user(self, user, claims):
        if claims.get("email") and claims["email"] != user.email:
            user.email = claims["email"]
            user.save(update_fields=["email"])
        self._apply_roles(user, claims)
        return user

    def _apply_roles(self, user, claims) -> None:
        roles = roles_from(claims)
        before = set(user.groups.values_list("name", flat=True))
        admin = "admin" in roles
        if before == roles and (user.is_staff, user.is_superuser) == (admin, admin):
            return
        ensure_groups()
        user.groups.set(Group.objects.filter(name__in=roles))
        user.is_staff = user.is_superuser = admin
        user.save(update_fields=["is_staff", "is_superuser"])
        name = user.get_username()
        audit.record(
            subject=user_subject(name),
            type=AuditType.USER_ROLES_MAPPED,
            actor=name,
            data={
                "user": name,
                "roles": sorted(roles),
                "before": sorted(before),
                "claim": settings.REPLAYDESK_OIDC_ROLE_CLAIM,
            },
            request=self.request,
        )

    def _refuse(self, reason: str) -> None:
        if self.request is not None:
            self.request.session["replaydesk_oidc_refused"] = reason


class SignIn(OIDCAuthenticationRequestView):
    """The start of a sign-in; `?fresh=1` asks the provider for the password again (re-authentication)."""

    def get(self, request: HttpRequest):
        if not enabled():
            raise Http404("single sign-on is not configured")
        if request.GET.get("fresh"):
            request.session[FRESH_KEY] = time.time()
        else:
            request.session.pop(FRESH_KEY, None)
        return super().get(request)

    def get_extra_params(self, request: HttpRequest) -> dict[str, str]:
        params = dict(super().get_extra_params(request))
        if request.GET.get("fresh"):
            params |= {"prompt": "login", "max_age": "0"}
        return params


class Callback(OIDCAuthenticationCallbackView):
    def get(self, request: HttpRequest):
        if not enabled():
            raise Http404("single sign-on is not configured")
        try:
            return super().get(request)
        except SuspiciousOperation:
            return self.login_failure()


def refusal(request: HttpRequest) -> str:
    """Why the last sign-in was refused (once), for the login page."""
    return request.session.pop("replaydesk_oidc_refused", "") if hasattr(request, "session") else ""
