"""The look-up box: a stream name, an event id, a correlation id or anything else, and the page for it."""

import uuid

import pytest
from django.urls import reverse
from pytest_django.asserts import assertRedirects

from streams.models import Event
from streams.services import append_events

pytestmark = pytest.mark.django_db


def lookup(client, value: str):
    return client.get(reverse("streams:lookup"), {"q": value})


@pytest.fixture
def events():
    correlation = str(uuid.uuid4())
    appended = append_events(
        stream="user-123",
        events=[
            {"type": "UserCreated", "data": {"user_id": "123"}, "metadata": {"correlation_id": correlation}}
        ],
    )
    append_events(stream="user-1234", events=[{"type": "UserCreated", "data": {"user_id": "1234"}}])
    event_id = Event.objects.get(position=appended.positions[0]).event_id
    return {"event_id": event_id, "correlation": correlation}


def test_a_stream_name_goes_to_the_stream(browser_client, events):
    assertRedirects(lookup(browser_client, " user-123 "), "/streams/user-123/")


def test_an_event_id_goes_to_the_event(browser_client, events):
    assertRedirects(lookup(browser_client, str(events["event_id"])), f"/events/{events['event_id']}/")


def test_a_correlation_id_goes_to_the_log_of_its_events(browser_client, events):
    assertRedirects(
        lookup(browser_client, events["correlation"]), f"/events/?correlation_id={events['correlation']}"
    )


def test_anything_else_is_searched_in_the_audit_trail(browser_client, events):
    assertRedirects(lookup(browser_client, "123"), "/audit/?q=123")
    assertRedirects(lookup(browser_client, "an unknown thing"), "/audit/?q=%22an+unknown+thing%22")
    unknown = str(uuid.uuid4())
    assertRedirects(lookup(browser_client, unknown), f"/audit/?q={unknown}")
    assertRedirects(lookup(browser_client, ""), "/audit/")


def test_support_looks_up_too_and_a_stranger_is_sent_to_log_in(client, support_agent, events):
    assertRedirects(
        lookup(client, "user-123"), "/login/?next=/lookup%3Fq%3Duser-123", fetch_redirect_response=False
    )

    client.force_login(support_agent)
    assertRedirects(lookup(client, "user-123"), "/streams/user-123/")
