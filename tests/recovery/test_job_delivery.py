"""Delivery of job work: a duplicated or stale Celery message does nothing twice, one job at a time per
projection, a lost message is re-sent by the reconciler, and a cancel stops a running replay at its next
batch. The slices are called directly here, as a worker would run them; the lost message runs on a real
worker.
"""

import json
import threading
import time

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction

from core.redis import client as redis_client
from recovery import services
from recovery.models import Job, JobLane, JobLogLine
from recovery.params import params_sha256
from recovery.runner import job_lock, reconcile, run_inline, run_lane, run_slice
from recovery.services import JobConflict, cancel_job, request_job
from streams.consumers import run_projection
from streams.models import Event
from streams.projections import add, remove
from tests.recovery.crash_helpers import (
    COUNTED,
    Counted,
    History,
    Workers,
    applied_counts,
    checkpoint_of,
    clear_queues,
    projected,
    schema_exists,
)
from tests.streams.projection_helpers import fold_users, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

LIVE = f"proj_{COUNTED}"


@pytest.fixture(autouse=True)
def counted(fresh_projection_schemas, settings):
    clear_queues()
    settings.REPLAYDESK_JOB_SLICE_SECONDS = 0.2
    Counted.delay = 0.0
    add(Counted)
    yield
    Counted.delay = 0.0
    remove(COUNTED)
    clear_queues()


def replay(projection: str = COUNTED, shards: int = 2) -> Job:
    return request_job(
        kind="replay",
        params={"projection": projection, "shards": shards},
        requested_by="olivia",
        reason="the projection is wrong",
    )


def audited(job: Job, event_type: str) -> int:
    return Event.objects.filter(type=event_type, data__job=job.pk).count()


def lanes(job: Job) -> list[tuple]:
    return list(
        JobLane.objects.filter(job=job)
        .order_by("lane")
        .values_list("pk", "lane", "position", "done", "slice")
    )


def job_row(job: Job) -> tuple:
    return Job.objects.filter(pk=job.pk).values_list("state", "stage", "slice", "work", "total").get()


def in_thread(target, *args):
    """Run `target` in a thread with its own database connection; (thread, its result dict)."""
    result: dict = {}

    def run():
        started = time.monotonic()
        try:
            target(*args)
        finally:
            result["seconds"] = time.monotonic() - started
            result["ended"] = time.monotonic()
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_slice_delivered_twice_does_its_work_once():
    History(seed=1).add(3000)
    job = replay()

    run_slice(job.pk, 0)
    prepared, prepared_lanes = job_row(job), lanes(job)
    run_slice(job.pk, 0)  # the same message again

    assert prepared[:3] == ("running", "replaying", 1)
    assert job_row(job) == prepared
    assert lanes(job) == prepared_lanes, "the lanes were not prepared again"
    assert audited(job, "JobStarted") == 1
    assert JobLogLine.objects.filter(job=job, message="started").count() == 1

    run_lane(job.pk, 0, 0)
    after_once, counts = lanes(job), applied_counts(prepared[3]["schema"])
    run_lane(job.pk, 0, 0)

    assert after_once[0][3] > 0 and after_once[0][4] == 1, "the first delivery applied events, one slice"
    assert lanes(job) == after_once, "the second delivery moved nothing"
    assert applied_counts(prepared[3]["schema"]) == counts
    assert set(counts.values()) == {1} and len(counts) == after_once[0][3]


def test_the_same_slice_delivered_concurrently_runs_once(settings):
    History(seed=2).add(6000)
    job = replay()
    main = [in_thread(run_slice, job.pk, 0) for _ in range(2)]
    for thread, _ in main:
        thread.join(10)

    assert job_row(job)[:3] == ("running", "replaying", 1)
    assert audited(job, "JobStarted") == 1
    assert JobLane.objects.filter(job=job).count() == 2

    # A lane slice that lasts a second, and its duplicate delivered while it works.
    settings.REPLAYDESK_JOB_SLICE_SECONDS = 1.0
    Counted.delay = 0.2
    first, first_result = in_thread(run_lane, job.pk, 0, 0)
    time.sleep(0.1)
    second, second_result = in_thread(run_lane, job.pk, 0, 0)
    second.join(10)
    first.join(10)

    assert second_result["ended"] < first_result["ended"], "the duplicate gave up while the first worked"
    assert second_result["seconds"] < 0.5 < first_result["seconds"], "it found the lane's lock taken"
    (lane,) = JobLane.objects.filter(job=job, lane=0)
    assert lane.slice == 1, "the lane's slice counter moved once"
    counts = applied_counts(job_row(job)[3]["schema"])
    assert set(counts.values()) == {1} and len(counts) == lane.done > 0


def test_a_stale_or_future_slice_number_does_nothing():
    History(seed=3).add(2000)
    job = replay()
    run_slice(job.pk, 0)
    run_lane(job.pk, 0, 0)
    schema = job_row(job)[3]["schema"]
    before = (job_row(job), lanes(job), applied_counts(schema), JobLogLine.objects.filter(job=job).count())

    run_slice(job.pk, 0)  # done already
    run_slice(job.pk, 5)  # not yet
    run_lane(job.pk, 0, 0)
    run_lane(job.pk, 0, 3)
    run_lane(job.pk, 1, 1)

    after = (job_row(job), lanes(job), applied_counts(schema), JobLogLine.objects.filter(job=job).count())
    assert after == before


