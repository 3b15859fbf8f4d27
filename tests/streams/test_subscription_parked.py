"""A subscription's parked events retried: queued, redelivered by the next fetch of their partition ahead
of its new events, resolved by an acknowledgement under the lease that delivered them, parked again by a
nack; and every refusal writes nothing."""

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from streams.models import Event, ParkedEvent, SubscriptionPartition
from tests.conftest import bearer_token
from tests.streams.test_api_append import assert_problem
from tests.streams.test_subscriptions import URL, ack, append, create, fetch

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader_api(support_agent):
    """A service's token: the support role may read, so it may consume a subscription."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(support_agent)}")
    return client


def nack(api, lease, position, reason="tax service down"):
    body = {"lease": lease, "position": position, "reason": reason}
    return api.post(f"{URL}/billing/nack", body, format="json")


def park_first(api, reader_api, count=3):
    """Invoices appended; the first nacked until parked (max_nacks=1). Its position, and the others'."""
    create(api, max_nacks=1)
    positions = append("invoice-1", count)
    batch = fetch(reader_api).json()
    assert nack(reader_api, batch["lease"], positions[0]).json()["parked"]
    return positions


def retry(api, parked_id=None):
    parked_id = parked_id or ParkedEvent.objects.get().pk
    return api.post(f"/api/v1/consumers/billing/parked/{parked_id}/retry")


def audit_trail() -> list[tuple[str, str]]:
    events = Event.objects.filter(stream__category="console").order_by("position")
    return [(event.type, event.actor) for event in events]


def positions_of(batch: dict) -> list[int]:
    return [event["position"] for event in batch["events"]]


def test_a_retry_queues_the_parked_event_and_the_next_fetch_delivers_it_first_in_a_batch_of_its_own(
    api, reader_api
):
    positions = park_first(api, reader_api)
    rest = fetch(reader_api).json()
    assert positions_of(rest) == positions[1:] and not rest["redelivery"]
    later = append("invoice-1", 1)

    queued = retry(api)

    assert queued.status_code == 200, queued.content
    assert (queued.json()["state"], queued.json()["queued_by"]) == ("queued", "olivia")
    assert audit_trail()[-1] == ("ParkedEventQueued", "olivia")
    again = fetch(reader_api).json()
    # Behind the checkpoint, ahead of the partition's new event: out of position order, and it says so.
    assert again["redelivery"] and positions_of(again) == positions[:1]
    assert again["lease"] == rest["lease"] and again["checkpoint"] == positions[0]
    assert again["delivered_up_to"] == positions[-1], "the partition's own delivery does not move"
    assert ParkedEvent.objects.get().redelivered_to == "worker-1"
    after = fetch(reader_api, lease=again["lease"]).json()
    assert positions_of(after) == later and not after["redelivery"]


def test_an_ack_under_the_lease_that_redelivered_it_retries_it_for_whoever_asked(api, reader_api):
    positions = park_first(api, reader_api)
    retry(api)
    batch = fetch(reader_api).json()
    assert batch["redelivery"]

    acked = ack(reader_api, batch["lease"], positions[0])

    assert acked.status_code == 200, acked.content
    parked = ParkedEvent.objects.get()
    assert (parked.state, parked.resolved_by) == ("retried", "olivia")
    assert audit_trail()[-1] == ("ParkedEventRetried", "olivia")
    retried = Event.objects.filter(type="ParkedEventRetried").get()
    assert retried.data["redelivered_to"] == "worker-1" and retried.appended_by == "user:sam"
    assert SubscriptionPartition.objects.get().checkpoint == positions[0], "the checkpoint does not move"
    # The partition goes on with its own events, after the checkpoint.
    assert positions_of(fetch(reader_api).json()) == positions[1:]


def test_a_nack_of_the_redelivered_event_parks_it_again_with_one_attempt_more(api, reader_api):
    positions = park_first(api, reader_api)
    retry(api)
    batch = fetch(reader_api).json()

    nacked = nack(reader_api, batch["lease"], positions[0], reason="still down")

    assert nacked.status_code == 200, nacked.content
    assert nacked.json()["parked"] and nacked.json()["checkpoint"] == positions[0]
    parked = ParkedEvent.objects.get()
    assert (parked.state, parked.attempts, parked.queued_by) == ("parked", 2, "")
    assert "still down" in parked.error
    following = fetch(reader_api).json()
    assert not following["redelivery"] and positions_of(following) == positions[1:]


