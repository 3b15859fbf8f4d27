"""Sections 3 and 6: replaying the demo projections, restoring a snapshot plus a tail, the
eventsourcing peer's catch-up over the same log, and what progress tracking costs a replay.

Replaydesk's jobs run through their public entry points as `replaydesk <kind> --inline` runs them
(recovery.services.request_job within recovery.runner.inline, then recovery.runner.run_inline): one
process, i.e. one worker, and so one lane by default. The replay is also timed in the default lanes of a
deployment with several workers (REPLAYDESK_REPLAY_SHARDS, 4), run one after another by the one process.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager

import psycopg

from bench import data, peers
from bench.context import Context, interleaved
from bench.measure import median, row

PROJECTIONS = ("users_directory", "access")
PAGE = 500
# REPLAYDESK_REPLAY_SHARDS's default: the lanes of a job that workers run in parallel.
DEPLOYMENT_LANES = 4
LANES_ONE_AFTER_ANOTHER = f"{DEPLOYMENT_LANES} lanes, one after another"


def _job(kind: str, **params):
    from recovery import runner, services

    with runner.inline():
        job = services.request_job(kind=kind, params=params, requested_by="bench", reason="benchmark")
    finished = runner.run_inline(job.pk)
    if finished.state != "succeeded":
        raise RuntimeError(f"{kind} job {job.pk} {finished.state}: {finished.error}")
    return finished


@contextmanager
def _timed_progress():
    """Count the time spent writing progress (recovery.runner.report), the job's progress tracking."""
    from recovery import runner

    original = runner.report
    spent = {"seconds": 0.0, "calls": 0}

    def report(job, *, force: bool = False) -> bool:
        started = time.perf_counter()
        try:
            return original(job, force=force)
        finally:
            spent["seconds"] += time.perf_counter() - started
            spent["calls"] += 1

    runner.report = report
    try:
        yield spent
    finally:
        runner.report = original


@contextmanager
def _no_progress():
    from recovery import runner

    original = runner.report
    runner.report = lambda job, *, force=False: False
    try:
        yield
    finally:
        runner.report = original


def _replay_all(**params) -> tuple[dict[str, float], dict]:
    seconds = {}
    with _timed_progress() as spent:
        for name in PROJECTIONS:
            started = time.perf_counter()
            _job("replay", projection=name, **params)
            seconds[name] = time.perf_counter() - started
    return seconds, spent


