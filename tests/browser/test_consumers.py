"""What an operator watches and does about consumers in the browser: lag on the dashboard going away
as a projection catches up, and a parked event retried from its consumer's page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from streams import consumers
from streams.consumers import run_projection
from streams.models import Consumer, LagSample, ParkedEvent
from streams.projections import Projection, add, remove
from streams.services import append_events
from tests.browser.test_journeys import has_no_horizontal_scroll

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


class Fussy(Projection, register=False):
    """Parks orders marked "poison" until it is fixed."""

    name = "test_fussy"
    categories = ("order",)
    tables = ("CREATE TABLE applied (position bigint PRIMARY KEY)",)
    max_attempts = 2
    on_failure = "park"
    fixed = False

    def apply(self, cursor, events):
        if not Fussy.fixed and any(e.data.get("poison") for e in events):
            raise ValueError("cannot apply a poisoned order")
        cursor.execute("INSERT INTO applied SELECT unnest(%s::bigint[])", [[e.position for e in events]])


@pytest.fixture
def fussy(monkeypatch):
    monkeypatch.setattr(consumers, "BACKOFF_CAP_SECONDS", 0.0)
    Fussy.fixed = False
    add(Fussy)
    yield Fussy
    remove(Fussy.name)


def sign_up(count: int) -> None:
    for n in range(count):
        data = {"user_id": f"u{n}", "username": f"user{n}", "name": f"User {n}", "email": f"u{n}@example.org"}
        append_events(stream=f"user-{n}", events=[{"type": "UserCreated", "data": data}], actor="olivia")


def test_dashboard_shows_a_projection_go_from_lagging_to_healthy_as_it_catches_up(operator_page):
    page = operator_page
    run_projection("users_directory")
    Consumer.objects.filter(name="users_directory").update(lag_threshold=5)
    page.goto("/dashboard/")
    page.evaluate("window.notReloaded = true")
    badge = page.locator('tr[data-consumer="users_directory"] .badge')
    expect(badge).to_have_text("healthy")

    sign_up(30)

    expect(badge).to_have_text("lagging")
    expect(page.locator('tr[data-consumer="users_directory"] td.num').nth(1)).to_have_text("30")
    assert has_no_horizontal_scroll(page)
    page.screenshot(path="/tmp/dashboard.png", full_page=True)

    run_projection("users_directory")

    expect(badge).to_have_text("healthy")
    expect(page.locator('tr[data-consumer="users_directory"] td.num').nth(1)).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True


def test_the_dashboards_refresh_keeps_keyboard_focus_on_the_consumer_link(operator_page):
    page = operator_page
    run_projection("users_directory")
    page.goto("/dashboard/")
    link = page.get_by_role("link", name="users_directory")
    link.focus()
    stamp = page.locator("#dashboard-consumers-title .muted").inner_text()

    sign_up(1)  # the next refresh shows a different head and lag

    expect(page.locator('tr[data-consumer="users_directory"] td.num').nth(1)).to_have_text("1")
    assert page.locator("#dashboard-consumers-title .muted").inner_text() != stamp
    expect(link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="users_directory", level=1)).to_be_visible()
    page.goto("/consumers/")
    page.screenshot(path="/tmp/consumers.png", full_page=True)


def test_operator_retries_a_parked_event_from_its_consumers_page_after_a_fix(operator_page, fussy):
    page = operator_page
    append_events(stream="order-1", events=[{"type": "Placed", "data": {"poison": True}}])
    append_events(stream="order-2", events=[{"type": "Placed", "data": {}}])
    for _ in range(Fussy.max_attempts + 1):
        run_projection(Fussy.name)
    parked = ParkedEvent.objects.get()
    consumer = Consumer.objects.get(name=Fussy.name)
    now = timezone.now()
    LagSample.objects.bulk_create(
        LagSample(
            consumer=consumer,
            sampled_at=now - dt.timedelta(seconds=10 * n),
            head=2,
            checkpoint=2,
            lag_events=(n * 7) % 40 if n < 200 else 0,
            lag_seconds=0,
        )
        for n in range(360)
    )

    page.goto("/consumers/")
    page.get_by_role("link", name=Fussy.name).click()
    expect(page.get_by_role("heading", name=Fussy.name, level=1)).to_be_visible()
    expect(page.get_by_role("img", name=f"Lag of {Fussy.name} in events, last hour")).to_be_visible()
    row = page.locator(f'tr.parked-event[data-parked="{parked.pk}"]')
    expect(row).to_contain_text("cannot apply a poisoned order")
    assert has_no_horizontal_scroll(page)
    page.screenshot(path="/tmp/consumer.png", full_page=True)

    Fussy.fixed = True
    row.get_by_role("button", name="Retry").click()

    expect(page.get_by_role("status")).to_contain_text("Retried the parked event")
    expect(page.locator(f'tr.resolved-event[data-parked="{parked.pk}"]')).to_contain_text("retried")
    expect(page.locator("tr.parked-event")).to_have_count(0)
    parked.refresh_from_db()
    assert (parked.state, parked.resolved_by) == ("retried", "olivia")
