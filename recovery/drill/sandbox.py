"""The drill itself, played inside a scratch database (recovery/drill/__init__.py makes it and drops it).

The story of a restore from an old backup, for real:
1. a domain's history is loaded (the data set the drill is given: recovery/drill/dataset.py; the
   identity demo's by default); an application keeps appending, a projection and a downstream search
   index (a webhook sink) keep consuming;
2. a snapshot of the projection is taken, and the downstream backs itself up; writing goes on;
3. a bad deploy: a bug writes bad events (wrong names and e-mails), which the projection applies and the
   downstream receives; the same bug deletes and rewrites rows of the projection; the downstream is
   restored from its backup and loses what it had received since;
4. the recovery, as an operator would run it: pause the sink, restore the projection from the snapshot
   with the bad events excluded, resync the downstream from the snapshot's position at a safe rate with
   the same exclusion, resume the sink; appends never stop;
5. the checks: the projection equals a fold of the log without the bad events, and the downstream holds
   every good event in effect exactly once and no bad one.
"""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import close_old_connections, connection, transaction

from recovery.drill import dataset, verdict_line
from recovery.drill.dataset import DataSet
from recovery.drill.downstream import Downstream
from recovery.models import Job
from recovery.runner import inline, run_inline
from recovery.services import request_job
from streams.consumers import ensure_projection, pause_consumer, resume_consumer, run_projection
from streams.models import Consumer, Event
from streams.projections import get_projection, quote, read_checkpoint
from streams.selectors import head
from streams.services import append_events
from streams.sink_config import create_sink
from streams.sinks import run_sink

SINK = "drill_downstream"
BAD_ACTOR = "drill:bad-deploy"
ACTOR = "drill"
STEPS = ("loading", "snapshot", "writing", "damage", "recovering", "verifying")


@dataclass(frozen=True)
class Sizes:
    users: int
    events: int
    written_after_snapshot: int
    bad_events: int
    appends_per_second: float
    resync_rate: float


QUICK = Sizes(
    users=400,
    events=8_000,
    written_after_snapshot=1_000,
    bad_events=100,
    appends_per_second=150,
    resync_rate=2_000,
)
FULL = Sizes(
    users=5_000,
    events=150_000,
    written_after_snapshot=10_000,
    bad_events=1_000,
    appends_per_second=400,
    resync_rate=5_000,
)

Say = Callable[[str, str], None]


def play(*, quick: bool, say: Say, data_set: DataSet | None = None) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    drill = _Drill(sizes, say, data_set or dataset.configured())
    try:
        return drill.play()
    finally:
        drill.stop()


