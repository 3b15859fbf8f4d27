"""Section 8, sources: a backfill of a source's history (the backfill job, as a new source gets it) and
the live copy's lag while the source takes 1,000 events a second (the follower's own loop), for each
kind: an application of the eventsourcing library, Message DB, a plain table (bench/sources.py).

References for the backfill, interleaved with it: `raw`, the same rows read from the source in pages of
the same size and COPYed into raw.streams_event with a commit per page (what reading and writing them
costs PostgreSQL, with nothing checked, mapped or decoded); and, for the library's application,
`eventsourcing`: the library copying its own events (select_notifications pages into a process
recorder's table with a tracking record per page, its exactly-once copy, the state left encoded).
"""

from __future__ import annotations

import bisect
import json
import tempfile
import time
from pathlib import Path

import psycopg

from bench import peers, sources
from bench.context import Context, interleaved
from bench.measure import percentile, row

SECTION = "sources"
NAME = "bench_{kind}"
LIVE_RATE = 1000


def run(ctx: Context) -> None:
    from django.conf import settings

    ctx.notes["sources: batches"] = {
        "backfill": settings.REPLAYDESK_SOURCE_BACKFILL_BATCH,
        "live": settings.REPLAYDESK_SOURCE_BATCH,
    }
    prefix = ctx.server.database
    try:
        for kind in sources.KINDS:
            found = sources.create(ctx.server.admin_url, kind, prefix)
            try:
                _kind(ctx, found)
            finally:
                sources.drop(ctx.server.admin_url, found, prefix)
    finally:
        sources.drop_role(ctx.server.admin_url)


def _kind(ctx: Context, found: sources.SourceDB) -> None:
    kind = found.kind
    ctx.log(f"sources: writing {ctx.sizes.source_events:,} events into a {kind} source")
    ctx.notes[f"sources: {kind} history"] = written = sources.write_history(found, ctx.sizes.source_events)
    ctx.log(f"sources: {written}")
    systems = ("replaydesk", "raw", "eventsourcing") if kind == "eventsourcing" else ("replaydesk", "raw")
    samples: dict[str, list[float]] = {system: [] for system in systems}
    for repetition in range(ctx.sizes.repetitions):
        for system in interleaved(systems, repetition):
            _clear(ctx)
            rate = {"replaydesk": _backfill, "raw": _raw_copy, "eventsourcing": _es_copy}[system](ctx, found)
            samples[system].append(rate)
            ctx.log(f"sources: {kind} backfill, {system}: {rate:,.0f} events/s")
    ctx.rows.append(
        row(SECTION, f"backfill of a source: {kind}", "events/s", "higher", samples, events=written["events"])
    )
    lag: dict[str, list[float]] = {"replaydesk": [], "p50": [], "p99": []}
    for repetition in range(ctx.sizes.repetitions):
        measured = _live(ctx, found)
        ctx.log(f"sources: {kind} live lag: {measured}")
        ctx.notes[f"sources: {kind} live, repetition {repetition + 1}"] = measured
        lag["replaydesk"].append(measured["p95"])
        lag["p50"].append(measured["p50"])
        lag["p99"].append(measured["p99"])
    ctx.rows.append(row(SECTION, f"live copy lag of a source (p95): {kind}", "s", "lower", lag))


def _clear(ctx: Context) -> None:
    """An empty log, and no source, before each copy: every repetition copies into the same state."""
    from django.db import connection

    from bench import data
    from recovery.models import Job
    from streams.models import Source

    connection.close()
    data.clear_store(ctx.url)
    Source.objects.all().delete()
    Job.objects.all().delete()


def _add(found: sources.SourceDB):
    from streams import source_services

    return source_services.add_source(
        name=NAME.format(kind=found.kind),
        kind=found.kind,
        dsn=found.reader_url,
        options=found.options(),
        actor="bench",
    )


def _backfill(ctx: Context, found: sources.SourceDB) -> float:
    """The backfill job a new source is given, run to the end (one worker)."""
    from recovery.models import Job
    from recovery.runner import run_inline

    _add(found)
    job = Job.objects.filter(kind="backfill", state="queued").latest("pk")
    started = time.perf_counter()
    finished = run_inline(job.pk)
    elapsed = time.perf_counter() - started
    if finished.state != "succeeded" or finished.result["parked"]:
        raise RuntimeError(
            f"the backfill of {found.kind} ended {finished.state}: {finished.result or finished.error}"
        )
    return finished.result["copied"] / elapsed


def _batch() -> int:
    from django.conf import settings

    return settings.REPLAYDESK_SOURCE_BACKFILL_BATCH


RAW_READ = {
    "eventsourcing": "SELECT notification_id, originator_id::text, originator_version, topic,"
    " convert_from(state, 'UTF8'), '{}', NULL::timestamptz, NULL::uuid"
    f" FROM {sources.TABLE['eventsourcing']} WHERE notification_id > %s ORDER BY notification_id LIMIT %s",
    "messagedb": "SELECT global_position, stream_name, position + 1, type, data::text, metadata::text,"
    " time AT TIME ZONE 'UTC', id::uuid FROM message_store.messages"
    " WHERE global_position > %s ORDER BY global_position LIMIT %s",
    "table": "SELECT seq, stream_name, version, event_type, body::text, meta::text, created, event_id"
    " FROM events WHERE seq > %s ORDER BY seq LIMIT %s",
}


