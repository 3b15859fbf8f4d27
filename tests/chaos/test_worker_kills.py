"""kill -9 during replays, restores and resyncs, on real Celery workers.

tests/recovery/test_job_crashes.py kills whole workers during replays and restores; here one pool
process is killed (the one whose database session holds the job's lock: mid-slice by construction)
while the worker's main process lives on and Celery re-queues the task it lost, and a resync is killed
both ways while it delivers to a receiver that takes each event id once. In every case the job ends
succeeded, nothing is applied twice or lost, and no job is left running.
"""

import random
import time

import pytest
from django.db import connection

from recovery.models import Job
from recovery.runner import run_inline
from recovery.services import request_job
from streams.consumers import run_projection
from streams.models import Event
from streams.sink_config import create_sink
from tests.chaos.helpers import (
    CHAOS,
    LIVE,
    SECRET,
    assert_live_equals_the_log_exactly_once,
    assert_no_job_left_running,
    kill_busy_process,
    lane_progress,
    lost_pool_processes,
    wait_for_lane_progress,
    wait_until_finished,
)
from tests.recovery.crash_helpers import History, counted_event_ids

KILLS = 4
SHARDS = 4

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def kill_pool_processes(job_id: int, rng: random.Random, *, after_each=None) -> list[dict]:
    """KILLS times: wait for the job's lanes to move on, then SIGKILL the pool process of worker 0 that
    is working on it. What the job looked like at each kill."""
    kills, seen = [], lane_progress(job_id)[1]
    for _ in range(KILLS):
        wait_for_lane_progress(job_id, beyond=seen)
        time.sleep(rng.uniform(0.0, 0.2))
        pid = kill_busy_process(job_id, worker=0)
        job = Job.objects.get(pk=job_id)
        kills.append({"pid": pid, "state": job.state, "total": job.total, "progress": lane_progress(job_id)})
        seen = kills[-1]["progress"][1]
        if after_each is not None:
            after_each()
    return kills


def assert_each_kill_hit_work_in_progress(kills: list[dict]) -> None:
    assert all(kill["state"] == Job.State.RUNNING for kill in kills), kills
    done = [kill["progress"][1] for kill in kills]
    assert done == sorted(set(done)), f"the job moved on between every two kills: {kills}"
    assert all(kill["progress"][2] > 0 for kill in kills), f"every kill landed while lanes were open: {kills}"


def assert_no_rebuild_schema_left() -> None:
    with connection.cursor() as cursor:
        rebuilds = f"{LIVE}\\_\\_rebuild\\_%"
        cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", [rebuilds])
        assert cursor.fetchone()[0] == 0


def test_a_replay_whose_pool_processes_are_killed_mid_lane_applies_every_event_once(chaos_workers):
    rng = random.Random(11)
    history = History(seed=11)
    history.add(10_000)
    worker = chaos_workers.worker(0)
    job = request_job(
        kind="replay",
        params={"projection": CHAOS, "shards": SHARDS},
        requested_by="olivia",
        reason="pool processes die under a replay",
    )

    kills = kill_pool_processes(job.pk, rng, after_each=lambda: history.add(rng.randint(50, 200)))
    job = wait_until_finished(job.pk, timeout=60)

    assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{chaos_workers.tails()}"
    assert_each_kill_hit_work_in_progress(kills)
    assert worker.poll() is None, "the worker itself lived on"
    assert lost_pool_processes(chaos_workers.logs / "worker-0.log", expected=KILLS) == KILLS
    assert_live_equals_the_log_exactly_once()
    assert job.result["events_replayed"] == len(counted_event_ids())
    assert_no_rebuild_schema_left()
    assert_no_job_left_running()


