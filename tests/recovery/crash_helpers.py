"""What the recovery job tests share: a projection that counts how often each event reached it, a
generated identity history big enough for a replay to take seconds, readers of a projection's schema, and
real Celery workers that know the counting projection and consume the `recovery` queue.

A worker is a separate process, so a projection a test declares must be declared there too: the worker
starts through `serve()`, which adds `Counted` to the registry before Celery starts (the pool's processes
are forked from it and inherit it).
"""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from pathlib import Path

from django.db import connection

from core.redis import client as redis_client
from demo.projections import AccessTable, UsersDirectory
from recovery.models import Job, JobLane
from streams.models import Event
from streams.projections import add
from streams.selectors import head
from streams.services import ImportBatch, import_events
from tests.streams.projection_helpers import fold_access, fold_users
from tests.streams.test_projection_crashes import Processes

COUNTED = "test_counted"


class Counted(UsersDirectory, AccessTable, register=False):
    """The users directory and the access table in one projection, plus a count of the applications of
    each event: a second application of any event shows as times = 2."""

    name = COUNTED
    categories = ("user", "group")
    types = UsersDirectory.types + AccessTable.types
    tables = (
        *UsersDirectory.tables,
        *AccessTable.tables,
        "CREATE TABLE applied (event_id uuid PRIMARY KEY, times integer NOT NULL)",
    )
    # Seconds each batch takes on top of its work (tests that need a slice to last).
    delay = 0.0
    # Small replay batches: many commits for a kill to land between.
    replay_batch_size = 500

    def forget(self, cursor, stream: str) -> None:
        UsersDirectory.forget(self, cursor, stream)
        AccessTable.forget(self, cursor, stream)

    def apply_rows(self, cursor, rows: str) -> None:
        UsersDirectory.apply_rows(self, cursor, rows)
        AccessTable.apply_rows(self, cursor, rows)
        cursor.execute(
            f"""
            INSERT INTO applied (event_id, times) SELECT event_id, 1 FROM {rows}
            ON CONFLICT (event_id) DO UPDATE SET times = applied.times + 1
            """
        )
        if Counted.delay:
            time.sleep(Counted.delay)


# --- the log


class History:
    """Demo-shaped events, imported in big transactions: new users, renames, e-mail changes, grants and
    revokes on user streams, memberships on group streams. Only users created earlier are touched."""

    GROUPS = ("ops", "dev", "sec", "data")
    RESOURCES = ("issueABC", "repo-web", "billing")

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.users = 0

    def add(self, events: int, *, per_import: int = 5000) -> int:
        """Import about `events` events; the number imported."""
        imported = 0
        while imported < events:
            imported += self._import(min(per_import, events - imported))
        return imported

    def _import(self, size: int) -> int:
        batches, count = [], 0
        while count < size:
            if self.users < 20 or self.rng.random() < 0.08:
                self.users += 1
                uid = str(self.users)
                data = {"user_id": uid, "username": f"u{uid}", "name": f"User {uid}", "email": f"{uid}@x.io"}
                batches.append(ImportBatch(stream=f"user-{uid}", events=[self._event("UserCreated", data)]))
                count += 1
                continue
            uid = str(self.rng.randint(1, self.users))
            kind = self.rng.random()
            if kind < 0.2:
                events = [self._event("UserNameSet", {"user_id": uid, "name": f"N{self.rng.random():.8f}"})]
            elif kind < 0.3:
                events = [self._event("UserEmailSet", {"user_id": uid, "email": f"{self.rng.random()}@y.io"})]
            elif kind < 0.7:
                events = [
                    self._event(
                        self.rng.choice(["PermissionGranted", "PermissionRevoked"]),
                        {
                            "user_id": uid,
                            "resource": self.rng.choice(self.RESOURCES),
                            "permission": self.rng.choice(["read", "write"]),
                        },
                    )
                    for _ in range(self.rng.randint(1, 3))
                ]
            else:
                group = self.rng.choice(self.GROUPS)
                event_type = self.rng.choice(["MemberAdded", "MemberRemoved"])
                batches.append(
                    ImportBatch(
                        stream=f"group-{group}",
                        events=[self._event(event_type, {"group_id": group, "user_id": uid})],
                    )
                )
                count += 1
                continue
            batches.append(ImportBatch(stream=f"user-{uid}", events=events))
            count += len(events)
        import_events(batches=batches)
        return count

    def _event(self, event_type: str, data: dict) -> dict:
        return {
            "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "type": event_type,
            "data": data,
        }


