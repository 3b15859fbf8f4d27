"""The look-up box in the top bar reaches a stream, an event and an entity's audit trail."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from streams.models import Event
from streams.services import append_events

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def look_up(page, value: str, width: str) -> None:
    if width == "phone":
        page.get_by_role("button", name="Menu").click()
    box = page.get_by_role("searchbox", name="Look up a stream, entity, event or correlation id")
    box.fill(value)
    box.press("Enter")


def test_the_look_up_box_reaches_a_stream_an_event_and_an_entity(operator_page, width):
    page = operator_page
    appended = append_events(
        stream="user-123", events=[{"type": "UserCreated", "data": {"user_id": "123", "name": "Ann"}}]
    )
    event_id = Event.objects.get(position=appended.positions[0]).event_id

    look_up(page, "user-123", width)
    expect(page.get_by_role("heading", name="user-123", level=1)).to_be_visible()

    look_up(page, str(event_id), width)
    expect(page).to_have_url(re.compile(rf"/events/{event_id}/$"))
    expect(page.locator("main")).to_contain_text("UserCreated")

    look_up(page, "123", width)  # the entity's id alone
    expect(page).to_have_url(re.compile(r"/audit/\?q=123$"))
    expect(page.locator("main")).to_contain_text("user-123")


def test_the_look_up_box_says_when_nothing_answers_to_a_value(operator_page, width):
    page = operator_page

    look_up(page, "no-such-thing-anywhere", width)

    expect(
        page.get_by_role("heading", name="Nothing found for “no-such-thing-anywhere”", level=1)
    ).to_be_visible()
    page.get_by_role("link", name="search the audit trail").click()
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("no-such-thing-anywhere")
