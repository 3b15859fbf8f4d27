"""The subscriptions API: creating one, fetching batches under a lease, acknowledging them, nacks and
parking, and every kind of bad input refused with nothing written."""

import datetime as dt
import uuid

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.audit import AuditType
from streams import read_waits
from streams.models import Consumer, Event, ParkedEvent, SubscriptionPartition
from streams.services import append_events
from streams.subscriptions import partition_of
from streams.tasks import running_consumers
from tests.conftest import bearer_token
from tests.streams.test_api_append import assert_problem

pytestmark = pytest.mark.django_db

URL = "/api/v1/subscriptions"


def append(stream: str, n: int = 1, type_: str = "Issued") -> list[int]:
    return append_events(
        stream=stream, events=[{"type": type_, "data": {"n": i}} for i in range(n)]
    ).positions


def create(api, **body):
    # Following invoices only: with no categories it follows everything, its own audit events too.
    response = api.post(URL, {"name": "billing", "categories": ["invoice"], **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def fetch(api, name="billing", **body):
    return api.post(f"{URL}/{name}/fetch", {"reader": "worker-1", **body}, format="json")


def ack(api, lease, position, name="billing"):
    return api.post(f"{URL}/{name}/ack", {"lease": lease, "position": position}, format="json")


def audit_types() -> list[str]:
    return list(Event.objects.filter(stream__category="console").values_list("type", flat=True))


@pytest.fixture
def reader_api(support_agent):
    """A service's token: the support role may read, so it may consume a subscription."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(support_agent)}")
    return client


def test_a_created_subscription_is_listed_with_its_partitions_and_audited(api):
    append("invoice-1", 3)
    created = create(api, categories=["invoice"], partitions=4)

    assert created["kind"] == "subscription" and created["partitions"] == 4
    assert [p["partition"] for p in created["partition_status"]] == [0, 1, 2, 3]
    assert created["lag_events"] == 3
    lagging = partition_of("invoice-1", 4)
    assert [p["lag_events"] for p in created["partition_status"]] == [
        3 if n == lagging else 0 for n in range(4)
    ]
    assert AuditType.SUBSCRIPTION_CREATED in audit_types()
    listed = api.get(URL).json()["results"]
    assert [s["name"] for s in listed] == ["billing"]
    # A consumer like any other: it is listed with them, and no worker runs it.
    consumers = api.get("/api/v1/consumers").json()["results"]
    assert [(c["name"], c["kind"], c["health"]) for c in consumers] == [
        ("billing", "subscription", "healthy")
    ]
    assert "billing" not in running_consumers()


def test_a_fetch_delivers_a_partitions_events_in_order_under_a_lease_and_an_ack_moves_its_checkpoint(
    api, reader_api
):
    create(api)
    positions = append("invoice-1", 3) + append("invoice-3", 2)
    append("order-1", 2)  # not followed

    batch = fetch(reader_api, max=4).json()

    assert [e["position"] for e in batch["events"]] == positions[:4]
    assert batch["partition"] == 0 and batch["checkpoint"] == 0 and batch["delivered_up_to"] == positions[3]
    acked = reader_api.post(
        f"{URL}/billing/ack", {"lease": batch["lease"], "position": positions[3]}, format="json"
    )
    assert acked.status_code == 200, acked.content
    assert acked.json()["checkpoint"] == positions[3]
    # The holder goes on after what it was given, under the same lease.
    rest = fetch(reader_api, max=4).json()
    assert rest["lease"] == batch["lease"] and [e["position"] for e in rest["events"]] == positions[4:]
    status = api.get(f"{URL}/billing").json()
    assert status["partition_status"][0]["reader"] == "worker-1"
    assert status["partition_status"][0]["checkpoint"] == positions[3]
    assert status["lag_events"] == 1


def test_a_partition_held_by_one_reader_is_not_given_to_another_until_its_lease_expires(api):
    create(api)
    positions = append("invoice-1", 2)
    first = fetch(api, reader="a").json()

    assert fetch(api, reader="b").json() == {
        "partition": None,
        "lease": None,
        "lease_expires_at": None,
        "checkpoint": None,
        "delivered_up_to": None,
        "events": [],
        "redelivery": False,
    }
    SubscriptionPartition.objects.update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    taken = fetch(api, reader="b").json()
    # What was delivered and never acknowledged goes again, from the checkpoint.
    assert [e["position"] for e in taken["events"]] == positions and taken["lease"] != first["lease"]
    refused = api.post(
        f"{URL}/billing/ack", {"lease": first["lease"], "position": positions[0]}, format="json"
    )
    assert_problem(refused, 409)
    assert SubscriptionPartition.objects.get().checkpoint == 0


def test_an_expired_lease_is_refused_even_before_another_reader_takes_it(api):
    create(api)
    positions = append("invoice-1", 1)
    lease = fetch(api).json()["lease"]
    SubscriptionPartition.objects.update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))

    problem = assert_problem(
        api.post(f"{URL}/billing/ack", {"lease": lease, "position": positions[0]}, format="json"), 409
    )
    assert "expired" in problem["detail"]
    assert SubscriptionPartition.objects.get().checkpoint == 0


def test_an_ack_beyond_what_was_delivered_is_refused_and_changes_nothing(api):
    create(api)
    positions = append("invoice-1", 3)
    lease = fetch(api, max=1).json()["lease"]

    assert_problem(
        api.post(f"{URL}/billing/ack", {"lease": lease, "position": positions[1]}, format="json"),
        422,
        "position",
    )
    assert SubscriptionPartition.objects.get().checkpoint == 0


def test_a_lease_of_another_subscription_is_foreign(api):
    create(api)
    create(api, name="shipping")
    positions = append("invoice-1", 1)
    lease = fetch(api, name="shipping").json()["lease"]
    fetch(api)

    response = api.post(f"{URL}/billing/ack", {"lease": lease, "position": positions[0]}, format="json")
    assert_problem(response, 409)
    assert set(SubscriptionPartition.objects.values_list("checkpoint", flat=True)) == {0}


def test_a_nacked_event_comes_again_and_is_parked_at_the_last_nack_then_the_partition_goes_on(api):
    create(api, max_nacks=2)
    positions = append("invoice-1", 3)
    batch = fetch(api).json()
    nacked = api.post(
        f"{URL}/billing/nack",
        {"lease": batch["lease"], "position": positions[1], "reason": "tax service down"},
        format="json",
    ).json()
    assert nacked["checkpoint"] == positions[0] and not nacked["parked"] and nacked["nacks"] == 1

    again = fetch(api).json()
    assert [e["position"] for e in again["events"]] == positions[1:]
    parked = api.post(
        f"{URL}/billing/nack",
        {"lease": again["lease"], "position": positions[1], "reason": "tax service down"},
        format="json",
    ).json()

    assert parked["parked"] and parked["checkpoint"] == positions[1]
    [listed] = api.get("/api/v1/consumers/billing/parked").json()["results"]
    assert listed["event"]["position"] == positions[1] and "tax service down" in listed["error"]
    assert listed["attempts"] == 2
    assert [e["position"] for e in fetch(api).json()["events"]] == positions[2:]
    skipped = api.post(f"/api/v1/consumers/billing/parked/{listed['id']}/skip")
    assert skipped.status_code == 200 and skipped.json()["state"] == "skipped"


def test_a_nack_asked_again_after_a_lost_answer_gets_the_same_answer_and_counts_once(api):
    create(api, max_nacks=2)
    positions = append("invoice-1", 2)
    lease = fetch(api).json()["lease"]
    body = {"lease": lease, "position": positions[0], "reason": "tax service down"}

    first = api.post(f"{URL}/billing/nack", body, format="json")
    again = api.post(f"{URL}/billing/nack", body, format="json")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and first.json()["nacks"] == 1 and not first.json()["parked"]

    lease = fetch(api).json()["lease"]  # delivered again: a nack now is the second
    body = {**body, "lease": lease}
    parked = api.post(f"{URL}/billing/nack", body, format="json")
    repeated = api.post(f"{URL}/billing/nack", body, format="json")
    assert parked.status_code == repeated.status_code == 200
    assert repeated.json() == parked.json() and parked.json()["parked"]
    [listed] = ParkedEvent.objects.all()
    assert (listed.event_id, listed.attempts) == (positions[0], 2)
    assert [e["position"] for e in fetch(api).json()["events"]] == positions[1:]


def test_a_paused_subscription_delivers_nothing_until_resumed(api):
    create(api)
    append("invoice-1", 1)
    assert api.post("/api/v1/consumers/billing/pause").status_code == 200
    assert fetch(api).json()["events"] == []
    assert api.post("/api/v1/consumers/billing/resume").status_code == 200
    assert len(fetch(api).json()["events"]) == 1


def test_a_partition_with_nothing_to_deliver_moves_its_checkpoint_to_the_head(api):
    create(api, partitions=2)
    positions = append("invoice-1", 3)
    number = partition_of("invoice-1", 2)

    assert [e["position"] for e in fetch(api).json()["events"]] == positions
    assert fetch(api, reader="worker-2").json()["events"] == []

    checkpoints = dict(SubscriptionPartition.objects.values_list("number", "checkpoint"))
    # The other partition had nothing up to the head: its next look starts there.
    assert checkpoints == {number: 0, 1 - number: positions[-1]}
    status = api.get(f"{URL}/billing").json()
    assert status["checkpoint"] == 0 and status["lag_events"] == 3


def test_deleting_a_subscription_forgets_it_and_is_audited(api):
    create(api)
    assert api.delete(f"{URL}/billing").status_code == 204
    assert not Consumer.objects.filter(name="billing").exists()
    assert AuditType.SUBSCRIPTION_DELETED in audit_types()
    assert_problem(api.get(f"{URL}/billing"), 404)


# --- refusals


def test_a_support_agent_may_consume_but_not_create_or_delete(api, reader_api):
    assert reader_api.post(URL, {"name": "billing"}, format="json").status_code == 403
    create(api)
    assert reader_api.delete(f"{URL}/billing").status_code == 403
    assert fetch(reader_api).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Billing!"}, "name"),
        ({"name": "billing", "categories": ["in voice"]}, "categories.0"),
        ({"name": "billing", "categories": "invoice"}, "categories"),
        ({"name": "billing", "types": ["1st"]}, "types.0"),
        ({"name": "billing", "types": [7]}, "types.0"),
        ({"name": "billing", "partitions": 0}, "partitions"),
        ({"name": "billing", "partitions": 65}, "partitions"),
        ({"name": "billing", "partitions": "2"}, "partitions"),
        ({"name": "billing", "lease_seconds": 0}, "lease_seconds"),
        ({"name": "billing", "max_nacks": 101}, "max_nacks"),
        ({"name": "billing", "from_head": "yes"}, "from_head"),
        ({"name": "billing", "group": "x"}, "group"),
    ],
)
def test_a_bad_subscription_is_refused_and_nothing_is_written(api, body, field):
    assert_problem(api.post(URL, body, format="json"), 400, field)
    assert not Consumer.objects.exists()
    assert audit_types() == []


def test_a_second_subscription_of_a_name_is_a_conflict(api):
    create(api)
    assert_problem(api.post(URL, {"name": "billing"}, format="json"), 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max": 0}, "max"),
        ({"max": 1001}, "max"),
        ({"max": "10"}, "max"),
        ({"wait": -1}, "wait"),
        ({"wait": 61}, "wait"),
        ({"reader": ""}, "reader"),
        ({"reader": "a b"}, "reader"),
        ({"lease": "not-a-uuid"}, "lease"),
    ],
)
def test_a_bad_fetch_is_refused_and_leases_nothing(api, body, field):
    create(api)
    append("invoice-1", 1)
    assert_problem(fetch(api, **body), 400, field)
    assert SubscriptionPartition.objects.get().lease is None


def test_an_unknown_subscription_is_a_404_for_every_call(api):
    assert_problem(fetch(api, name="nope"), 404)
    assert_problem(
        api.post(f"{URL}/nope/ack", {"lease": str(uuid.uuid4()), "position": 1}, format="json"), 404
    )
    assert_problem(api.get(f"{URL}/nope"), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"position": 1},
        {"lease": "not-a-uuid", "position": 1},
        {"lease": 5, "position": 1},
        {"lease": "LEASE", "position": -1},
        {"lease": "LEASE", "position": "1"},
    ],
)
def test_a_bad_ack_is_refused_and_the_checkpoint_stays(api, body):
    create(api)
    append("invoice-1", 1)
    lease = fetch(api).json()["lease"]
    body = {key: lease if value == "LEASE" else value for key, value in body.items()}
    assert_problem(api.post(f"{URL}/billing/ack", body, format="json"), 400)
    assert SubscriptionPartition.objects.get().checkpoint == 0


def test_a_nack_of_an_event_the_lease_did_not_deliver_is_refused(api):
    create(api)
    positions = append("invoice-1", 2)
    lease = fetch(api, max=1).json()["lease"]
    body = {"lease": lease, "position": positions[1], "reason": "no"}
    assert_problem(api.post(f"{URL}/billing/nack", body, format="json"), 422, "position")
    assert_problem(api.post(f"{URL}/billing/nack", {**body, "reason": "  "}, format="json"), 400, "reason")
    partition = SubscriptionPartition.objects.get()
    assert (partition.checkpoint, partition.nacks) == (0, 0)
    assert not ParkedEvent.objects.exists()


def test_a_fetch_that_would_wait_past_the_caps_is_refused_with_retry_after(
    api, operator, settings, no_waiting_slots
):
    settings.REPLAYDESK_READ_WAITS_PER_USER = 1
    create(api)
    with read_waits.waiting_slot(operator.pk):
        problem = assert_problem(fetch(api, wait=5), 429)
        assert "waiting" in problem["detail"]
        assert fetch(api, wait=5)["Retry-After"] == "1"
        positions = append("invoice-1", 1)
        # Events to deliver: it answers at once and takes no slot.
        assert len(fetch(api, wait=5).json()["events"]) == 1
    assert SubscriptionPartition.objects.get().checkpoint < positions[0], "nothing is acknowledged"


def test_the_consumer_pages_show_a_subscription_with_the_other_consumers(api, browser_client):
    create(api)
    append("invoice-1", 2)

    listed = browser_client.get("/consumers/")
    detail = browser_client.get("/consumers/billing/")

    assert listed.status_code == 200 and "billing" in listed.content.decode()
    assert detail.status_code == 200 and "subscription" in detail.content.decode()


def test_a_partitions_rate_counts_the_events_acknowledged_over_its_last_window(api):
    create(api, partitions=2)
    positions = append("invoice-1", 5)
    batch = fetch(api).json()
    assert ack(api, batch["lease"], positions[1]).status_code == 200
    assert api.get(f"{URL}/billing").json()["rate"] is None  # no window counted yet
    # A minute later (the window's start moved back instead of waiting for it):
    SubscriptionPartition.objects.exclude(rate_window_at=None).update(
        rate_window_at=timezone.now() - dt.timedelta(seconds=100)
    )
    assert ack(api, batch["lease"], positions[4]).status_code == 200

    status = api.get(f"{URL}/billing").json()
    number = partition_of("invoice-1", 2)
    # Five events over a window of a little more than 100 s.
    assert 0.04 < status["partition_status"][number]["rate"] <= 0.05
    assert status["rate"] == status["partition_status"][number]["rate"]
    assert status["partition_status"][1 - number]["rate"] is None


def test_a_fetch_whose_answer_was_lost_delivers_again_so_no_ack_passes_over_it(api, reader_api):
    create(api)
    positions = append("invoice-1", 6)
    lost = fetch(reader_api, max=3).json()  # the answer never reaches the reader

    # Asked again without the lease of a batch it received: the same events, not the next ones.
    again = fetch(reader_api, max=3).json()
    assert [e["position"] for e in again["events"]] == [e["position"] for e in lost["events"]]
    assert again["lease"] == lost["lease"]
    # With the lease of the batch it did receive, the reader goes on after it.
    rest = fetch(reader_api, max=3, lease=again["lease"]).json()
    assert [e["position"] for e in rest["events"]] == positions[3:]
    assert ack(reader_api, rest["lease"], positions[-1]).status_code == 200
    assert SubscriptionPartition.objects.get().checkpoint == positions[-1]