# --- what a projection holds, and what the log says it should


def projected(schema: str) -> tuple[dict, set, set]:
    """(users, grants, memberships) of a Counted schema, in the shapes of projection_helpers' folds."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT user_id, username, name, email FROM {schema}.users")
        users = {row[0]: tuple(row[1:]) for row in cursor.fetchall()}
        cursor.execute(f"SELECT user_id, resource, permission FROM {schema}.grants")
        grants = set(cursor.fetchall())
        cursor.execute(f"SELECT group_id, user_id FROM {schema}.memberships")
        return users, grants, set(cursor.fetchall())


def applied_counts(schema: str) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT event_id::text, times FROM {schema}.applied")
        return dict(cursor.fetchall())


def counted_event_ids() -> set[str]:
    """The ids of every event Counted follows."""
    events = Event.objects.filter(stream__category__in=Counted.categories, type__in=Counted.types)
    return {str(i) for i in events.values_list("event_id", flat=True)}


def schema_exists(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cursor.fetchone() is not None


def checkpoint_of(schema: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT position FROM {schema}.checkpoint")
        return cursor.fetchone()[0]


# --- jobs


def progress(job_id: int) -> tuple[int, int]:
    """(slices done, events applied by the lanes): both only ever grow while a job works."""
    job_slice = Job.objects.values_list("slice", flat=True).get(pk=job_id)
    lanes = JobLane.objects.filter(job_id=job_id)
    return job_slice + sum(lanes.values_list("slice", flat=True)), sum(lanes.values_list("done", flat=True))


def clear_queues() -> None:
    """Messages left in Redis by earlier tests (queued, or unacked by a killed worker) are not this
    test's. Only the queues' and Celery's own keys are deleted."""
    redis = redis_client()
    for pattern in ("recovery*", "live*", "default*", "unacked*", "replaydesk:consumer-queued:*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)


# --- real workers

BOOT = (
    "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'console.settings'); "
    "import django; django.setup(); from tests.recovery.crash_helpers import serve; serve()"
)


def serve() -> None:
    """A Celery worker's main, in a process of its own: Counted is known (slowed down by
    COUNTED_APPLY_DELAY seconds a batch, for tests whose jobs must last), then Celery takes over."""
    Counted.delay = float(os.environ.get("COUNTED_APPLY_DELAY") or 0)
    add(Counted)
    from console.celery import app

    app.worker_main(sys.argv[1:])


class Workers(Processes):
    """Real workers on the live and recovery queues, short slices, the test's snapshot directory."""

    def __init__(self, logs: Path, *, slice_seconds: float, snapshot_dir: Path):
        super().__init__(logs)
        self.env["REPLAYDESK_JOB_SLICE_SECONDS"] = str(slice_seconds)
        self.env["REPLAYDESK_SNAPSHOT_DIR"] = str(snapshot_dir)
        # As in the test process (tests/conftest.py): these tests are about work, not approvals.
        self.env["REPLAYDESK_APPROVALS"] = "replay=0,restore=0,resync=0,snapshot=0,verify=0"

    def worker(self, n: int, *, concurrency: int = 4):
        argv = [sys.executable, "-c", BOOT, "worker", "--queues", "live,recovery"]
        argv += ["--concurrency", str(concurrency), "--without-mingle", "--without-gossip"]
        argv += ["--loglevel", "INFO", "--hostname", f"jobcrash{n}@%h"]
        process = self.start(f"worker-{n}", argv)
        log = self.logs / f"worker-{n}.log"
        deadline = time.monotonic() + 30
        while " ready." not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline and process.poll() is None, log.read_text(errors="replace")
            time.sleep(0.05)
        return process

    def tails(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.logs.glob("*.log"))
        )


def assert_equal_to_the_log_exactly_once(schema: str) -> None:
    """The projection in `schema` is the fold of the log, every event it follows applied exactly once,
    and its checkpoint at the head."""
    users, grants, memberships = projected(schema)
    assert users == fold_users()
    assert (grants, memberships) == fold_access()
    counts = applied_counts(schema)
    twice = {event_id: times for event_id, times in counts.items() if times != 1}
    assert twice == {}, f"{len(twice)} events were applied more than once"
    missing = counted_event_ids() - set(counts)
    assert not missing, f"{len(missing)} events were never applied"
    assert set(counts) == counted_event_ids()
    assert checkpoint_of(schema) == head()
