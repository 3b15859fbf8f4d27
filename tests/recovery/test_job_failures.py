"""How a job fails and is tried again: retries from the checkpoint, cancels, lost database sessions, and
lanes failing together (recorded through recovery.runner.record_failure)."""

import datetime as dt

import psycopg
import pytest
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from recovery import runner, services
from recovery.models import Job, JobFailure, JobLane, JobLogLine
from streams.consumers import run_projection
from streams.projections import Projection, add, remove
from streams.services import append_events
from tests.recovery.job_helpers import (
    _snapshot_dir,  # noqa: F401 (an autouse fixture)
    audit_types,
    run,
    users,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


# --- failure, retry, cancel


class Brittle(Projection, register=False):
    """Counts each application of an event; fails on a poisoned one while `failing` is set."""

    name = "test_brittle"
    categories = ("order",)
    tables = ("CREATE TABLE applied (position bigint PRIMARY KEY, times int NOT NULL)",)
    batch_size = replay_batch_size = 10
    failing = True

    def apply(self, cursor, events):
        if Brittle.failing and any(e.data.get("poison") for e in events):
            raise ValueError("cannot apply a poisoned order")
        cursor.execute(
            "INSERT INTO applied SELECT unnest(%s::bigint[]), 1"
            " ON CONFLICT (position) DO UPDATE SET times = applied.times + 1",
            [[e.position for e in events]],
        )


@pytest.fixture
def brittle():
    Brittle.failing = True
    add(Brittle)
    yield Brittle
    remove(Brittle.name)


def orders(n, poison_at=None):
    for i in range(n):
        append_events(stream=f"order-{i}", events=[{"type": "Placed", "data": {"poison": i == poison_at}}])


def test_a_failing_replay_names_the_event_and_a_retry_goes_on_from_its_checkpoint(brittle):
    orders(60, poison_at=45)
    job = run("replay", projection="test_brittle", shards=1)
    assert job.state == "failed"
    assert "position" in job.error and "cannot apply a poisoned order" in job.error
    assert job.failures == runner.MAX_FAILURES
    assert audit_types(job)[-1] == "JobFailed"
    lane = JobLane.objects.get(job=job, lane=0)
    assert 0 < lane.done < 60  # the batches before the poisoned one were kept

    Brittle.failing = False
    services.retry_job(job_id=job.pk, actor="olivia")
    job = runner.run_inline(job.pk)
    assert job.state == "succeeded", job.error
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), max(times) FROM proj_test_brittle.applied")
        assert cursor.fetchone() == (60, 1)  # every event once: nothing re-applied by the retry
    assert "JobRetried" in audit_types(job)


def test_only_a_failed_job_can_be_retried():
    users(1)
    run_projection("users_directory")
    job = run("snapshot", projection="users_directory")
    with pytest.raises(services.JobError, match="only a failed job"):
        services.retry_job(job_id=job.pk, actor="olivia")


def test_a_queued_job_is_cancelled_at_once_and_then_cannot_be_cancelled_again():
    users(1)
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="o", reason="r"
    )
    cancelled = services.cancel_job(job_id=job.pk, actor="victor")
    assert cancelled.state == "cancelled" and cancelled.cancel_requested_by == "victor"
    assert runner.run_inline(job.pk).state == "cancelled"  # a late message does nothing
    with pytest.raises(services.JobError, match="cancelled already"):
        services.cancel_job(job_id=job.pk, actor="victor")


def lost_session_job(*, lost_ago: dt.timedelta | None):
    """A running job that made progress 20 minutes ago and, if lost_ago, first lost its session then."""
    users(1)
    run_projection("users_directory")
    job = services.request_job(
        kind="snapshot", params={"projection": "users_directory"}, requested_by="olivia", reason="drill"
    )
    long_ago = timezone.now() - dt.timedelta(minutes=20)
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, started_at=long_ago, progress_at=long_ago)
    if lost_ago is not None:
        runner.record_failure(
            Job.objects.get(pk=job.pk), SESSION_GONE, retry=lambda pause: None, where="lane 0"
        )
        JobFailure.objects.filter(job=job).update(at=Now() - lost_ago)
    return Job.objects.get(pk=job.pk)


SESSION_GONE = psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.mark.parametrize(
    ("lost_ago", "pause"), [(None, 1.0), (dt.timedelta(seconds=60), 6.0), (dt.timedelta(minutes=10), 30.0)]
)
def test_a_lost_session_is_retried_with_pauses_that_grow_while_it_goes_on(lost_ago, pause):
    job = lost_session_job(lost_ago=lost_ago)
    pauses = []

    runner.record_failure(job, SESSION_GONE, retry=pauses.append, where="lane 0")

    job.refresh_from_db()
    assert job.state == "running" and job.failures == 0
    assert pauses == [pytest.approx(pause, abs=0.5)]


def test_a_job_whose_sessions_are_lost_for_15_minutes_without_progress_fails():
    job = lost_session_job(lost_ago=dt.timedelta(minutes=16))
    pauses = []

    runner.record_failure(job, SESSION_GONE, retry=pauses.append, where="lane 0")

    job.refresh_from_db()
    assert pauses == []
    assert job.state == "failed"
    assert "again and again for 16 minutes without progress" in job.error
    assert "server closed the connection unexpectedly" in job.error
    assert audit_types(job)[-1] == "JobFailed"


def running_job():
    users(1)
    run_projection("users_directory")
    job = services.request_job(
        kind="snapshot", params={"projection": "users_directory"}, requested_by="olivia", reason="drill"
    )
    Job.objects.filter(pk=job.pk).update(state=Job.State.RUNNING, started_at=timezone.now())
    return Job.objects.get(pk=job.pk)


def fail(job, where, pauses):
    runner.record_failure(
        Job.objects.get(pk=job.pk), RuntimeError("deadlock detected"), retry=pauses.append, where=where
    )
    return Job.objects.get(pk=job.pk)


def test_lanes_failing_together_count_as_one_attempt_and_each_lane_retries():
    job = running_job()
    pauses = []

    for lane in range(4):
        job = fail(job, f"lane {lane}", pauses)

    assert job.state == "running" and job.failures == 1
    assert pauses == [2.0, 2.0, 2.0, 2.0], "every lane is tried again after the same pause"
    lines = list(JobLogLine.objects.filter(job=job, level="warning").values_list("message", flat=True))
    assert lines[0].startswith("attempt 1 failed (lane 0)") and lines[1].startswith("lane 1 failed too")


def test_a_lane_failing_again_counts_and_the_job_fails_after_its_attempts():
    job = running_job()
    pauses = []

    job = fail(job, "lane 0", pauses)
    job = fail(job, "lane 1", pauses)  # the same moment: the same attempt
    job = fail(job, "lane 0", pauses)  # its own retry (inline, at once): a new attempt
    assert job.failures == 2 and job.state == "running"
    job = fail(job, "lane 0", pauses)

    assert job.state == "failed" and job.failures == runner.MAX_FAILURES
    assert "deadlock detected" in job.error
