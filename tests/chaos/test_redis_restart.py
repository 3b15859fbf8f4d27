"""Redis restarts with nothing while jobs wait in it, and the reconciler brings them back.

Redis carries only nudges (docs/architecture.md, Job kinds): a private redis-server that keeps nothing
(`--save "" --appendonly no`) is the broker of a real worker, of real Celery beat and of this test;
jobs are queued, Redis is killed and started again empty, and beat's reconciler (every 10 s) must have
every job running again, and done, within 30 s of the restart.
"""

import time

import pytest
from django.utils import timezone

from recovery.models import Job
from recovery.runner import BROKER_MARK_KEY
from recovery.services import request_job
from recovery.tasks import reconcile as reconcile_task
from streams.consumers import run_projection
from streams.projections import add, remove
from tests.chaos.helpers import (
    CHAOS,
    ChaosWorkers,
    PrivateRedis,
    Slow,
    assert_live_equals_the_log_exactly_once,
    assert_no_job_left_running,
)
from tests.recovery.crash_helpers import History

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

RECOVERED_WITHIN_SECONDS = 30


def use_broker(settings, url: str) -> None:
    """Point this process's Redis client and Celery producer at `url`."""
    from console.celery import app
    from console.env import redis_url_for_celery
    from core import redis as console_redis

    settings.REDIS_URL = url
    console_redis.client.cache_clear()
    app.conf.broker_url = redis_url_for_celery(url)
    app._after_fork()  # forget the pooled connections to the old broker


@pytest.fixture
def private_redis(tmp_path, settings):
    server = PrivateRedis(tmp_path)
    server.start()
    previous = settings.REDIS_URL
    use_broker(settings, server.url)
    yield server
    use_broker(settings, previous)
    server.kill()


@pytest.fixture
def workers(tmp_path, settings, private_redis, fresh_projection_schemas):
    add(Slow)
    logs = tmp_path / "logs"
    logs.mkdir()
    running = ChaosWorkers(
        logs, snapshot_dir=tmp_path / "snapshots", apply_delay=0.02, redis_url=private_redis.url
    )
    yield running
    running.stop_all()
    remove(CHAOS)


def queue_lengths(redis) -> dict[str, int]:
    return {queue: redis.llen(queue) for queue in ("recovery", "default", "live")}


def test_jobs_queued_in_a_redis_that_restarts_empty_are_reconciled_and_finish(workers, private_redis):
    import redis

    History(seed=21).add(4_000)
    workers.worker(0, concurrency=1)
    workers.beat()
    reconcile_task()  # as beat did before: the reconciler's mark is in Redis

    def replay(name: str) -> Job:
        return request_job(
            kind="replay",
            params={"projection": name, "shards": 2},
            requested_by="olivia",
            reason="rebuild while Redis goes away",
        )

    jobs = [replay(CHAOS)]
    broker = redis.Redis.from_url(private_redis.url)
    deadline = time.monotonic() + 20
    while Job.objects.get(pk=jobs[0].pk).stage != "replaying":
        assert time.monotonic() < deadline, "the first job did not start"
        time.sleep(0.05)
    # The one pool process is in a slice of the slow replay: these two jobs' nudges wait in Redis.
    jobs += [replay("users_directory"), replay("access")]
    waiting = queue_lengths(broker)
    states = dict(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("pk", "state"))

    private_redis.kill()
    private_redis.start()
    restarted_at = timezone.now()
    assert not broker.exists(BROKER_MARK_KEY), "the restarted Redis has none of the old data"

    assert waiting["recovery"] > 0, f"nudges were waiting in Redis when it went: {waiting}"
    assert Job.State.QUEUED in states.values(), f"some jobs had not started when Redis went: {states}"
    deadline = time.monotonic() + RECOVERED_WITHIN_SECONDS + 15
    while Job.objects.filter(pk__in=[j.pk for j in jobs], state__in=Job.ACTIVE).exists():
        assert time.monotonic() < deadline, workers.tails()
        time.sleep(0.2)
    finished = list(Job.objects.filter(pk__in=[j.pk for j in jobs]).order_by("pk"))
    assert [job.state for job in finished] == [Job.State.SUCCEEDED] * 3, [j.error for j in finished]
    late = {
        job.pk: (job.finished_at - restarted_at).total_seconds()
        for job in finished
        if (job.finished_at - restarted_at).total_seconds() > RECOVERED_WITHIN_SECONDS
    }
    assert late == {}, f"jobs finished later than {RECOVERED_WITHIN_SECONDS} s after the restart"
    # The later jobs' own audit events came after the swap: the live runner passes over them.
    while not run_projection(CHAOS).caught_up:
        pass
    assert_live_equals_the_log_exactly_once()
    assert_no_job_left_running()
