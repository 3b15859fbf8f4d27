"""A subscription's consumer page through Django's test client: what each role sees of it, its partitions'
poll, and the role checks of its actions."""

import pytest
from pytest_django.asserts import assertContains, assertNotContains

from streams import subscriptions
from streams.models import Consumer, Event, ParkedEvent
from streams.services import append_events
from streams.subscriptions import partition_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def billing(operator):
    """A subscription to invoices with one event parked at its first nack."""
    subscription = subscriptions.create_subscription(
        name="billing", actor="olivia", categories=["invoice"], partitions=2, max_nacks=1
    )
    [position] = append_events(stream="invoice-1", events=[{"type": "Issued", "data": {}}]).positions
    batch = subscriptions.fetch(
        subscription=subscription, reader="worker-1", max_events=10, wait_seconds=0, user_id="tests"
    )
    subscriptions.nack(subscription=subscription, lease=batch.lease, position=position, reason="no tax rate")
    return subscription


def test_an_operator_sees_the_partitions_settings_and_every_action(browser_client, billing):
    response = browser_client.get("/consumers/billing/")

    assertContains(response, 'class="partition"', count=2)
    assertContains(response, "worker-1")
    assertContains(response, '<dd class="subscription-filter">categories invoice</dd>', html=True)
    assertContains(response, "Parked after")
    for button in ("Pause", "Retry", "Skip"):
        assertContains(response, f'<button type="submit">{button}')


def test_a_support_agent_sees_the_subscription_and_no_button(client, support_agent, billing):
    client.force_login(support_agent)

    response = client.get("/consumers/billing/")

    assertContains(response, 'class="partition"', count=2)
    assertContains(response, "no tax rate")
    # No form of an action (pause, resume, retry, skip) and no button of one.
    assertNotContains(response, 'action="/consumers/billing/')
    for button in ("Pause", "Resume", "Retry", "Skip"):
        assertNotContains(response, f'<button type="submit">{button}')
    parked = ParkedEvent.objects.get()
    assert client.post("/consumers/billing/pause").status_code == 403
    assert client.post(f"/consumers/billing/parked/{parked.pk}/skip").status_code == 403
    assert Consumer.objects.get(name="billing").state == "running"
    assert ParkedEvent.objects.get().state == "parked"


def test_the_partitions_poll_answers_with_the_live_part_and_the_health_badge(browser_client, billing):
    response = browser_client.get("/consumers/billing/partitions", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assertContains(response, 'id="subscription-live"')
    assertContains(response, 'hx-swap-oob="true"')
    assertNotContains(response, "<html")


def test_the_partitions_poll_stops_once_the_subscription_is_deleted(browser_client, billing):
    subscriptions.delete_subscription(name="billing", actor="olivia")

    response = browser_client.get("/consumers/billing/partitions", headers={"HX-Request": "true"})

    assert response.status_code == 286
    assertContains(response, "it was deleted", status_code=286)


def test_a_retry_from_the_page_queues_the_event_and_says_what_happens_next(browser_client, billing):
    parked = ParkedEvent.objects.get()

    response = browser_client.post(f"/consumers/billing/parked/{parked.pk}/retry", follow=True)

    assertContains(response, "Queued the parked event for redelivery")
    assertContains(response, "Queued for redelivery</strong> by olivia")
    assert Event.objects.filter(type="ParkedEventQueued", actor="olivia").count() == 1


def test_lagging_streams_count_each_stream_from_its_own_partitions_checkpoint(api, browser_client):
    subscription = subscriptions.create_subscription(
        name="shipping", actor="olivia", categories=["parcel"], partitions=2
    )
    names = [f"parcel-{n}" for n in range(20)]
    first = names[0]
    other = next(name for name in names if partition_of(name, 2) != partition_of(first, 2))
    append_events(stream=first, events=[{"type": "Sent", "data": {}}] * 3)
    append_events(stream=other, events=[{"type": "Sent", "data": {}}] * 2)
    batch = subscriptions.fetch(
        subscription=subscription, reader="worker-1", max_events=10, wait_seconds=0, user_id="tests"
    )
    subscriptions.ack(subscription=subscription, lease=batch.lease, position=batch.events[-1].position)
    done, waiting = (first, other) if batch.events[0].stream.name == first else (other, first)

    listed = api.get("/api/v1/consumers/shipping/lagging-streams").json()["results"]

    # The slowest partition's checkpoint would count the acknowledged stream's events too.
    assert [(row["stream"], row["applied_sequence"]) for row in listed] == [(waiting, 0)]
    assert listed[0]["lag_events"] == (2 if waiting == other else 3)
    page = browser_client.get("/consumers/shipping/").content.decode()
    assert f'href="/streams/{waiting}/"' in page and f'href="/streams/{done}/"' not in page