def _log_size(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM streams_event").fetchone()[0]


def replay(ctx: Context) -> None:
    from bench import es_model

    events = _log_size(ctx.url)
    runner_cap = min(events, ctx.sizes.es_runner_events)
    pages_cap = min(events, ctx.sizes.es_catch_up_events)
    systems = ("replaydesk", "eventsourcing", "eventsourcing, pages by hand")
    if ctx.sizes.name == "full":  # a comparison for the record; the quick run stays under 3 minutes
        systems = (systems[0], LANES_ONE_AFTER_ANOTHER, *systems[1:])
    samples = {system: [] for system in systems}
    per_projection = {name: [] for name in PROJECTIONS}
    progress_share = []
    for repetition in range(ctx.sizes.repetitions):
        for system in interleaved(systems, repetition):
            if system == "replaydesk":
                seconds, spent = _replay_all()
                total = sum(seconds.values())
                samples[system].append(events / total)
                for name in PROJECTIONS:
                    per_projection[name].append(events / seconds[name])
                progress_share.append(spent["seconds"] / total)
            elif system == LANES_ONE_AFTER_ANOTHER:
                seconds, _ = _replay_all(shards=DEPLOYMENT_LANES)
                samples[system].append(events / sum(seconds.values()))
            elif system == "eventsourcing":
                peers.reset_view(ctx.url, ctx.conninfo)
                samples[system].append(
                    runner_cap / es_model.catch_up(ctx.conninfo, ctx.url, up_to=runner_cap)
                )
            else:
                samples[system].append(pages_cap / es_catch_up(ctx, pages_cap))
        ctx.log(f"replay rep {repetition + 1}: {samples} progress {progress_share[-1]:.2%}")
    ctx.rows.append(
        row(
            "replay",
            "replay: the demo projections from scratch",
            "events/s",
            "higher",
            samples,
            log_events=events,
            eventsourcing_events=runner_cap,
            eventsourcing_pages_events=pages_cap,
            projections=list(PROJECTIONS),
        )
    )
    for name in PROJECTIONS:
        ctx.rows.append(
            row(
                "replay",
                f"replay: {name} alone",
                "events/s",
                "higher",
                {"replaydesk": per_projection[name]},
                log_events=events,
            )
        )
    ctx.rows.append(
        row(
            "progress",
            "progress tracking: share of a replay",
            "fraction",
            "lower",
            {"replaydesk": progress_share},
        )
    )
    _progress_ab(ctx, events)


def _progress_ab(ctx: Context, events: int) -> None:
    """The same replay with progress written and with it switched off, interleaved."""
    samples = {"with progress": [], "without progress": []}
    for repetition in range(ctx.sizes.repetitions):
        for variant in interleaved(tuple(samples), repetition):
            started = time.perf_counter()
            if variant == "with progress":
                _job("replay", projection="access")
            else:
                with _no_progress():
                    _job("replay", projection="access")
            samples[variant].append(time.perf_counter() - started)
    figure = row(
        "progress", "replay of access, with and without progress", "s", "lower", samples, log_events=events
    )
    with_, without = median(samples["with progress"]), median(samples["without progress"])
    figure["cost"] = round(with_ / without - 1, 4)
    ctx.rows.append(figure)
    ctx.log(f"progress A/B: {samples}")


# --- the eventsourcing peer's catch-up


FOLD = {
    "UserCreated": (
        "INSERT INTO users (user_id, username, name, email, updated_at) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username, name = EXCLUDED.name, "
        "email = EXCLUDED.email, updated_at = EXCLUDED.updated_at",
        lambda d, at: (d["user_id"], d["username"], d["name"], d["email"], at),
    ),
    "UserNameSet": (
        "UPDATE users SET name = %s, updated_at = %s WHERE user_id = %s",
        lambda d, at: (d["name"], at, d["user_id"]),
    ),
    "UserEmailSet": (
        "UPDATE users SET email = %s, updated_at = %s WHERE user_id = %s",
        lambda d, at: (d["email"], at, d["user_id"]),
    ),
    "PermissionGranted": (
        "INSERT INTO grants (user_id, resource, permission, granted_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        lambda d, at: (d["user_id"], d["resource"], d["permission"], at),
    ),
    "PermissionRevoked": (
        "DELETE FROM grants WHERE user_id = %s AND resource = %s AND permission = %s",
        lambda d, at: (d["user_id"], d["resource"], d["permission"]),
    ),
    "MemberAdded": (
        "INSERT INTO memberships (group_id, user_id, added_at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        lambda d, at: (d["group_id"], d["user_id"], at),
    ),
    "MemberRemoved": (
        "DELETE FROM memberships WHERE group_id = %s AND user_id = %s",
        lambda d, at: (d["group_id"], d["user_id"]),
    ),
}


def es_catch_up(ctx: Context, up_to: int) -> float:
    """Seconds for the peer to fold notifications 1…up_to into fresh read-model tables: pages read with
    select_notifications (filtered by topic, as the library allows), each page's statements and the
    tracking record in one transaction, pipelined. Generous to the peer: the library's own
    projection runner processes one event per transaction."""
    from eventsourcing.persistence import Tracking

    from bench import es_model

    topics = [es_model.topic(event_type) for event_type in FOLD]
    peers.reset_view(ctx.url, ctx.conninfo)
    events_store = peers.es_datastore(ctx.conninfo)
    view_store = peers.es_datastore(ctx.conninfo, schema=peers.ES_VIEW_SCHEMA)
    recorder, tracking = peers.es_recorder(events_store), peers.es_tracking(view_store)
    started = time.perf_counter()
    try:
        position = 0
        while position < up_to:
            page = recorder.select_notifications(
                position, PAGE, stop=up_to, topics=topics, inclusive_of_start=False
            )
            last = page[-1].id if page else up_to
            with view_store.transaction(commit=True) as cursor:
                cursor.execute(f"SET LOCAL search_path TO {peers.ES_VIEW_SCHEMA}")
                with cursor.connection.pipeline():
                    for notification in page:
                        statement, params = FOLD[notification.topic.rpartition(":")[2]]
                        event = json.loads(notification.state)
                        at = event["metadata"].get("occurred_at")
                        cursor.execute(statement, params(event["data"], at))
                tracking._insert_tracking(cursor, Tracking("demo_views", last))
            position = last if len(page) == PAGE else up_to
        return time.perf_counter() - started
    finally:
        events_store.close()
        view_store.close()


# --- restore


def restore(ctx: Context) -> None:
    from recovery.models import Snapshot
    from streams.consumers import run_projection

    for name in PROJECTIONS:
        while not run_projection(name, budget_seconds=60).caught_up:
            pass
    snapshots = {}
    for name in PROJECTIONS:
        _job("snapshot", projection=name)
        snapshots[name] = Snapshot.objects.filter(projection=name).latest("pk").pk
    ctx.log(f"loading a tail of {ctx.sizes.tail_events:,} events after the snapshots")
    ctx.notes["tail_load"] = data.load_demo(
        ctx.url, users=ctx.sizes.users, events=ctx.sizes.tail_events, tag="t"
    )
    tail = ctx.notes["tail_load"]["events"]
    per_million = {name: [] for name in PROJECTIONS}
    for repetition in range(ctx.sizes.repetitions):
        for name in interleaved(PROJECTIONS, repetition):
            started = time.perf_counter()
            _job("restore", projection=name, snapshot=snapshots[name])
            per_million[name].append((time.perf_counter() - started) / (tail / 1_000_000))
        ctx.log(f"restore rep {repetition + 1}: {per_million}")
    slowest = [max(values) for values in zip(*per_million.values(), strict=True)]
    ctx.rows.append(
        row(
            "restore",
            "restore: snapshot + tail, slowest projection",
            "s per million",
            "lower",
            {"replaydesk": slowest},
            tail_events=tail,
        )
    )
    for name in PROJECTIONS:
        ctx.rows.append(
            row(
                "restore",
                f"restore: {name}",
                "s per million",
                "lower",
                {"replaydesk": per_million[name]},
                tail_events=tail,
            )
        )
