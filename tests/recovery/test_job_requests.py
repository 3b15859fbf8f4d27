"""Requesting recovery jobs through their services: the canonical parameters, refusals, one job per target,
and a replay run to its end in this process (recovery.runner.run_inline)."""

import pytest
from django.db import connection

from recovery import runner, services
from recovery.models import Job, JobLane
from recovery.params import JobParamsError, params_sha256
from streams.consumers import run_projection
from streams.models import Event
from tests.recovery.job_helpers import (
    _snapshot_dir,  # noqa: F401 (an autouse fixture)
    audit_types,
    run,
    sql,
    users,
)
from tests.streams.projection_helpers import checkpoint, fold_users, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


# --- requests


def test_a_replay_rebuilds_in_lanes_swaps_and_keeps_the_previous_schema():
    users(40)
    run_projection("users_directory")
    sql("UPDATE proj_users_directory.users SET name = 'damaged'")

    job = run("replay", projection="users_directory", shards=3)

    assert job.state == "succeeded", job.error
    assert projected_users() == fold_users()
    assert job.result["events_replayed"] == 40 and job.result["position"] == checkpoint(
        "proj_users_directory"
    )
    assert JobLane.objects.filter(job=job).count() == 4  # three shards and the tail
    assert (job.done, job.total, job.stage) == (40, 40, "done")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM proj_users_directory__previous.users WHERE name = 'damaged'")
        assert cursor.fetchone()[0] == 40
    assert audit_types(job) == ["JobRequested", "JobQueued", "JobStarted", "JobSucceeded"]


def test_events_appended_during_a_replay_are_in_the_swapped_projection():
    users(10)
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="olivia", reason="rebuild"
    )
    with runner.inline():
        runner.run_slice(job.pk, 0)  # prepared: the target is the head now
        users(5, start=10)  # committed after the target: the tail picks them up
    job = runner.run_inline(job.pk)
    assert job.state == "succeeded"
    assert set(projected_users()) == {str(n) for n in range(15)}


def test_canonical_params_fill_defaults_and_hash_the_same_whatever_the_key_order():
    users(1)
    one = services.request_job(
        kind="verify", params={"repair": False, "projection": "users_directory"}, requested_by="o", reason="r"
    )
    services.cancel_job(job_id=one.pk, actor="o")
    two = services.request_job(
        kind="verify", params={"projection": "users_directory"}, requested_by="o", reason="r"
    )
    assert one.params == two.params == {"projection": "users_directory", "repair": False, "shards": 4}
    assert one.params_sha256 == two.params_sha256 == params_sha256(two.params)


def test_a_job_run_in_this_process_rebuilds_in_one_lane_unless_asked_for_more():
    # Lanes run one after another here, and each reads every event of its windows for its share.
    users(6)
    with runner.inline():
        here = services.request_job(
            kind="replay", params={"projection": "users_directory"}, requested_by="o", reason="r"
        )
    assert here.params["shards"] == 1
    job = runner.run_inline(here.pk)
    assert job.state == "succeeded", job.error
    lanes = JobLane.objects.filter(job=job).order_by("lane").values_list("lane", "done")
    assert list(lanes) == [(0, 6), (1, 0)]  # the one lane, then the tail's

    with runner.inline():
        asked = services.request_job(
            kind="replay", params={"projection": "users_directory", "shards": 3}, requested_by="o", reason="r"
        )
    assert asked.params["shards"] == 3


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("rebuild", {"projection": "users_directory"}, "kind"),
        ("replay", {}, "projection"),
        ("replay", {"projection": "nope"}, "projection"),
        ("replay", {"projection": "users_directory", "shards": 0}, "shards"),
        ("replay", {"projection": "users_directory", "speed": "fast"}, "speed"),
        ("replay", {"projection": "users_directory", "stream": "user-404"}, "stream"),
        (
            "replay",
            {"projection": "users_directory", "exclude": {"event_ids": ["not-a-uuid"]}},
            "exclude.event_ids",
        ),
        (
            "replay",
            {"projection": "users_directory", "exclude": {"recorded_after": "yesterday"}},
            "exclude.recorded_after",
        ),
        ("restore", {"projection": "users_directory"}, "snapshot"),
        ("restore", {"projection": "users_directory", "snapshot": 999}, "snapshot"),
        ("verify", {"projection": "users_directory", "repair": "yes"}, "repair"),
        ("resync", {"sink": "nope"}, "sink"),
    ],
)
def test_bad_parameters_name_the_field_and_write_nothing(kind, params, field):
    users(1)
    events = Event.objects.count()
    with pytest.raises(JobParamsError) as refused:
        services.request_job(kind=kind, params=params, requested_by="olivia", reason="because")
    assert field in refused.value.errors and all(refused.value.errors[field])
    assert Job.objects.count() == 0 and Event.objects.count() == events


def test_a_job_needs_a_reason():
    with pytest.raises(JobParamsError) as refused:
        services.request_job(kind="snapshot", params={"projection": "access"}, requested_by="o", reason="  ")
    assert "reason" in refused.value.errors and Job.objects.count() == 0


def test_one_job_at_a_time_per_projection():
    users(1)
    first = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="o", reason="r"
    )
    with pytest.raises(services.JobConflict) as busy:
        services.request_job(
            kind="verify", params={"projection": "users_directory"}, requested_by="o", reason="r"
        )
    assert busy.value.job == first and f"job {first.pk}" in str(busy.value)
    # Another projection is free.
    services.request_job(kind="snapshot", params={"projection": "access"}, requested_by="o", reason="r")
