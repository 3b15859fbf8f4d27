"""Exactly-once rebuilds while real Celery workers are killed with SIGKILL in the middle of a job.

A replay (and a restore from a snapshot) of a projection runs on a real worker with half-second slices
and four lanes; the test kills the worker's whole process group at random moments, starts another, and
calls the reconciler as beat would. When the job has succeeded, the projection must equal a fold of the
log with its checkpoint at the head, and the projection's own count of applications says that every
event it follows was applied exactly once: nothing lost, nothing applied twice.
"""

import random
import re
import time

import pytest
from django.db import connection

from recovery.models import Job, JobLane
from recovery.runner import reconcile, run_inline
from recovery.services import request_job
from streams.consumers import run_projection
from streams.models import Event
from streams.projections import add, remove
from tests.recovery.crash_helpers import (
    COUNTED,
    Counted,
    History,
    Workers,
    assert_equal_to_the_log_exactly_once,
    clear_queues,
    counted_event_ids,
    progress,
)

KILLS = 5
SHARDS = 4
LIVE = f"proj_{COUNTED}"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]


@pytest.fixture
def workers(tmp_path, settings, fresh_projection_schemas):
    clear_queues()
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"
    add(Counted)
    logs = tmp_path / "logs"
    logs.mkdir()
    running = Workers(logs, slice_seconds=0.5, snapshot_dir=settings.REPLAYDESK_SNAPSHOT_DIR)
    # Replays are fast: a tenth of a second a batch keeps the job going through every kill.
    running.env["COUNTED_APPLY_DELAY"] = "0.1"
    yield running
    running.stop_all()
    remove(COUNTED)
    clear_queues()


def interrupted_tasks(log) -> int:
    """Job tasks a worker had started and never finished: it was killed in the middle of them."""
    text = log.read_text(errors="replace")
    started = set(re.findall(r"run_job_(?:slice|lane)\[([0-9a-f-]+)\] received", text))
    ended = set(re.findall(r"run_job_(?:slice|lane)\[([0-9a-f-]+)\] (?:succeeded|raised|retry)", text))
    return len(started - ended)


def wait_for_progress(job_id: int, since: tuple[int, int], timeout: float) -> tuple[int, int]:
    """Reconcile (as beat does) until the job's lanes have applied more events than at `since`: a new
    worker has picked the job up and committed at least a batch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = progress(job_id)
        if now[1] > since[1]:
            return now
        reconcile(stale_seconds=1.0)
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} made no progress from {since} in {timeout} s")


def wait_until_finished(job_id: int, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.finished:
            return job
        reconcile(stale_seconds=1.0)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def kill_repeatedly(workers: Workers, job_id: int, history: History, rng: random.Random) -> list[dict]:
    """Start a worker, let the job move, kill the worker at a random moment; KILLS times. Between kills
    a few more events are appended, for the job's tail to follow. What the job looked like at each kill."""
    kills, seen = [], progress(job_id)
    for n in range(KILLS):
        # Two processes, not four, and kills soon after the first batch: a job that finished before the
        # last kill would prove nothing about that kill.
        worker = workers.worker(n, concurrency=2)
        seen = wait_for_progress(job_id, seen, timeout=30)
        time.sleep(rng.uniform(0.0, 0.3))
        workers.kill(worker)
        job = Job.objects.get(pk=job_id)
        lanes = JobLane.objects.filter(job_id=job_id)
        kills.append(
            {
                "state": job.state,
                "stage": job.stage,
                "progress": progress(job_id),
                "lanes_open": lanes.filter(finished=False).count(),
                "interrupted": interrupted_tasks(workers.logs / f"worker-{n}.log"),
            }
        )
        seen = kills[-1]["progress"]
        history.add(rng.randint(100, 400))
    return kills


def last_counted_position() -> int:
    events = Event.objects.filter(stream__category__in=Counted.categories, type__in=Counted.types)
    return events.order_by("-position").values_list("position", flat=True).first()


def assert_interrupted_every_time(kills: list[dict]) -> None:
    assert all(kill["state"] == Job.State.RUNNING for kill in kills), kills
    assert [kill["progress"] for kill in kills] == sorted({kill["progress"] for kill in kills}), (
        "the job moved on between every two kills"
    )
    assert sum(kill["lanes_open"] > 0 for kill in kills) >= 3, f"most kills land mid-lane: {kills}"
    assert sum(kill["interrupted"] for kill in kills) >= KILLS, f"every kill stops tasks midway: {kills}"


def assert_exactly_once_and_equal_to_the_log() -> None:
    assert_equal_to_the_log_exactly_once(LIVE)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", [f"{LIVE}\\_\\_rebuild\\_%"]
        )
        assert cursor.fetchone()[0] == 0, "no rebuild schema is left behind"


def test_a_replay_killed_again_and_again_applies_every_event_exactly_once(workers):
    rng = random.Random(4)
    history = History(seed=4)
    history.add(40_000)
    job = request_job(
        kind="replay",
        params={"projection": COUNTED, "shards": SHARDS},
        requested_by="olivia",
        reason="prove a replay survives killed workers",
    )

    kills = kill_repeatedly(workers, job.pk, history, rng)
    workers.worker(KILLS)
    job = wait_until_finished(job.pk, timeout=90)

    assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{workers.tails()}"
    assert_interrupted_every_time(kills)
    assert_exactly_once_and_equal_to_the_log()
    # The lanes' counts move with their effects, so a killed batch is not counted either.
    assert job.result["events_replayed"] == len(counted_event_ids())
    assert job.result["position"] >= last_counted_position()


def test_a_restore_killed_again_and_again_applies_every_event_after_the_snapshot_exactly_once(workers):
    rng = random.Random(5)
    history = History(seed=5)
    history.add(10_000)
    while not run_projection(COUNTED).caught_up:
        pass
    snapshot_job = request_job(
        kind="snapshot", params={"projection": COUNTED}, requested_by="olivia", reason="before the restore"
    )
    snapshot_job = run_inline(snapshot_job.pk)
    assert snapshot_job.state == Job.State.SUCCEEDED, snapshot_job.error
    snapshot_position = snapshot_job.result["position"]
    history.add(40_000)  # the live projection stays behind at the snapshot; the restore catches up
    job = request_job(
        kind="restore",
        params={"projection": COUNTED, "snapshot": snapshot_job.result["snapshot"], "shards": SHARDS},
        requested_by="olivia",
        reason="prove a restore survives killed workers",
    )

    kills = kill_repeatedly(workers, job.pk, history, rng)
    workers.worker(KILLS)
    job = wait_until_finished(job.pk, timeout=90)

    assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{workers.tails()}"
    assert_interrupted_every_time(kills)
    assert_exactly_once_and_equal_to_the_log()
    applied_since = Event.objects.filter(
        position__gt=snapshot_position, stream__category__in=Counted.categories, type__in=Counted.types
    ).count()
    assert job.result["events_replayed"] == applied_since
    assert (job.result["snapshot_position"], job.result["rpo_events"]) == (snapshot_position, 0)
