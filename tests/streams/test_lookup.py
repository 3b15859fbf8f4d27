"""The look-up box: a stream name, an event id, a correlation id or anything else, and the page for it."""

import uuid

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

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
            {
                "type": "UserCreated",
                "data": {"user_id": "123"},
                "metadata": {"correlation_id": correlation, "actor": "ops.bot"},
            }
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


def test_an_entity_id_or_an_actor_goes_to_the_audit_search(browser_client, events):
    assertRedirects(lookup(browser_client, "123"), "/audit/?q=123")
    assertRedirects(lookup(browser_client, "ops.bot"), "/audit/?q=ops.bot")
    assertRedirects(lookup(browser_client, ""), "/audit/")


def test_a_value_with_spaces_is_searched_as_one_term(browser_client, events):
    append_events(
        stream="ticket-9", events=[{"type": "TicketOpened", "data": {"ticket_id": "an open ticket"}}]
    )
    assertRedirects(lookup(browser_client, "an open ticket"), "/audit/?q=%22an+open+ticket%22")


def test_nothing_found_says_so_and_offers_the_audit_search(browser_client, events):
    for value in ("an unknown thing", str(uuid.uuid4()), "user-999"):
        response = lookup(browser_client, value)

        assert response.status_code == 404
        assertContains(response, f"Nothing found for “{value}”", status_code=404)
        assertContains(response, 'href="/audit/?q=', status_code=404)


def test_nothing_found_shows_the_value_as_text_only(browser_client, events):
    response = lookup(browser_client, "<script>alert(1)</script>")

    assertContains(response, "Nothing found for “&lt;script&gt;alert(1)&lt;/script&gt;”", status_code=404)
    assertNotContains(response, "<script>alert(1)", status_code=404)


def test_support_looks_up_too_and_a_stranger_is_sent_to_log_in(client, support_agent, events):
    assertRedirects(
        lookup(client, "user-123"), "/login/?next=/lookup%3Fq%3Duser-123", fetch_redirect_response=False
    )

    client.force_login(support_agent)
    assertRedirects(lookup(client, "user-123"), "/streams/user-123/")


def test_support_finds_nothing_by_a_personal_value_their_audit_search_cannot_match(
    client, support_agent, operator, settings, events
):
    settings.REPLAYDESK_PII_PATHS = ["data.user_id"]
    # The user 777 has no stream of their own; only an order names them, in a personal field.
    append_events(stream="order-1", events=[{"type": "OrderPlaced", "data": {"user_id": "777"}}])

    client.force_login(operator)
    assertRedirects(lookup(client, "777"), "/audit/?q=777")

    client.force_login(support_agent)
    response = lookup(client, "777")
    assertContains(response, "Nothing found for “777”", status_code=404)
    assertNotContains(response, "order-1", status_code=404)
    # …as their own audit search says.
    assertNotContains(client.get("/audit/", {"q": "777"}), 'href="/streams/order-1/"')
