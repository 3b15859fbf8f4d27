"""A consumer's page keeps its figures current without a reload: lag, checkpoint, head and health."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from streams.consumers import run_projection
from streams.models import Consumer
from streams.services import append_events

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def users(count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        data = {"user_id": f"u{n}", "username": f"u{n}", "name": "N", "email": f"u{n}@x.org"}
        append_events(stream=f"user-{n}", events=[{"type": "UserCreated", "data": data}])


def fact(page, term: str):
    row = page.locator("#consumer-live .facts > div").filter(has=page.locator("dt", has_text=term))
    return row.locator("dd")


def test_the_consumer_page_follows_the_consumer_as_it_catches_up(operator_page, fresh_projection_schemas):
    page = operator_page
    run_projection("users_directory")
    Consumer.objects.filter(name="users_directory").update(lag_threshold=3)
    users(8)
    page.goto("/consumers/users_directory/")
    page.evaluate("window.notReloaded = true")
    expect(fact(page, "Lag")).to_contain_text("8 events")
    expect(page.locator("#consumer-health .badge")).to_have_text("lagging")
    checkpoint_before = fact(page, "Checkpoint").inner_text()

    run_projection("users_directory")

    expect(fact(page, "Lag")).to_contain_text("0 events")
    expect(page.locator("#consumer-health .badge")).to_have_text("healthy")
    expect(fact(page, "Checkpoint")).not_to_have_text(checkpoint_before)
    users(2, start=100)
    expect(fact(page, "Lag")).to_contain_text("2 events")  # the head moved: so does the page
    assert page.evaluate("window.notReloaded") is True


def test_a_consumer_removed_while_its_page_is_open_says_so(operator_page, fresh_projection_schemas):
    page = operator_page
    run_projection("users_directory")
    page.goto("/consumers/users_directory/")

    Consumer.objects.filter(name="users_directory").delete()

    expect(page.locator("#consumer-live")).to_contain_text("No consumer is named “users_directory” now")
