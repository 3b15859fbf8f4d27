"""django-csp's middleware, with the settings' policy written once per process.

The library builds the header anew for every response, twice (the policy and the report-only one), from
a deep copy of the settings: about a tenth of the CPU of an API append (bench/README.md, *Appends over
HTTP*). A response that changes nothing (no per-view policy, no nonce asked for: every response but the
API docs' page) gets the same header each time, so it is built once and kept until the settings change.
Anything else is the library's own path."""

from __future__ import annotations

import functools
import http.client

from csp import middleware
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# What a view sets on its response to change the policy (csp.decorators).
_PER_RESPONSE = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)
_DEBUG_PAGES = (http.client.INTERNAL_SERVER_ERROR, http.client.NOT_FOUND)


@functools.cache
def _settings_policies() -> tuple[str, str, bool]:
    """The settings' header and report-only header, and whether either excludes URL prefixes."""
    excludes = any(
        (getattr(settings, name, None) or {}).get("EXCLUDE_URL_PREFIXES")
        for name in ("CONTENT_SECURITY_POLICY", "CONTENT_SECURITY_POLICY_REPORT_ONLY")
    )
    return build_policy(), build_policy(report_only=True), excludes


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _settings_policies.cache_clear()


class CSPMiddleware(middleware.CSPMiddleware):
    def process_response(self, request, response):
        policy, report_only, excludes = _settings_policies()
        if (
            getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in _PER_RESPONSE)
            or excludes
            or (settings.DEBUG and response.status_code in _DEBUG_PAGES)
        ):
            return super().process_response(request, response)
        for header, value, exempt in (
            (HEADER, policy, "_csp_exempt"),
            (HEADER_REPORT_ONLY, report_only, "_csp_exempt_ro"),
        ):
            if value and header not in response and not getattr(response, exempt, False):
                response[header] = value
        # As the library does: a nonce asked for after the header is written is an error, not a silent miss.
        request.csp_nonce = middleware.CheckableLazyObject(self._csp_nonce_post_response)
        return response
