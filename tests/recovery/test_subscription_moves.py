"""Rewind and skip to head: a subscription's checkpoints moved by a job that needs an approval, with a
dry-run count, audited; its readers then receive the events again (or never)."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from recovery.models import Job
from recovery.runner import run_inline
from streams.models import Event, SubscriptionPartition
from tests.conftest import PASSWORD
from tests.recovery.test_api_approvals import approve, is_problem, reject, session_client
from tests.streams.test_subscriptions import ack, append, create, fetch

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("four_eyes")]


def handled(api, reader="worker-1", name="billing") -> list[int]:
    """Fetch and acknowledge until nothing is left: the positions the reader handled, in order."""
    seen: list[int] = []
    while (batch := fetch(api, name=name, reader=reader, max=100).json())["events"]:
        positions = [event["position"] for event in batch["events"]]
        assert ack(api, batch["lease"], positions[-1], name=name).status_code == 200
        seen += positions
    return seen


def requested(api, kind, **params) -> dict:
    body = {"kind": kind, "params": {"subscription": "billing", **params}, "reason": "read model lost"}
    response = api.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def checkpoints() -> list[int]:
    return list(SubscriptionPartition.objects.order_by("number").values_list("checkpoint", flat=True))


def moves_audited() -> list[dict]:
    events = Event.objects.filter(
        stream__name="console-consumer.billing", type="SubscriptionCheckpointsMoved"
    )
    return list(events.values_list("data", flat=True))


def test_a_rewind_runs_only_once_approved_and_then_delivers_again_from_its_position(api, approver):
    create(api, partitions=2)
    early = append("invoice-1", 2) + append("invoice-2", 2)
    late = append("invoice-1", 2) + append("invoice-2", 2) + append("invoice-3", 1)
    append("order-1", 3)  # not followed
    assert sorted(handled(api)) == early + late
    before = checkpoints()

    estimate = api.post(
        "/api/v1/jobs/estimate",
        {"kind": "rewind", "params": {"subscription": "billing", "to_position": early[-1]}},
        format="json",
    ).json()
    assert estimate["events"] == len(late) and estimate["params"]["to_position"] == early[-1]

    job = requested(api, "rewind", to_position=early[-1])
    assert (job["state"], job["approvals_required"]) == ("pending_approval", 1)
    # Without the approval nothing moves, even when a worker is told to run it.
    assert run_inline(job["id"]).state == "pending_approval"
    assert checkpoints() == before and handled(api) == [] and moves_audited() == []

    assert approve(session_client(approver), job).json()["state"] == "queued"
    before = checkpoints()
    finished = run_inline(job["id"])

    assert finished.state == "succeeded"
    assert finished.result["events"] == len(late) and finished.done == len(late)
    assert all(point <= early[-1] for point in checkpoints())
    again = handled(api, reader="worker-2")
    assert sorted(again) == late
    for stream_positions in (late[:2], late[2:4]):  # per stream, in order
        assert [p for p in again if p in stream_positions] == stream_positions
    [audited] = moves_audited()
    assert audited["job"] == job["id"] and audited["direction"] == "back" and audited["events"] == len(late)
    assert {int(n): moved["from"] for n, moved in audited["partitions"].items()} == {
        n: point for n, point in enumerate(before) if point > early[-1]
    }


def test_a_rewind_lets_go_of_the_moved_partitions_so_an_old_lease_cannot_acknowledge(api, approver):
    settings_free = create(api)
    assert settings_free["partitions"] == 1
    positions = append("invoice-1", 4)
    batch = fetch(api, max=2).json()
    assert ack(api, batch["lease"], positions[1]).status_code == 200

    job = requested(api, "rewind", to_position=0)
    approve(session_client(approver), job)
    assert run_inline(job["id"]).state == "succeeded"

    refused = ack(api, batch["lease"], positions[1])
    assert is_problem(refused, 409)
    assert checkpoints() == [0]
    assert handled(api) == positions


def test_a_rewind_to_a_time_starts_at_the_first_event_recorded_from_then(api, approver):
    create(api)
    old = append("invoice-1", 2)
    # Recorded two hours ago, as was everything before them.
    Event.objects.filter(position__lte=old[-1]).update(recorded_at=timezone.now() - dt.timedelta(hours=2))
    recent = append("invoice-1", 2)
    handled(api)
    to_time = (timezone.now() - dt.timedelta(hours=1)).isoformat()

    job = requested(api, "rewind", to_time=to_time)
    assert job["params"]["to_position"] == old[-1]
    approve(session_client(approver), job)
    assert run_inline(job["id"]).state == "succeeded"

    assert handled(api) == recent


def test_skip_to_head_passes_over_exactly_what_its_dry_run_counted(api, approver):
    create(api, partitions=2)
    skipped = append("invoice-1", 3) + append("invoice-2", 2)
    job = requested(api, "skip_to_head")
    assert api.post(
        "/api/v1/jobs/estimate",
        {"kind": "skip_to_head", "params": {"subscription": "billing"}},
        format="json",
    ).json()["events"] == len(skipped)
    # Appended after the request: the approval did not cover them, so they are delivered.
    after = append("invoice-1", 1) + append("invoice-2", 1)

    approve(session_client(approver), job)
    finished = run_inline(job["id"])

    assert finished.state == "succeeded" and finished.result["events"] == len(skipped)
    assert sorted(handled(api)) == after
    [audited] = moves_audited()
    assert audited["direction"] == "forward" and audited["position"] == skipped[-1]


def test_a_rejected_skip_never_moves_anything(api, approver):
    create(api)
    positions = append("invoice-1", 2)
    job = requested(api, "skip_to_head")

    reject(session_client(approver), job, comment="the readers will catch up")

    assert run_inline(job["id"]).state == "rejected"
    assert checkpoints() == [0] and handled(api) == positions


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"subscription": "nope", "to_position": 0}, "subscription", "no subscription is named 'nope'"),
        ({"subscription": "billing"}, "to_position", "say where to rewind to"),
        ({"subscription": "billing", "to_position": -1}, "to_position", "0 or more"),
        ({"subscription": "billing", "to_position": 10**9}, "to_position", "a rewind goes back"),
        (
            {"subscription": "billing", "to_position": 1, "to_time": "2026-01-01T00:00:00Z"},
            "to_time",
            "not both",
        ),
        ({"subscription": "billing", "to_time": "yesterday"}, "to_time", "ISO 8601"),
        ({"subscription": "billing", "to_time": "2999-01-01T00:00:00Z"}, "to_time", "future"),
        ({"subscription": "billing", "projection": "x", "to_position": 0}, "projection", "takes no"),
    ],
)
def test_bad_rewinds_are_refused_with_the_field_named_and_nothing_written(api, params, field, message):
    create(api)
    append("invoice-1", 1)
    audited = Event.objects.count()

    for path in ("/api/v1/jobs", "/api/v1/jobs/estimate"):
        response = api.post(path, {"kind": "rewind", "params": params, "reason": "x"}, format="json")
        assert is_problem(response, 422), response.content
        assert any(message in text for text in response.json()["errors"][field]), response.json()

    assert not Job.objects.exists() and Event.objects.count() == audited


def test_the_subscription_page_offers_both_jobs_and_the_form_comes_filled_in(api, operator):
    create(api)
    browser = Client()
    assert browser.login(username=operator.username, password=PASSWORD)

    page = browser.get(reverse("streams:consumer", args=["billing"])).content.decode()

    new_job = reverse("recovery:job-new")
    assert f"{new_job}?kind=rewind&amp;subscription=billing" in page
    assert f"{new_job}?kind=skip_to_head&amp;subscription=billing" in page
    form = browser.get(new_job, {"kind": "rewind", "subscription": "billing"}).content.decode()
    assert '<option value="billing" selected>' in form
    posted = browser.post(
        new_job, {"kind": "rewind", "subscription": "billing", "to_position": "0", "reason": "rebuild"}
    )
    assert posted.status_code == 302
    job = Job.objects.get()
    assert (job.kind, job.target, job.params["to_position"], job.state) == (
        "rewind",
        "billing",
        0,
        "pending_approval",
    )


def test_the_command_line_dry_runs_requests_and_refuses_a_rewind(api, approver):
    create(api)
    positions = append("invoice-1", 3)
    handled(api)

    estimate = call("rewind", "billing", "--to-position", str(positions[0]), "--dry-run")
    assert "  events  2 in 1 streams" in estimate and not Job.objects.exists()
    with pytest.raises(CommandError) as refused:
        call("rewind", "billing", "--reason", "r", "--to-position", "-4")
    assert "--to-position: must be a whole number, 0 or more" in str(refused.value)
    with pytest.raises(CommandError) as refused:
        call("skip_to_head", "nope", "--reason", "r")
    assert "SUBSCRIPTION: no subscription is named 'nope'" in str(refused.value)
    assert not Job.objects.exists()

    job_id = int(call("rewind", "billing", "--to-position", str(positions[0]), "--reason", "r", "--no-wait"))

    assert Job.objects.get(pk=job_id).state == "pending_approval"
    approve(session_client(approver), {"id": job_id, "params_sha256": Job.objects.get().params_sha256})
    assert run_inline(job_id).state == "succeeded"
    assert handled(api) == positions[1:]


def call(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()