def test_two_replays_of_one_projection_cannot_run_at_once():
    History(seed=4).add(500)
    first = replay()
    run_slice(first.pk, 0)

    with pytest.raises(
        JobConflict, match=f"job {first.pk} \\(replay, running\\) is working on {COUNTED}"
    ) as e:
        replay()
    assert e.value.job.pk == first.pk
    with pytest.raises(JobConflict):
        request_job(kind="verify", params={"projection": COUNTED}, requested_by="bob", reason="check it")

    # Past the service, straight into the table: the database refuses a second active job.
    params = {"projection": COUNTED, "shards": 1}
    with pytest.raises(IntegrityError, match="recovery_job_one_active_per_target"), transaction.atomic():
        Job.objects.create(
            kind="replay",
            target=COUNTED,
            params=params,
            params_sha256=params_sha256(params),
            state=Job.State.RUNNING,
            reason="forged",
            requested_by="mallory",
        )
    assert list(Job.objects.filter(target=COUNTED).values_list("pk", flat=True)) == [first.pk]

    assert replay("users_directory").state == Job.State.QUEUED, "another projection is not held"
    assert run_inline(first.pk).state == Job.State.SUCCEEDED
    assert replay().state == Job.State.QUEUED, "once the first has finished, the next may run"


def test_a_lost_message_is_recovered_by_the_reconciler(monkeypatch, tmp_path):
    History(seed=5).add(1000)
    monkeypatch.setattr(services, "nudge", lambda job: None)  # Redis lost the message
    job = replay("users_directory")
    assert redis_client().llen("recovery") == 0
    workers = Workers(tmp_path, slice_seconds=0.5, snapshot_dir=tmp_path / "snapshots")
    try:
        workers.worker(0)
        time.sleep(1.5)
        assert Job.objects.get(pk=job.pk).state == Job.State.QUEUED, "nothing runs a job without a message"
        assert reconcile(stale_seconds=30) == [], "queued a moment ago: not stale yet"

        assert reconcile(stale_seconds=1) == [job.pk]
        deadline = time.monotonic() + 60
        while not Job.objects.get(pk=job.pk).finished and time.monotonic() < deadline:
            time.sleep(0.2)
        job.refresh_from_db()
        assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{workers.tails()}"
        assert projected_users() == fold_users()
    finally:
        workers.stop_all()


def test_a_cancelled_replay_stops_within_its_slice_and_leaves_the_live_projection_alone(settings):
    History(seed=6).add(3000)
    while not run_projection(COUNTED).caught_up:
        pass
    live = (projected(LIVE), applied_counts(LIVE), checkpoint_of(LIVE))
    job = replay(shards=1)
    run_slice(job.pk, 0)
    schema = job_row(job)[3]["schema"]
    assert schema_exists(schema)

    settings.REPLAYDESK_JOB_SLICE_SECONDS = 60.0  # the lane would work for a minute
    Counted.delay = 0.05
    lane, lane_result = in_thread(run_lane, job.pk, 0, 0)
    deadline = time.monotonic() + 10
    while not JobLane.objects.filter(job=job, lane=0, done__gt=0).exists():
        assert time.monotonic() < deadline, "the lane applied nothing"
        time.sleep(0.02)
    asked = time.monotonic()
    assert cancel_job(job_id=job.pk, actor="olivia").state == Job.State.RUNNING  # it stops at a batch
    lane.join(10)

    assert lane_result["ended"] - asked < 2.0, "the lane stopped at its next batch, not at the slice's end"
    assert not JobLane.objects.get(job=job, lane=0).finished
    run_lane(job.pk, 0, 1)  # the lane's next delivery hands over to the main line
    run_slice(job.pk, job_row(job)[2])

    job.refresh_from_db()
    assert (job.state, job.stage, job.cancel_requested_by) == ("cancelled", "cancelled", "olivia")
    assert not schema_exists(schema), "the rebuild schema was dropped"
    assert (projected(LIVE), applied_counts(LIVE), checkpoint_of(LIVE)) == live
    assert audited(job, "JobCancelled") == 1


def test_a_message_that_finds_its_job_held_by_another_delivery_comes_back_a_moment_later():
    History(seed=4).add(500)
    job = replay()
    run_slice(job.pk, 0)  # prepared: the main line is at slice 1, the lanes at 0
    clear_queues()
    params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}

    with psycopg.connect(**params, autocommit=True) as stale:
        # A stale duplicate holds the job and its lane 0 (it will find its slice gone and stop).
        stale.execute(
            "SELECT pg_advisory_lock(%s), pg_advisory_lock(%s)", [job_lock(job.pk), job_lock(job.pk, 0)]
        )
        run_slice(job.pk, 1)  # the current slice: must not be lost
        run_lane(job.pk, 0, 0)  # the current lane slice: must not be lost
        run_slice(job.pk, 0)  # a stale message itself: dropped
        run_lane(job.pk, 0, 5)

    queued = [json.loads(raw) for raw in redis_client().lrange("recovery", 0, -1)]
    sent = sorted((m["headers"]["task"], m["headers"]["argsrepr"]) for m in queued)
    assert sent == [
        ("recovery.tasks.run_job_lane", f"({job.pk}, 0, 0)"),
        ("recovery.tasks.run_job_slice", f"({job.pk}, 1)"),
    ]
    assert all(m["headers"]["eta"] for m in queued), "after a moment, not at once"
    assert job_row(job)[2] == 1 and lanes(job)[0][4] == 0, "and nothing ran meanwhile"
