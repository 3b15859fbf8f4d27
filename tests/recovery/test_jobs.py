"""Recovery jobs through their services, run to the end in this process (recovery.runner.run_inline)."""

import datetime as dt

import psycopg
import pytest
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from recovery import runner, services
from recovery.models import Job, JobFailure, JobLane, JobLogLine
from recovery.params import JobParamsError, params_sha256
from streams.consumers import run_projection
from streams.lag import consumer_statuses
from streams.models import Consumer, Event
from streams.projections import Projection, add, get_projection, remove
from streams.services import append_events
from tests.streams.projection_helpers import checkpoint, create_user, fold_users, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


@pytest.fixture(autouse=True)
def _snapshot_dir(settings, tmp_path):
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"


def run(kind, reason="recovery drill", **params):
    job = services.request_job(kind=kind, params=params, requested_by="olivia", reason=reason)
    return runner.run_inline(job.pk)


def users(n, start=0):
    for uid in range(start, start + n):
        create_user(str(uid))


def rename(uid, name, actor="svc-bad-deploy"):
    return append_events(
        stream=f"user-{uid}",
        events=[{"type": "UserNameSet", "data": {"user_id": str(uid), "name": name}}],
        actor=actor,
    ).last_position


def audit_types(job):
    return list(
        Event.objects.filter(stream__name=f"console-job.{job.pk}")
        .order_by("position")
        .values_list("type", flat=True)
    )


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def schema_exists(schema):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cursor.fetchone() is not None


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


# --- exclusions, snapshots, repairs


def test_a_replay_can_exclude_the_events_a_bad_deploy_wrote():
    users(5)
    start = timezone.now()
    bad = [rename(uid, "hacked") for uid in range(3)]
    good = rename(4, "Fine Name", actor="support")
    job = run(
        "replay",
        projection="users_directory",
        exclude={"actor": "svc-bad-deploy", "recorded_after": start.isoformat()},
    )

    assert job.state == "succeeded", job.error
    names = {uid: row[1] for uid, row in projected_users().items()}
    assert names["0"] == "User 0" and names["2"] == "User 2" and names["4"] == "Fine Name"
    assert job.result["events_excluded"] == len(bad) and good > bad[-1]
    assert job.params["exclude"]["actor"] == "svc-bad-deploy"  # recorded on the job


def test_a_replay_can_exclude_events_by_id():
    users(2)
    rename(0, "Typo")
    wrong = Event.objects.filter(type="UserNameSet").get()
    job = run("replay", projection="users_directory", exclude={"event_ids": [str(wrong.event_id)]})
    assert projected_users()["0"][1] == "User 0" and job.result["events_excluded"] == 1


def test_a_replay_from_a_snapshot_applies_only_what_came_after_it():
    users(10)
    run_projection("users_directory")
    snapshot = run("snapshot", projection="users_directory")
    assert snapshot.state == "succeeded", snapshot.error
    users(3, start=10)

    job = run("replay", projection="users_directory", snapshot=snapshot.result["snapshot"])
    assert job.state == "succeeded", job.error
    assert job.result["events_replayed"] == 3 and job.result["snapshot"] == snapshot.result["name"]
    assert projected_users() == fold_users()


def test_a_restore_takes_the_latest_snapshot_before_a_time():
    users(4)
    run_projection("users_directory")
    first = run("snapshot", projection="users_directory")
    users(2, start=4)
    run_projection("users_directory")
    second = run("snapshot", projection="users_directory")

    between = services.request_job(
        kind="restore",
        params={"projection": "users_directory", "before": second.finished_at.isoformat()},
        requested_by="o",
        reason="r",
    )
    assert between.params["snapshot"] == second.result["snapshot"]
    services.cancel_job(job_id=between.pk, actor="o")
    early = services.request_job(
        kind="restore",
        params={
            "projection": "users_directory",
            "before": (first.finished_at + dt.timedelta(microseconds=1)).isoformat(),
        },
        requested_by="o",
        reason="r",
    )
    assert early.params["snapshot"] == first.result["snapshot"]
    job = runner.run_inline(early.pk)
    assert job.state == "succeeded" and job.result["rpo_events"] == 0 and job.result["rto_seconds"] >= 0
    assert projected_users() == fold_users()


