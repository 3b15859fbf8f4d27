"""What the chaos tests share: a slow counting projection, real workers whose every process names its
database sessions, a way to find the pool process that is in the middle of a job, a deduplicating
webhook receiver, a private Redis that can be restarted empty, and the end-state checks.

Each worker process's sessions are named `<PGAPPNAME>:<os pid>` (see `serve`), so a test can kill the one
pool process whose session holds a job's advisory lock (it is mid-slice by construction), or terminate
every session of one worker with pg_terminate_backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

from recovery.models import Job, JobLane
from recovery.runner import job_lock, reconcile
from tests.ports import free_port
from tests.receivers import Receiver
from tests.recovery.crash_helpers import (
    Counted,
    Workers,
    assert_equal_to_the_log_exactly_once,
)

CHAOS = "test_chaos"
LIVE = f"proj_{CHAOS}"
SECRET = "chaos-receiver-secret"


class Slow(Counted, register=False):
    """Counted with small batches (more commits, so more moments to be killed between); each batch
    sleeps CHAOS_APPLY_DELAY seconds in the workers, so that a few thousand events take seconds."""

    name = CHAOS
    batch_size = 100


# --- workers

BOOT = (
    "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'console.settings'); "
    "import django; django.setup(); from tests.chaos.helpers import serve; serve()"
)


def serve() -> None:
    """A worker's main: Slow is known and slow, each pool process names its own sessions."""
    from celery.signals import worker_process_init

    from console.celery import app
    from streams.projections import add

    add(Slow)
    Counted.delay = float(os.environ.get("CHAOS_APPLY_DELAY") or 0)
    worker_process_init.connect(_name_sessions, weak=False)
    app.worker_main(sys.argv[1:])


def _name_sessions(**_) -> None:
    from django.db import connections

    for conn in connections.all():
        conn.close()
        conn.settings_dict["OPTIONS"]["application_name"] = f"{os.environ['PGAPPNAME']}:{os.getpid()}"


class ChaosWorkers(Workers):
    """Real workers on the live, recovery and default queues; worker n's sessions are `chaos-w<n>:<pid>`."""

    def __init__(self, logs: Path, *, snapshot_dir: Path, apply_delay: float = 0.0, redis_url: str = ""):
        super().__init__(logs, slice_seconds=0.5, snapshot_dir=snapshot_dir)
        self.env["CHAOS_APPLY_DELAY"] = str(apply_delay)
        if redis_url:
            self.env["REDIS_URL"] = redis_url

    def worker(self, n: int, *, concurrency: int = 2) -> subprocess.Popen:
        self.env["PGAPPNAME"] = f"chaos-w{n}"
        argv = [sys.executable, "-c", BOOT, "worker", "--queues", "live,recovery,default"]
        argv += ["--concurrency", str(concurrency), "--without-mingle", "--without-gossip"]
        argv += ["--loglevel", "INFO", "--hostname", f"chaos{n}@%h"]
        process = self.start(f"worker-{n}", argv)
        wait_for_log(self.logs / f"worker-{n}.log", " ready.", process)
        return process

    def beat(self) -> subprocess.Popen:
        """Celery beat with the project's schedule (the reconciler every 10 s), its state file private."""
        argv = [sys.executable, "-m", "celery", "-A", "console", "beat", "--loglevel", "INFO"]
        argv += ["--schedule", str(self.logs / "beat-schedule")]
        process = self.start("beat", argv)
        wait_for_log(self.logs / "beat.log", "beat: Starting", process)
        return process