def _raw_copy(ctx: Context, found: sources.SourceDB) -> float:
    """The source's rows, a page at a time, COPYed as they are into raw.streams_event, a commit a page."""
    batch, after, copied, stream_ids = _batch(), 0, 0, {}
    copy_sql = (
        f"COPY {peers.RAW_SCHEMA}.streams_event (stream_id, category, sequence, id, type, data, metadata,"
        " actor, appended_by, appended_via, recorded_at) FROM STDIN"
    )
    started = time.perf_counter()
    with psycopg.connect(found.reader_url) as source, psycopg.connect(ctx.url) as log:
        while True:
            rows = source.execute(RAW_READ[found.kind], [after, batch]).fetchall()
            source.commit()
            if not rows:
                break
            with log.cursor() as cur, cur.copy(copy_sql) as copy:
                for _position, stream, sequence, type_, data, metadata, at, event_id in rows:
                    stream_id = stream_ids.setdefault(stream, len(stream_ids) + 1)
                    copy.write_row(
                        (
                            stream_id,
                            stream.partition("-")[0],
                            sequence,
                            event_id or _uuid(),
                            type_,
                            data,
                            metadata,
                            "",
                            "raw",
                            "raw",
                            at or "now",
                        )
                    )
            log.commit()
            copied += len(rows)
            after = rows[-1][0]
    return copied / (time.perf_counter() - started)


def _uuid():
    import uuid

    return uuid.uuid4()


def _es_copy(ctx: Context, found: sources.SourceDB) -> float:
    """The library copying its application's events exactly once: pages of select_notifications, each
    inserted with its tracking record into a process recorder's table in one transaction."""
    from eventsourcing.persistence import StoredEvent, Tracking
    from eventsourcing.postgres import PostgresProcessRecorder

    app = sources.application(found)
    datastore = peers.es_datastore(ctx.conninfo, schema="es_copy")
    with psycopg.connect(ctx.url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS es_copy CASCADE")
        conn.execute("CREATE SCHEMA es_copy")
    try:
        recorder = PostgresProcessRecorder(datastore, events_table_name="copied_events")
        recorder.create_table()
        batch, after, copied = _batch(), None, 0
        started = time.perf_counter()
        while True:
            page = app.recorder.select_notifications(after, batch, inclusive_of_start=False)
            if not page:
                break
            recorder.insert_events(
                [StoredEvent(n.originator_id, n.originator_version, n.topic, n.state) for n in page],
                tracking=Tracking(sources.APPLICATION, page[-1].id),
            )
            copied += len(page)
            after = page[-1].id
        return copied / (time.perf_counter() - started)
    finally:
        app.close()
        datastore.close()


def _live(ctx: Context, found: sources.SourceDB) -> dict:
    """A writer at LIVE_RATE events/s for source_live_seconds, followed by the live follower's loop (a
    slice copies until caught up, the next starts SOURCE_IDLE_SECONDS later: streams.tasks.follow_source
    without the queue). Each event's lag: from its source commit to the commit of the copy holding it."""
    from streams import source_follow, tasks
    from streams.models import Source

    _clear(ctx)
    _add(found)
    Source.objects.filter(name=NAME.format(kind=found.kind)).update(position=found.top())
    copies: list[tuple[int, int, float]] = []
    real_step = source_follow.copy_step

    def observed(source, kind, reader):
        before = source.position
        step = real_step(source, kind, reader)
        if source.position != before:
            copies.append((before, source.position, time.time()))
        return step

    out = Path(tempfile.mkstemp(prefix="rd-bench-writer-", suffix=".json")[1])
    name = NAME.format(kind=found.kind)
    source_follow.copy_step = observed
    try:
        writer = sources.start_writer(found, LIVE_RATE, ctx.sizes.source_live_seconds, out)
        while writer.is_alive():
            result = source_follow.follow(
                name=name, budget_seconds=tasks.SOURCE_SLICE_SECONDS, until_caught_up=True
            )
            if result.error:
                raise RuntimeError(result.error)
            if result.caught_up:
                time.sleep(tasks.SOURCE_IDLE_SECONDS)
        if writer.exitcode:
            raise RuntimeError(f"the {found.kind} writer exited with {writer.exitcode}")
        written = json.loads(out.read_text())
        last = max(position for position, _ in written["committed"])
        while not copies or copies[-1][1] < last:
            source_follow.follow(name=name, budget_seconds=tasks.SOURCE_SLICE_SECONDS, until_caught_up=True)
    finally:
        source_follow.copy_step = real_step
        out.unlink(missing_ok=True)
    ends = [after for _, after, _ in copies]
    lags = [copies[bisect.bisect_left(ends, position)][2] - at for position, at in written["committed"]]
    count = len(written["committed"])
    return {
        "events": count,
        "rate": round(count / written["seconds"], 1),
        "copies": len(copies),
        "p50": round(percentile(lags, 50), 4),
        "p95": round(percentile(lags, 95), 4),
        "p99": round(percentile(lags, 99), 4),
        "max": round(max(lags), 4),
    }