class _Drill:
    def __init__(self, sizes: Sizes, say: Say, data_set: DataSet):
        self.sizes, self.say, self.data_set = sizes, say, data_set
        self.projection = get_projection(data_set.projection)
        self.rng = random.Random(20261122)
        self.downstream = Downstream(secret=secrets.token_urlsafe(32), apply=data_set.apply)
        self.traffic: _Traffic | None = None
        self.consumers = _Consumers(self.projection.name)
        self.report: dict[str, Any] = {"sizes": sizes.__dict__}

    def play(self) -> dict[str, Any]:
        self._load()
        snapshot = self._snapshot()
        self._write_on()
        self._damage()
        self._recover(snapshot)
        self.traffic.stop()
        self._verify()
        return self.report

    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        self.consumers.stop()
        self.downstream.stop()

    # --- the story

    def _load(self) -> None:
        self.say("loading", f"loading {self.data_set.what} ({self.sizes.users} people)")
        loaded = self.data_set.load(users=self.sizes.users, events=self.sizes.events)
        ensure_projection(self.projection)
        create_sink(
            name=SINK,
            url=self.downstream.url,
            secret=self.downstream.secret,
            rate_per_second=10_000,
            batch_size=500,
            categories=list(self.data_set.categories),
            types=list(self.data_set.types),
            actor=ACTOR,
        )
        self.consumers.start()
        self.traffic = _Traffic(self.rng, self.sizes.appends_per_second, self.data_set)
        self.traffic.start()
        self.consumers.wait_caught_up(timeout=600)
        self.report["events_loaded"] = loaded
        self.say("loading", f"{loaded} events loaded; the projection and the downstream caught up")

    def _snapshot(self) -> Job:
        self.say("snapshot", "taking a snapshot of the projection")
        job = run_job("snapshot", projection=self.projection.name)
        position = job.result["position"]
        self.consumers.wait_sink_past(position, timeout=120)
        self.downstream.back_up()
        self.report["snapshot_position"] = position
        self.say(
            "snapshot", f"snapshot {job.result['name']} at position {position}; the downstream backed up"
        )
        return job

    def _write_on(self) -> None:
        self.say("writing", f"writing {self.sizes.written_after_snapshot} more events")
        self.traffic.wait_for(self.sizes.written_after_snapshot, timeout=600)

    def _damage(self) -> None:
        self.say("damage", "a bad deploy writes bad events and corrupts the read model")
        bad = self._bad_events()
        self.consumers.wait_caught_up(timeout=120)
        received = sum(1 for event_id in bad if event_id in self.downstream.effects)
        with self._in_projection() as cursor:
            deleted, rewritten = self.data_set.damage(cursor)
        # The downstream is broken: its sink is paused (and its last batch in flight has landed) before
        # it is restored, so that nothing newer reaches it ahead of the resync.
        pause_consumer(name=SINK, actor=ACTOR)
        self.consumers.wait_rounds(2, timeout=60)
        lost = self.downstream.restore_backup()
        self.report["damage"] = {
            "bad_events": len(bad),
            "bad_events_received_downstream": received,
            "rows_deleted": deleted,
            "rows_rewritten": rewritten,
            "downstream_effects_lost": lost,
        }
        self.say(
            "damage",
            f"{len(bad)} bad events ({received} reached the downstream); {deleted} rows deleted and "
            f"{rewritten} rewritten; the downstream restored from its backup lost {lost} effects",
        )

    def _bad_events(self) -> set[str]:
        ids: set[str] = set()
        entities = self.traffic.entities
        for n in range(self.sizes.bad_events):
            stream, event = self.data_set.bad_change(self.rng.choice(entities), n)
            result = append_events(stream=stream, events=[event], actor=BAD_ACTOR)
            ids.update(
                str(i)
                for i in Event.objects.filter(position__in=result.positions).values_list(
                    "event_id", flat=True
                )
            )
        return ids

    def _recover(self, snapshot: Job) -> None:
        self.say("recovering", "restoring the projection from the snapshot without the bad events")
        started = time.monotonic()
        exclude = {"actor": BAD_ACTOR}
        from_snapshot = snapshot.result["snapshot"]
        restore = run_job("restore", projection=self.projection.name, snapshot=from_snapshot, exclude=exclude)
        self.say("recovering", f"restored: {restore.result['events_replayed']} events replayed")
        resync = run_job(
            "resync",
            sink=SINK,
            from_position=snapshot.result["position"],
            rate_per_second=self.sizes.resync_rate,
            exclude=exclude,
        )
        resume_consumer(name=SINK, actor=ACTOR)
        self.consumers.wait_caught_up(timeout=600)
        self.report.update(
            rto_seconds=round(time.monotonic() - started, 2),
            rpo_events=restore.result["rpo_events"],
            events_replayed=restore.result["events_replayed"],
            events_excluded=restore.result["events_excluded"],
            downstream_resent=resync.result["events_resent"],
            jobs={"snapshot": snapshot.pk, "restore": restore.pk, "resync": resync.pk},
        )
        self.say("recovering", f"healthy again after {self.report['rto_seconds']} s")

    def _verify(self) -> None:
        self.say("verifying", "comparing the projection and the downstream with a fold of the log")
        self.consumers.wait_caught_up(timeout=300)
        self.consumers.stop()
        expected, good_ids, bad_ids = _fold_without(BAD_ACTOR, self.data_set)
        with self._in_projection() as cursor:
            projected = self.data_set.projected(cursor)
        effects = self.downstream.effects
        fields = {user: {k: v for k, v in doc.items() if k != "changes"} for user, doc in expected.items()}
        # Each count is of what is wrong: 0 everywhere is a pass.
        checks = {
            "projection_rows_wrong": _differences(fields, projected),
            # Documents count their changes, so an event in effect twice shows here too.
            "downstream_documents_wrong": _differences(expected, self.downstream.documents),
            "downstream_events_missing": len(good_ids - set(effects)),
            "downstream_bad_events_in_effect": len(bad_ids & set(effects)),
        }
        self.report.update(
            checks=checks,
            downstream_duplicates_ignored=self.downstream.ignored,
            events_in_log=head(),
        )
        self.report["rpo_events"] += checks["downstream_events_missing"]
        self.report["passed"] = all(value == 0 for value in checks.values())
        self.say("verifying", verdict_line(self.report["passed"], checks))

    @contextlib.contextmanager
    def _in_projection(self) -> Iterator[Any]:
        """A cursor with the live projection's schema first on its search_path."""
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL search_path TO {quote(self.projection.schema)}, public")
            yield cursor


