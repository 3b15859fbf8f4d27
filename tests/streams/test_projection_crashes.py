"""Exactly-once projection effects while real Celery workers are killed with SIGKILL mid-stream.

A real worker and the real dispatcher run as processes against the test database; the test appends
events the whole time and kills the worker (its whole process group, pool included) at random moments,
then starts another. In the end each projection must equal a fold of the log, with its checkpoint at
the head: nothing lost, nothing applied twice (the users table's primary key would refuse a second
UserCreated and stop the projection).
"""

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from core.redis import client as redis_client
from streams.models import Consumer
from streams.selectors import head
from streams.services import append_events
from tests.streams.projection_helpers import (
    checkpoint,
    create_user,
    fold_access,
    fold_users,
    projected_access,
    projected_users,
)

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def this_database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    host = quote(db["HOST"] or "localhost", safe="")
    return f"postgresql://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


class Processes:
    def __init__(self, logs: Path):
        self.logs = logs
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
            "DATABASE_URL": this_database_url(),
            "REDIS_URL": settings.REDIS_URL,
        }
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(process)
        return process

    def worker(self, n: int, queues: str = "live") -> subprocess.Popen:
        """A worker, once it is ready to take tasks."""
        argv = [sys.executable, "-m", "celery", "-A", "console", "worker", "--queues", queues]
        argv += ["--concurrency", "2", "--without-mingle", "--without-gossip", "--loglevel", "INFO"]
        process = self.start(f"worker-{n}", [*argv, "--hostname", f"crash{n}@%h"])
        log = self.logs / f"worker-{n}.log"
        deadline = time.monotonic() + 30
        while " ready." not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline and process.poll() is None, log.read_text(errors="replace")
            time.sleep(0.05)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                self.kill(process)


@pytest.fixture
def processes(tmp_path, fresh_projection_schemas):
    redis_client().delete("live")  # runs queued by earlier tests are not this test's
    for key in redis_client().scan_iter("replaydesk:consumer-queued:*"):
        redis_client().delete(key)
    running = Processes(tmp_path)
    yield running
    running.stop_all()


class Writer:
    """Appends demo-shaped events: new users, renames, grants and revokes, memberships."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.users = 0

    def burst(self, size: int) -> None:
        for _ in range(size):
            if self.users < 5 or self.rng.random() < 0.2:
                self.users += 1
                uid = str(self.users)
                create_user(uid)
                continue
            uid = str(self.rng.randint(1, self.users))
            kind = self.rng.choice(["name", "grant", "revoke", "join", "leave"])
            if kind == "name":
                event = {
                    "type": "UserNameSet",
                    "data": {"user_id": uid, "name": f"Name {self.rng.random():.6f}"},
                }
                append_events(stream=f"user-{uid}", events=[event])
            elif kind in ("grant", "revoke"):
                data = {
                    "user_id": uid,
                    "resource": self.rng.choice(["issueABC", "repo-web"]),
                    "permission": self.rng.choice(["read", "write"]),
                }
                event_type = "PermissionGranted" if kind == "grant" else "PermissionRevoked"
                append_events(stream=f"user-{uid}", events=[{"type": event_type, "data": data}] * 2)
            else:
                group = self.rng.choice(["ops", "dev"])
                event_type = "MemberAdded" if kind == "join" else "MemberRemoved"
                append_events(
                    stream=f"group-{group}",
                    events=[{"type": event_type, "data": {"group_id": group, "user_id": uid}}],
                )


def wait_until_caught_up(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = set(Consumer.objects.values_list("name", flat=True))
        if {"users_directory", "access"} <= names:
            target = head()
            if checkpoint("proj_users_directory") == target and checkpoint("proj_access") == target:
                return True
        time.sleep(0.2)
    return False


def interrupted_runs(log: Path) -> int:
    """Runs a worker had started and never finished: it was killed in the middle of them."""
    text = log.read_text(errors="replace")
    started = set(re.findall(r"run_consumer\[([0-9a-f-]+)\] received", text))
    finished = set(re.findall(r"run_consumer\[([0-9a-f-]+)\] (?:succeeded|raised|retry)", text))
    return len(started - finished)


def test_killed_workers_lose_nothing_and_apply_nothing_twice(processes, tmp_path):
    rng = random.Random(7)
    writer = Writer(seed=11)
    processes.start("dispatch", [sys.executable, "-m", "console.cli", "dispatch"])
    interrupted = 0
    for n in range(KILLS):
        worker = processes.worker(n)
        # Kill it at a random moment while events stream in and it applies them.
        killer = threading.Timer(rng.uniform(0.2, 1.2), processes.kill, [worker])
        killer.start()
        writer.burst(rng.randint(200, 500))
        while killer.is_alive():  # events stream in until the kill, however fast appends are
            writer.burst(20)
        killer.join()
        interrupted += interrupted_runs(tmp_path / f"worker-{n}.log")
    writer.burst(50)  # and some more while no worker runs
    processes.worker(KILLS)

    caught_up = wait_until_caught_up(60)
    logs = "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(tmp_path.glob("*.log")))
    assert caught_up, f"projections did not reach the head\n{logs}"
    for consumer in Consumer.objects.all():
        assert (consumer.state, consumer.attempts, consumer.last_error) == ("running", 0, ""), (
            consumer.last_error
        )
    assert projected_users() == fold_users()
    assert projected_access() == fold_access()
    assert len(projected_users()) == writer.users
    assert interrupted >= 2, "the kills should land in the middle of runs"
