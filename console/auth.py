"""`Authorization: Bearer <token>` for the API and /metrics, with tokens from `replaydesk token USER`
(console/tokens.py)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

KEYWORD = "Bearer"
# One answer for unknown, wrong, expired and revoked tokens alike: the client learns nothing of which.
REJECTED = (
    "the token is not valid: it is unknown, expired or revoked; ask for a new one (`replaydesk token USER`)"
)


class BearerTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        scheme, _, credential = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != KEYWORD.lower():
            return None  # another scheme, or none: the next authentication's turn
        credential = credential.strip()
        if not credential or " " in credential:
            raise AuthenticationFailed("write the header as `Authorization: Bearer <token>`")
        # Here, not at the top: DRF loads this class when its views are first imported, which may be
        # before the models are ready.
        from console import tokens

        try:
            found = tokens.authenticate(credential)
        except tokens.Rejected as rejected:
            tokens.audit_rejection(rejected, request)
            raise AuthenticationFailed(REJECTED) from None
        return found.user, found

    def authenticate_header(self, request) -> str:
        # A 401, not a 403, for the unauthenticated (DRF answers 403 when this is empty).
        return KEYWORD


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """The scheme in the OpenAPI document."""

    target_class = BearerTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer"}