def wait_for_log(log: Path, text: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline and process.poll() is None, log.read_text(errors="replace")
        time.sleep(0.05)


def _lock_ids(key: int) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows a bigint advisory lock."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def busy_processes(job_id: int, *, worker: int) -> list[int]:
    """OS pids of worker `worker`'s processes whose session holds one of the job's locks: each is in
    the middle of one of the job's slices or lanes right now."""
    keys = {_lock_ids(job_lock(job_id))} | {_lock_ids(job_lock(job_id, lane)) for lane in range(16)}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.application_name, l.classid::bigint, l.objid::bigint
              FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s
               AND a.datname = current_database()
            """,
            [f"chaos-w{worker}:%"],
        )
        rows = cursor.fetchall()
    return sorted({int(name.rsplit(":", 1)[1]) for name, classid, objid in rows if (classid, objid) in keys})


def kill_busy_process(job_id: int, *, worker: int, timeout: float = 20) -> int:
    """SIGKILL one pool process of `worker` that is working on the job (not the worker's main process);
    its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = busy_processes(job_id, worker=worker)
        if busy:
            try:
                os.kill(busy[0], signal.SIGKILL)
            except ProcessLookupError:
                continue
            return busy[0]
        time.sleep(0.02)
    raise AssertionError(f"no process of worker {worker} worked on job {job_id} for {timeout} s")


def terminate_sessions(pattern: str) -> int:
    """pg_terminate_backend every session of this database whose application_name is LIKE `pattern`
    (another test database on the server is another test's); how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND datname = current_database() AND pid <> pg_backend_pid()",
            [pattern],
        )
        return cursor.fetchone()[0]


def lost_pool_processes(log: Path, *, expected: int, timeout: float = 15.0) -> int:
    """Pool processes the worker saw die by SIGKILL (each one had a task that Celery then re-queued),
    once it has logged `expected` of them or the timeout is up: the worker notices a dead child (and
    writes its log line) a moment after the kill."""
    deadline = time.monotonic() + timeout
    while True:
        seen = log.read_text(errors="replace").count("exited with 'signal 9 (SIGKILL)'")
        if seen >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


# --- jobs


def lane_progress(job_id: int) -> tuple[int, int, int]:
    """(slices done by the main line and the lanes, events the lanes applied, lanes still open)."""
    lanes = list(JobLane.objects.filter(job_id=job_id).values_list("slice", "done", "finished"))
    job_slice = Job.objects.values_list("slice", flat=True).get(pk=job_id)
    return (
        job_slice + sum(s for s, _, _ in lanes),
        sum(d for _, d, _ in lanes),
        sum(not f for _, _, f in lanes),
    )


def wait_for_lane_progress(job_id: int, *, beyond: int, timeout: float = 30) -> None:
    """Until the job's lanes have applied more than `beyond` events, reconciling as beat does."""
    deadline = time.monotonic() + timeout
    while lane_progress(job_id)[1] <= beyond:
        assert time.monotonic() < deadline, f"job {job_id} did not move past {beyond} in {timeout} s"
        reconcile(stale_seconds=1.0)
        time.sleep(0.05)


def wait_until_finished(job_id: int, *, timeout: float, stale_seconds: float = 1.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.finished:
            return job
        reconcile(stale_seconds=stale_seconds)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {Job.objects.get(pk=job_id).__dict__}")


def assert_no_job_left_running() -> None:
    """No job is queued or running with nobody working on it: every one has ended."""
    active = list(Job.objects.filter(state__in=Job.ACTIVE).values_list("pk", "kind", "state"))
    assert active == [], f"jobs left active: {active}"


def assert_live_equals_the_log_exactly_once() -> None:
    assert_equal_to_the_log_exactly_once(LIVE)


# --- a downstream system


def chaos_receiver(*, answer_after: float = 0.0) -> Receiver:
    """The downstream the chaos sinks deliver to, signed with SECRET."""
    return Receiver(SECRET, answer_after=answer_after)


# --- a Redis of one's own


def redis_server_binary() -> str:
    from console.embedded import _redis_server_binary

    return shutil.which("redis-server") or _redis_server_binary()


class PrivateRedis:
    """A redis-server on a free loopback port that keeps nothing: a restart starts with no keys."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except (redis.RedisError, OSError):
                pass
            assert time.monotonic() < deadline and self.process.poll() is None, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def keys(self) -> int:
        import redis

        return redis.Redis.from_url(self.url).dbsize()
