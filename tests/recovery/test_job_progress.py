"""A job's progress and what it shows elsewhere: progress written at most twice a second, a projection
rebuilding, a snapshot catalogued, the rate of a stage."""

import pytest

from recovery import runner, services
from recovery.models import Job
from streams.consumers import run_projection
from streams.lag import consumer_statuses
from streams.models import Consumer
from streams.projections import get_projection
from tests.recovery.job_helpers import (
    _snapshot_dir,  # noqa: F401 (an autouse fixture)
    run,
    sql,
    users,
)
from tests.streams.projection_helpers import checkpoint, fold_users, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


# --- progress, health


def test_progress_is_written_at_most_twice_a_second_whoever_writes_it():
    users(1)
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="o", reason="r"
    )
    assert runner.report(job) is True
    assert runner.report(job) is False  # written a moment ago
    assert runner.report(job, force=True) is True


def test_a_projection_being_replayed_is_rebuilding():
    users(2)
    run_projection("users_directory")
    run_projection("access")
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="o", reason="r"
    )
    Job.objects.filter(pk=job.pk).update(state="running")
    health = {status.name: status.health for status in consumer_statuses()}
    assert health["users_directory"] == "rebuilding" and health["access"] != "rebuilding"


def test_a_snapshot_of_a_projection_that_never_ran_fails_at_once_with_the_reason():
    job = run("snapshot", projection="users_directory")
    assert job.state == "failed" and job.failures == 1 and "no schema yet" in job.error


def test_a_snapshot_job_catalogues_the_snapshot():
    users(3)
    run_projection("users_directory")
    job = run("snapshot", projection="users_directory")
    from recovery.models import Snapshot

    snapshot = Snapshot.objects.get(pk=job.result["snapshot"])
    assert (snapshot.projection, snapshot.position, snapshot.job_id) == (
        "users_directory",
        checkpoint("proj_users_directory"),
        job.pk,
    )
    assert snapshot.rows == 1 + 3 + 3 and snapshot.bytes > 0 and not snapshot.scheduled
    assert get_projection("users_directory").version == snapshot.version


def test_a_stage_rate_counts_only_the_stage_and_a_job_without_lanes_keeps_its_count():
    users(30)
    run_projection("users_directory")
    replay = run("replay", projection="users_directory")
    elapsed = (replay.finished_at - replay.stage_started_at).total_seconds()
    assert replay.stage_done == 30 and replay.done == 30  # nothing was left for the last stage
    assert replay.rate is None or replay.rate <= 30 / max(elapsed, 0.001) + 1
    snapshot = run("snapshot", projection="users_directory")
    assert snapshot.done == snapshot.total == snapshot.result["rows"]


def test_a_projection_stopped_by_a_schema_of_another_version_runs_again_after_a_replay():
    users(3)
    run_projection("users_directory")
    sql("UPDATE proj_users_directory.checkpoint SET version = 0")  # as if the code moved on to a new version
    run_projection("users_directory")
    consumer = Consumer.objects.get(name="users_directory")
    assert consumer.state == "failed" and "replay the projection" in consumer.last_error

    assert run("replay", projection="users_directory").state == "succeeded"
    consumer.refresh_from_db()
    assert consumer.state == "running"
    users(1, start=3)
    run_projection("users_directory")
    assert projected_users() == fold_users()
