"""A page shows a control only to those who may use it: every form, htmx action and button-link on every
page of the console, as each role sees it, leads to a route the route matrix lets that role use with
that method. (Support staff once saw Pause, Replay, Verify, Snapshot and Roll back, and Run on the
drills page; pressing Pause failed with a 403.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import Resolver404, resolve

from recovery import services
from streams import subscriptions
from tests.conftest import person
from tests.console.test_route_matrix import MATRIX, ROLES, allowed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


class Controls(HTMLParser):
    """(method, url, what) of each control on a page: forms that post, htmx posts, and links drawn as
    buttons (which lead to a page the role must be allowed to open)."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for verb in ("post", "put", "patch", "delete"):
            if f"hx-{verb}" in attrs:
                self.found.append((verb.upper(), attrs[f"hx-{verb}"], f"<{tag} hx-{verb}>"))
        if tag == "form" and (attrs.get("method") or "get").lower() == "post":
            self.found.append(("POST", attrs.get("action") or "", "<form method=post>"))
        if tag == "a" and "button" in (attrs.get("class") or "").split() and attrs.get("href"):
            self.found.append(("GET", attrs["href"], f"<a class=button> {attrs['href']}"))


def controls(html: str) -> list[tuple[str, str, str]]:
    parser = Controls()
    parser.feed(html)
    return parser.found


def pages(world: dict) -> list[str]:
    return [
        "/dashboard/",
        "/streams/",
        "/streams/user-1/",
        "/events/",
        f"/events/{world['event_id']}/",
        "/audit/?q=user-1",
        "/consumers/",
        "/consumers/users_directory/",
        "/consumers/billing/",
        "/sources/",
        "/jobs/",
        f"/jobs/{world['job_id']}/",
        f"/jobs/{world['waiting_job_id']}/",
        "/approvals/",
        f"/approvals/{world['waiting_job_id']}/",
        "/snapshots/",
        f"/snapshots/{world['snapshot_id']}/",
        "/drills/",
    ]


@pytest.fixture
def busy_world(world, four_eyes):
    subscriptions.create_subscription(name="billing", actor="olivia", categories=["invoice"], partitions=2)
    waiting = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="olivia", reason="a test"
    )
    return {**world, "waiting_job_id": waiting.pk}


def misplaced(role: str, world: dict) -> tuple[list[str], int]:
    """The controls a role is shown but may not use, and how many controls it was shown."""
    client = Client()
    client.force_login(person(f"{role}-controls", role))
    wrong, shown = [], 0
    for page in pages(world):
        response = client.get(page)
        assert response.status_code == 200, f"{page} as {role}: {response.status_code}"
        for method, url, what in controls(response.content.decode()):
            path = urlsplit(url).path or page
            try:
                name = resolve(path).view_name
            except Resolver404:
                continue  # a link out of the console's routes (the API docs, an anchor)
            rule = MATRIX.get(name, {}).get(method)
            if rule is None:
                continue
            shown += 1
            if not allowed(rule, role):
                wrong.append(f"{page}: {what} → {method} {path} ({name}), which {role} may not use")
    return wrong, shown


def test_support_sees_no_control_it_may_not_use_on_any_page(busy_world):
    wrong, shown = misplaced("support", busy_world)

    assert not wrong, "\n".join(wrong)
    assert shown > 0  # its own controls (unmasking, logging out) are still there


@pytest.mark.parametrize("role", [role for role in ROLES if role != "support"])
def test_no_role_sees_a_control_it_may_not_use(busy_world, role):
    wrong, _ = misplaced(role, busy_world)

    assert not wrong, "\n".join(wrong)


def test_an_operator_still_sees_the_operators_controls(busy_world):
    client = Client()
    client.force_login(person("operator-controls", "operator"))

    html = client.get("/consumers/users_directory/").content.decode()

    posted = {urlsplit(url).path for method, url, _ in controls(html) if method == "POST"}
    assert "/consumers/users_directory/pause" in posted
    assert re.search(r'<a class="button" href="/jobs/new\?', html)