def test_a_single_stream_replay_repairs_one_entity_in_place():
    users(3)
    rename(1, "Right")
    run_projection("users_directory")
    sql("UPDATE proj_users_directory.users SET name = 'wrong', email = 'x' WHERE user_id IN ('1', '2')")

    job = run("replay", projection="users_directory", stream="user-1")
    assert job.state == "succeeded", job.error
    assert projected_users()["1"] == ("u1", "Right", "u1@example.com")
    assert projected_users()["2"][1] == "wrong"  # only the stream asked for
    assert job.result == {
        "stream": "user-1",
        "position": checkpoint("proj_users_directory"),
        "events_replayed": 2,
        "events_excluded": 0,
    }


def test_a_projection_without_a_forget_step_cannot_repair_one_stream():
    users(1)

    class NoForget(Projection, register=False):
        name = "test_no_forget"
        categories = ("user",)
        tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

        def apply(self, cursor, events):
            cursor.execute("INSERT INTO seen SELECT unnest(%s::bigint[])", [[e.position for e in events]])

    add(NoForget)
    try:
        with pytest.raises(JobParamsError) as refused:
            services.request_job(
                kind="replay",
                params={"projection": "test_no_forget", "stream": "user-0"},
                requested_by="o",
                reason="r",
            )
        assert "replay it whole" in refused.value.errors["stream"][0]
    finally:
        remove("test_no_forget")


# --- verify, rollback


def test_verify_finds_missing_extra_and_different_rows_with_samples():
    users(6)
    run_projection("users_directory")
    sql("DELETE FROM proj_users_directory.users WHERE user_id = '1'")
    sql("UPDATE proj_users_directory.users SET email = 'evil@example.com' WHERE user_id = '2'")
    sql("INSERT INTO proj_users_directory.users VALUES ('ghost', 'g', 'Ghost', 'g@example.com', now())")

    job = run("verify", projection="users_directory")
    table = job.result["tables"]["users"]
    assert (job.result["equal"], job.result["repaired"]) == (False, False)
    assert (table["missing"], table["extra"], table["different"]) == (1, 1, 1)
    assert table["samples"]["missing"][0]["user_id"] == "1"
    assert table["samples"]["extra"][0]["user_id"] == "ghost"
    assert table["samples"]["different"][0]["found"]["email"] == "evil@example.com"
    assert table["samples"]["different"][0]["expected"]["email"] == "u2@example.com"
    assert not schema_exists(f"proj_users_directory__rebuild_{job.pk}")  # the scratch schema is gone
    assert "ghost" in projected_users()  # and nothing was repaired


def test_verify_with_repair_swaps_in_the_rebuilt_schema():
    users(4)
    run_projection("users_directory")
    sql("DELETE FROM proj_users_directory.users")
    job = run("verify", projection="users_directory", repair=True)
    assert job.result["repaired"] and projected_users() == fold_users()
    assert run("verify", projection="users_directory").result["equal"]


def test_rollback_brings_back_the_schema_a_replay_replaced():
    users(3)
    run_projection("users_directory")
    sql("UPDATE proj_users_directory.users SET name = 'before the replay'")
    run("replay", projection="users_directory")
    assert projected_users() == fold_users()

    services.rollback_projection(projection="users_directory", actor="olivia")
    assert {row[1] for row in projected_users().values()} == {"before the replay"}
    services.rollback_projection(projection="users_directory", actor="olivia")  # and forward again
    assert projected_users() == fold_users()
    assert (
        Event.objects.filter(
            stream__name="console-consumer.users_directory", type="ProjectionRolledBack"
        ).count()
        == 2
    )


def test_rollback_without_a_previous_schema_says_so():
    users(1)
    run_projection("users_directory")
    with pytest.raises(services.JobError, match="no previous schema"):
        services.rollback_projection(projection="users_directory", actor="olivia")


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