def test_an_ack_of_a_queued_event_the_lease_has_not_delivered_is_refused_and_writes_nothing(api, reader_api):
    positions = park_first(api, reader_api)
    lease = fetch(reader_api).json()["lease"]
    retry(api)
    partition = SubscriptionPartition.objects.get()
    trail = audit_trail()

    problem = assert_problem(ack(reader_api, lease, positions[0]), 422, "position")

    assert "queued for redelivery" in problem["errors"]["position"][0]
    assert ParkedEvent.objects.get().state == "queued"
    assert audit_trail() == trail
    unchanged = SubscriptionPartition.objects.get()
    assert unchanged.checkpoint == partition.checkpoint
    assert unchanged.lease_expires_at == partition.lease_expires_at, "the lease is not renewed"


def test_a_nack_of_a_queued_event_the_lease_has_not_delivered_is_refused(api, reader_api):
    positions = park_first(api, reader_api)
    lease = fetch(reader_api).json()["lease"]
    retry(api)

    assert_problem(nack(reader_api, lease, positions[0]), 422, "position")
    assert ParkedEvent.objects.get().state == "queued"


def test_a_redelivery_whose_lease_expires_goes_to_the_next_reader_and_the_old_lease_is_refused(
    api, reader_api
):
    positions = park_first(api, reader_api)
    retry(api)
    first = fetch(reader_api).json()
    SubscriptionPartition.objects.update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))

    taken = fetch(reader_api, reader="worker-2").json()

    assert taken["redelivery"] and positions_of(taken) == positions[:1] and taken["lease"] != first["lease"]
    assert_problem(ack(reader_api, first["lease"], positions[0]), 409)
    assert ParkedEvent.objects.get().state == "queued"
    assert ack(reader_api, taken["lease"], positions[0]).status_code == 200
    assert ParkedEvent.objects.get().state == "retried"
    # The new lease had delivered none of the partition's own events: they come next, from the checkpoint.
    assert positions_of(fetch(reader_api, reader="worker-2").json()) == positions[1:]


def test_a_nack_in_a_redelivery_batch_retries_those_before_it_and_delivers_those_after_it_again(
    api, reader_api
):
    create(api, max_nacks=1)
    positions = append("invoice-1", 3)
    for position in positions:
        batch = fetch(reader_api).json()
        assert nack(reader_api, batch["lease"], position).json()["parked"]
    for parked in ParkedEvent.objects.all():
        retry(api, parked.pk)
    batch = fetch(reader_api).json()
    assert batch["redelivery"] and positions_of(batch) == positions

    nack(reader_api, batch["lease"], positions[1])

    states = dict(ParkedEvent.objects.values_list("event_id", "state"))
    assert states == {positions[0]: "retried", positions[1]: "parked", positions[2]: "queued"}
    again = fetch(reader_api).json()
    assert again["redelivery"] and positions_of(again) == positions[2:]


def test_a_paused_subscription_redelivers_nothing(api, reader_api):
    park_first(api, reader_api)
    retry(api)
    api.post("/api/v1/consumers/billing/pause")

    assert fetch(reader_api).json()["events"] == []
    assert ParkedEvent.objects.get().redelivered_to == ""


def test_a_queued_event_can_be_skipped_and_its_late_ack_resolves_nothing(api, reader_api):
    positions = park_first(api, reader_api)
    retry(api)
    batch = fetch(reader_api).json()

    skipped = api.post(f"/api/v1/consumers/billing/parked/{ParkedEvent.objects.get().pk}/skip")

    assert skipped.status_code == 200 and skipped.json()["state"] == "skipped"
    assert ack(reader_api, batch["lease"], positions[0]).status_code == 200
    parked = ParkedEvent.objects.get()
    assert (parked.state, parked.resolved_by) == ("skipped", "olivia")
    assert [t for t, _ in audit_trail()].count("ParkedEventRetried") == 0


def test_a_second_retry_of_a_queued_event_says_it_is_queued_already(api, reader_api):
    park_first(api, reader_api)
    retry(api)

    problem = assert_problem(retry(api), 409)

    assert "queued for redelivery already, by olivia" in problem["detail"]
    assert [t for t, _ in audit_trail()].count("ParkedEventQueued") == 1


def test_the_partition_status_counts_its_queued_redeliveries(api, reader_api):
    park_first(api, reader_api)
    retry(api)

    [partition] = api.get(f"{URL}/billing").json()["partition_status"]

    assert partition["redeliveries"] == 1


def test_a_viewer_cannot_retry_by_the_api_or_the_page(api, reader_api, client, support_agent):
    park_first(api, reader_api)
    parked = ParkedEvent.objects.get()
    client.force_login(support_agent)
    trail = audit_trail()

    assert_problem(retry(reader_api), 403)
    assert client.post(f"/consumers/billing/parked/{parked.pk}/retry").status_code == 403

    parked.refresh_from_db()
    assert (parked.state, parked.queued_by) == ("parked", "")
    assert audit_trail() == trail