def run_job(kind: str, **params: Any) -> Job:
    """A job of the drill's, requested and run to its end here; RuntimeError unless it succeeded."""
    with inline():
        job = request_job(kind=kind, params=params, requested_by=ACTOR, reason="fault drill")
    finished = run_inline(job.pk)
    if finished.state != Job.State.SUCCEEDED:
        raise RuntimeError(f"the {kind} job {finished.pk} ended {finished.state}: {finished.error}")
    return finished


def _fold_without(actor: str, data_set: DataSet) -> tuple[dict[str, dict], set[str], set[str]]:
    """The downstream's documents as a fold of the log without `actor`'s events, and the ids of the
    events the downstream should hold (and of those it must not)."""
    documents: dict[str, dict] = {}
    good: set[str] = set()
    bad: set[str] = set()
    events = Event.objects.filter(category__in=data_set.categories, type__in=data_set.types).order_by(
        "position"
    )
    for event_id, kind, data, by in events.values_list("event_id", "type", "data", "actor").iterator(5000):
        if by == actor:
            bad.add(str(event_id))
            continue
        good.add(str(event_id))
        data_set.apply(documents, {"type": kind, "data": data})
    return documents, good, bad


def _differences(expected: dict[str, dict], found: dict[str, dict]) -> int:
    keys = set(expected) | set(found)
    return sum(1 for key in keys if expected.get(key) != found.get(key))


class _Loop(threading.Thread):
    """A part of the world that keeps going in its own thread (with its own database connection) until
    stopped; what stopped it otherwise is raised to whoever waits on it."""

    what = "a background loop"

    def __init__(self, name: str):
        super().__init__(name=name, daemon=True)
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self.step()
        except BaseException as exc:  # noqa: BLE001 — raised by wait_until in the drill's thread
            self.error = exc
        finally:
            connection.close()

    def step(self) -> None:
        raise NotImplementedError

    def wait_until(self, reached: Callable[[], bool], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not reached():
            if self.error is not None:
                raise RuntimeError(f"{self.what} stopped: {self.error}") from self.error
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.what} did not get there in {timeout:g} s")
            time.sleep(0.1)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=30)


class _Traffic(_Loop):
    """The application: renames and e-mail changes of existing people, one append per request, paced."""

    what = "the application's appends"

    def __init__(self, rng: random.Random, per_second: float, data_set: DataSet):
        super().__init__("drill-traffic")
        self.rng, self.per_second, self.data_set = rng, per_second, data_set
        self.entities = data_set.entities()
        self.appended = 0
        self.started = time.monotonic()

    def step(self) -> None:
        stream, event = self.data_set.change(self.rng, self.rng.choice(self.entities), self.appended)
        append_events(stream=stream, events=[event], actor="app")
        self.appended += 1
        time.sleep(max(0.0, self.started + self.appended / self.per_second - time.monotonic()))

    def wait_for(self, more: int, *, timeout: float) -> None:
        target = self.appended + more
        self.wait_until(lambda: self.appended >= target, timeout=timeout)


class _Consumers(_Loop):
    """The live side: the projection and the sink, run in turns as the workers would."""

    what = "the consumers"

    def __init__(self, projection: str):
        super().__init__("drill-consumers")
        self.projection = projection
        self.projection_position = 0
        self.sink_position = 0
        self.rounds = 0

    def step(self) -> None:
        projected = run_projection(self.projection, budget_seconds=0.5)
        delivered = run_sink(SINK, budget_seconds=0.5)
        close_old_connections()
        if projected.caught_up:
            self.projection_position = read_checkpoint(get_projection(self.projection))[0]
        if delivered.caught_up or delivered.idle:
            self.sink_position = Consumer.objects.values_list("position", flat=True).get(name=SINK)
        self.rounds += 1
        if (projected.caught_up or projected.idle) and (delivered.caught_up or delivered.idle):
            time.sleep(0.05)

    def wait_caught_up(self, *, timeout: float) -> None:
        target = head()
        caught_up = lambda: self.projection_position >= target and self.sink_position >= target  # noqa: E731
        self.wait_until(caught_up, timeout=timeout)

    def wait_rounds(self, rounds: int, *, timeout: float) -> None:
        target = self.rounds + rounds
        self.wait_until(lambda: self.rounds >= target, timeout=timeout)

    def wait_sink_past(self, position: int, *, timeout: float) -> None:
        self.wait_until(lambda: self.sink_position >= position, timeout=timeout)
