"""Deployment checks, CSRF on every POST, and no GET that changes anything, over every route."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from streams.models import Event
from tests.console.routes import all_routes

ROOT = Path(__file__).resolve().parents[2]
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "ALTER", "DROP", "CREATE")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


def test_the_deployment_checklist_passes_with_production_settings(tmp_path):
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "events.example.com",
        "REPLAYDESK_HOME": str(tmp_path),
    }
    for variable in ("SECURE_SSL_REDIRECT", "SECURE_COOKIES", "SECURE_HSTS_SECONDS"):
        env.pop(variable, None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_no_get_changes_anything_on_any_route(world, admin_user):
    client = Client()
    client.force_login(admin_user)
    for route in all_routes():
        path = route.path(**world)
        with CaptureQueriesContext(connection) as queries:
            response = client.get(path)
        writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]
        assert not writes, f"GET {path} ({route.name}) answered {response.status_code} and wrote: {writes}"


def test_every_post_needs_the_csrf_token(world, admin_user):
    """A browser session without the token is refused on every route that takes a POST; nothing is written.
    (Applications with a bearer token are not exposed to CSRF and do not need one.)"""
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    events = Event.objects.count()
    checked = 0
    for route in all_routes():
        path = route.path(**world)
        response = client.post(path, data="{}", content_type="application/json")
        if response.status_code == 405 or route.name in CSRF_EXEMPT:
            continue
        checked += 1
        assert response.status_code == 403, (
            f"POST {path} ({route.name}) without a CSRF token: {response.status_code}"
        )
        assert b"CSRF" in response.content, f"POST {path} was refused, but not for CSRF"
    assert checked >= 20  # the routes that take a POST were reached
    assert Event.objects.count() == events


# Receivers of machine-to-machine calls authenticated by a signature, not a session: they carry no cookie
# a forged form could ride on.
CSRF_EXEMPT = {"demo-search-index-receive"}


def test_every_page_has_a_content_security_policy_and_no_inline_script(world, admin_user):
    client = Client()
    client.force_login(admin_user)
    pages = 0
    for route in all_routes():
        path = route.path(**world)
        response = client.get(path)
        policy = dict(
            (directive.strip().split(" ", 1) + [""])[:2]
            for directive in response["Content-Security-Policy"].split(";")
        )
        assert policy["script-src"] == "'self'", f"GET {path}: {policy!r}"
        if response.get("Content-Type", "").startswith("text/html") and response.status_code == 200:
            pages += 1
            html = response.content.decode()
            inline = [tag for tag in re.findall(r"<script\b[^>]*>", html) if " src=" not in tag]
            assert not inline, f"GET {path} ({route.name}) has an inline script: {inline}"
            assert not re.search(r"\son[a-z]+\s*=", html), f"GET {path} has an inline event handler"
    assert pages >= 15  # the console's pages were reached
