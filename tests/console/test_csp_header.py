"""The Content-Security-Policy header, written once per process (core/csp.py), is the header django-csp
would write for each response: the settings' policy, a view's own changes, a nonce, and new settings."""

import pytest
from csp.constants import NONCE, SELF
from csp.decorators import csp_update
from csp.utils import build_policy
from django.http import HttpResponse
from django.test import Client, RequestFactory

from core.csp import CSPMiddleware

pytestmark = pytest.mark.django_db


def _directives(header: str) -> dict[str, str]:
    return dict((part.strip().split(" ", 1) + [""])[:2] for part in header.split(";"))


def test_pages_and_api_answers_carry_the_settings_policy(operator):
    client = Client()
    client.force_login(operator)
    expected = build_policy()
    assert "frame-ancestors 'none'" in expected
    for path in ("/", "/streams/", "/api/v1/events", "/api/v1/streams/nothing-here/events"):
        response = client.get(path)
        assert response["Content-Security-Policy"] == expected, path
        assert "Content-Security-Policy-Report-Only" not in response, path


def test_new_settings_change_the_header_at_the_next_response(operator, settings):
    client = Client()
    client.force_login(operator)
    assert _directives(client.get("/api/v1/events")["Content-Security-Policy"])["default-src"] == "'self'"
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"script-src": ["'self'"]}}
    response = client.get("/api/v1/events")
    assert response["Content-Security-Policy"] == "default-src 'none'"
    assert _directives(response["Content-Security-Policy-Report-Only"])["script-src"] == "'self'"


def test_a_views_own_policy_and_a_nonce_are_written_for_that_response(settings):
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": [SELF], "script-src": [SELF, NONCE]}}
    factory = RequestFactory()

    def with_nonce(request):
        return HttpResponse(f"<script nonce='{request.csp_nonce}'></script>")

    request = factory.get("/")
    middleware = CSPMiddleware(with_nonce)
    response = middleware(request)
    nonce = str(request._csp_nonce)
    assert f"'nonce-{nonce}'" in _directives(response["Content-Security-Policy"])["script-src"]
    assert nonce in response.content.decode()
    # The next response without a nonce is back to the settings' policy, with no nonce kept from before.
    plain = CSPMiddleware(lambda request: HttpResponse("ok"))(factory.get("/"))
    assert _directives(plain["Content-Security-Policy"]) == {"default-src": "'self'", "script-src": "'self'"}

    inline_style = csp_update({"style-src": ["'unsafe-inline'"]})(lambda request: HttpResponse("docs"))
    response = CSPMiddleware(inline_style)(factory.get("/api/docs/"))
    assert _directives(response["Content-Security-Policy"])["style-src"] == "'unsafe-inline'"


def test_a_nonce_asked_for_after_the_header_is_written_is_an_error():
    from csp.exceptions import CSPNonceError

    request = RequestFactory().get("/")
    CSPMiddleware(lambda request: HttpResponse("ok"))(request)
    with pytest.raises(CSPNonceError):
        str(request.csp_nonce)