def test_a_restore_whose_pool_processes_are_killed_mid_lane_applies_every_event_once(chaos_workers):
    rng = random.Random(12)
    history = History(seed=12)
    history.add(3_000)
    while not run_projection(CHAOS).caught_up:
        pass
    snapshot = run_inline(
        request_job(kind="snapshot", params={"projection": CHAOS}, requested_by="olivia", reason="base").pk
    )
    assert snapshot.state == Job.State.SUCCEEDED, snapshot.error
    history.add(10_000)  # the live projection stays at the snapshot; the restore replays the rest
    worker = chaos_workers.worker(0)
    job = request_job(
        kind="restore",
        params={"projection": CHAOS, "snapshot": snapshot.result["snapshot"], "shards": SHARDS},
        requested_by="olivia",
        reason="pool processes die under a restore",
    )

    kills = kill_pool_processes(job.pk, rng, after_each=lambda: history.add(rng.randint(50, 200)))
    job = wait_until_finished(job.pk, timeout=60)

    assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{chaos_workers.tails()}"
    assert_each_kill_hit_work_in_progress(kills)
    assert worker.poll() is None
    assert lost_pool_processes(chaos_workers.logs / "worker-0.log", expected=KILLS) == KILLS
    assert_live_equals_the_log_exactly_once()
    replayed = Event.objects.filter(
        position__gt=snapshot.result["position"], stream__category__in=("user", "group")
    ).count()
    assert job.result["events_replayed"] == replayed
    assert job.result["rpo_events"] == 0
    assert_no_rebuild_schema_left()
    assert_no_job_left_running()


def resync_everything(receiver) -> Job:
    """A sink that starts at the head (so only the resync sends anything) and a resync of the whole log."""
    create_sink(
        name="chaos_hook",
        url=receiver.url,
        secret=SECRET,
        rate_per_second=5000,
        batch_size=50,
        categories=["user", "group"],
        actor="olivia",
        from_head=True,
    )
    return request_job(
        kind="resync",
        params={"sink": "chaos_hook", "from_position": 0},
        requested_by="olivia",
        reason="the receiver lost everything",
    )


def assert_each_event_took_effect_once_after_redeliveries(receiver, job: Job) -> None:
    sent = {
        str(i)
        for i in Event.objects.filter(
            stream__category__in=("user", "group"), position__lte=job.result["up_to_position"]
        ).values_list("event_id", flat=True)
    }
    assert set(receiver.effects) == sent, "every event reached the receiver"
    assert set(receiver.effects.values()) == {1}, "and took effect there once"
    redelivered = {event_id: times for event_id, times in receiver.received.items() if times > 1}
    assert redelivered, "a killed sender's batch came again over the wire"
    assert job.result["events_resent"] == len(sent)


def test_a_resync_whose_pool_processes_are_killed_mid_delivery_has_each_effect_once(chaos_workers, receiver):
    History(seed=13).add(2_500)
    worker = chaos_workers.worker(0)
    job = resync_everything(receiver)

    kills = kill_pool_processes(job.pk, random.Random(13))
    job = wait_until_finished(job.pk, timeout=60)

    assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{chaos_workers.tails()}"
    assert_each_kill_hit_work_in_progress(kills)
    assert worker.poll() is None
    assert lost_pool_processes(chaos_workers.logs / "worker-0.log", expected=KILLS) == KILLS
    assert_each_event_took_effect_once_after_redeliveries(receiver, job)
    assert_no_job_left_running()


def test_a_resync_whose_whole_worker_is_killed_again_and_again_has_each_effect_once(chaos_workers, receiver):
    rng = random.Random(14)
    History(seed=14).add(2_500)
    job = resync_everything(receiver)

    kills, seen = [], 0
    for n in range(KILLS):
        worker = chaos_workers.worker(n)
        wait_for_lane_progress(job.pk, beyond=seen)
        time.sleep(rng.uniform(0.0, 0.3))
        chaos_workers.kill(worker)
        state = Job.objects.get(pk=job.pk).state
        kills.append({"state": state, "progress": lane_progress(job.pk)})
        seen = kills[-1]["progress"][1]
    chaos_workers.worker(KILLS)
    job = wait_until_finished(job.pk, timeout=60)

    assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{chaos_workers.tails()}"
    assert_each_kill_hit_work_in_progress(kills)
    assert_each_event_took_effect_once_after_redeliveries(receiver, job)
    assert_no_job_left_running()
