"""Rebuilding a projection into a fresh schema, and swapping it in.

A rebuild schema (`proj_<name>__rebuild_<job>`) has the projection's tables and checkpoints. Its events
are applied by lanes: lane k of n takes the streams whose id is k modulo n, each stream in sequence order,
and moves its own position (in recovery_joblane) in the same transaction as the effects; the per-stream
checkpoints of what the lanes apply are recorded once, when the rebuild is prepared. The tail lane
then follows the log in position order up to the head, and the swap renames schemas in one transaction
under the projection's lock: live reads never see a half-built projection, and the schema it replaced
is kept as `proj_<name>__previous` for an instant rollback.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Count, F, Max, Q, QuerySet, Value
from django.db.models.functions import Now

from core.locks import lock_key
from recovery.models import Job, JobLane
from recovery.services import previous_schema
from streams import batches, selectors
from streams.consumers import WINDOW_FACTOR, describe
from streams.models import Consumer, Event
from streams.projections import Projection, quote


class RebuildError(Exception):
    """A rebuild that cannot go on; the message says which event or which check."""


def schema_for(projection: Projection, job: Job) -> str:
    return f"{projection.schema}__rebuild_{job.pk}"


def excluded(exclude: dict[str, Any]) -> Q | None:
    """The events an exclusion drops: listed ids, or events matching all of actor, types and times."""
    rule, given = Q(), False
    if exclude.get("actor"):
        rule, given = rule & Q(actor=exclude["actor"]), True
    if exclude.get("types"):
        rule, given = rule & Q(type__in=exclude["types"]), True
    if exclude.get("recorded_after"):
        rule, given = rule & Q(recorded_at__gte=dt.datetime.fromisoformat(exclude["recorded_after"])), True
    if exclude.get("recorded_before"):
        rule, given = rule & Q(recorded_at__lt=dt.datetime.fromisoformat(exclude["recorded_before"])), True
    by_id = Q(event_id__in=exclude["event_ids"]) if exclude.get("event_ids") else None
    if by_id is not None and given:
        return by_id | rule
    return by_id if by_id is not None else (rule if given else None)


def matching(
    projection: Projection, *, after: int, up_to: int, lanes: int = 1, lane: int | None = None
) -> QuerySet[Event]:
    events = selectors.filter_events(
        Event.objects.filter(position__gt=after, position__lte=up_to), projection.log_filter
    )
    if lane is not None and lanes > 1:
        events = events.annotate(shard=F("stream_id") % lanes).filter(shard=lane)
    return events


def count(projection: Projection, *, after: int, up_to: int, exclude: dict[str, Any]) -> tuple[int, int]:
    """(events to apply, events excluded) between two positions."""
    events = matching(projection, after=after, up_to=up_to)
    rule = excluded(exclude)
    dropped = events.filter(rule).count() if rule is not None else 0
    return events.count() - dropped, dropped


def lane_batch(
    *, projection: Projection, schema: str, lane: JobLane, lanes: int, up_to: int, exclude: dict[str, Any]
) -> int:
    """Apply the next batch of one lane's events (or, for lane None, of the log in order) and move the
    lane, in one transaction. Returns the number of events applied; the lane is finished when its
    position reaches `up_to`."""
    shard = lane.lane if lane.lane < lanes else None  # the tail lane follows every stream
    size = projection.replay_batch
    width = size * WINDOW_FACTOR * (lanes if shard is not None else 1)
    own_transaction = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if own_transaction:
            # The batch and the lane's position commit together or not at all, in a schema nobody reads
            # yet: a commit lost to a crash of the server is a batch applied again, so it need not wait
            # for the disk. The swap's transaction (and a batch applied inside it) stays durable.
            cursor.execute("SET LOCAL synchronous_commit TO off")
        position = JobLane.objects.select_for_update().values_list("position", flat=True).get(pk=lane.pk)
        window_end = min(up_to, selectors.next_position(after=position) - 1 + width)
        events = matching(projection, after=position, up_to=window_end, lanes=lanes, lane=shard)
        rule = excluded(exclude)
        if rule is not None:
            events = events.exclude(rule)
        batch = batches.read(cursor, projection, events, limit=size)
        if batch.count:
            # A lane's per-stream checkpoints were recorded when the rebuild was prepared (record_streams):
            # each stream's last sequence written once rather than again by every batch that touches it.
            apply_events(cursor, projection, schema, batch, events, record=shard is None)
        reached = batch.last if batch.count == size else window_end
        JobLane.objects.filter(pk=lane.pk).update(
            position=reached, done=F("done") + batch.count, finished=reached >= up_to, moved_at=Now()
        )
        lane.position, lane.done, lane.finished = reached, lane.done + batch.count, reached >= up_to
    return batch.count


def apply_events(
    cursor: CursorWrapper,
    projection: Projection,
    schema: str,
    batch: batches.Batch,
    events: QuerySet[Event],
    *,
    record: bool = True,
) -> None:
    """Apply a batch (the first of `events`) into `schema` and, unless `record` is false, move its
    per-stream checkpoints; a failure names its event."""
    try:
        with transaction.atomic():
            batches.fold(cursor, projection, batch, schema=schema)
    except Exception as exc:
        chosen = batches.events_of(batch, events)
        raise RebuildError(_culprit(cursor, projection, schema, chosen, exc)) from exc
    if record:
        batches.record(cursor, schema, batch)


def record_streams(
    cursor: CursorWrapper,
    projection: Projection,
    schema: str,
    *,
    after: int,
    up_to: int,
    exclude: dict[str, Any],
) -> tuple[int, int]:
    """Move the per-stream checkpoints of `schema` past every event its lanes are to apply between two
    positions, and count those events: (events to apply, events excluded).

    Run once, when the rebuild is prepared: the lanes' events are fixed by then (after the base, up to the
    target, less the exclusions), so each stream's last sequence is written once, not again by every
    batch that touches the stream, and the log is read once for both the checkpoints and the count.
    Nothing reads a rebuild's checkpoints before it is swapped in, which waits for every lane."""
    per_stream = _per_stream(projection, after=after, up_to=up_to, exclude=exclude)
    sql, params = per_stream.query.sql_with_params()
    # One row per stream, hashed: at the default work_mem a hundred thousand streams spill to disk.
    cursor.execute("SET LOCAL work_mem TO '64MB'")
    cursor.execute(
        f"""
        WITH per_stream AS MATERIALIZED ({sql}), recorded AS (
            INSERT INTO {quote(schema)}.stream_checkpoint (stream_id, sequence)
            SELECT stream_id, top FROM per_stream WHERE top IS NOT NULL
            ON CONFLICT (stream_id) DO UPDATE
               SET sequence = GREATEST({quote(schema)}.stream_checkpoint.sequence, EXCLUDED.sequence)
        )
        SELECT COALESCE(sum(applied), 0), COALESCE(sum(dropped), 0) FROM per_stream
        """,
        params,
    )
    applied, dropped = cursor.fetchone()
    return int(applied), int(dropped)


def _per_stream(projection: Projection, *, after: int, up_to: int, exclude: dict[str, Any]) -> QuerySet:
    """For each stream with events between two positions: the last sequence of those applied (`top`,
    NULL when all are excluded) and how many are applied and excluded."""
    events = matching(projection, after=after, up_to=up_to).values("stream_id").order_by()
    rule = excluded(exclude)
    if rule is None:
        return events.annotate(top=Max("sequence"), applied=Count("position"), dropped=Value(0))
    return events.annotate(
        top=Max("sequence", filter=~rule),
        applied=Count("position", filter=~rule),
        dropped=Count("position", filter=rule),
    )


def _last_sequences(projection: Projection, *, after: int, up_to: int, exclude: dict[str, Any]) -> QuerySet:
    """Each stream's last sequence among the events applied between two positions (`stream_id`, `top`)."""
    events = matching(projection, after=after, up_to=up_to)
    rule = excluded(exclude)
    if rule is not None:
        events = events.exclude(rule)
    return events.values("stream_id").annotate(top=Max("sequence")).order_by()


def _culprit(cursor, projection: Projection, schema: str, events: list[Event], exc: Exception) -> str:
    for event in events:
        try:
            with transaction.atomic():
                batches.fold(cursor, projection, [event], schema=schema)
        except Exception as single:
            return (
                f"{projection.name} fails on {describe(single, event)}; fix the code, or exclude the "
                "event and replay"
            )
    first, last = events[0].position, events[-1].position
    return f"{projection.name} fails on the batch of positions {first}..{last}: {exc}"


def drop_schema(schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")


def schema_exists(cursor: CursorWrapper, schema: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
    return cursor.fetchone() is not None


def lock_projection(cursor: CursorWrapper, projection: Projection) -> None:
    """Hold the projection's runner lock to the end of the transaction (the live runner waits)."""
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("consumer", projection.name)])


def live_position(cursor: CursorWrapper, projection: Projection) -> int:
    if not schema_exists(cursor, projection.schema):
        return 0
    cursor.execute(f"SELECT position FROM {quote(projection.schema)}.checkpoint")
    return cursor.fetchone()[0]


def swap(cursor: CursorWrapper, projection: Projection, schema: str, position: int) -> None:
    """Make `schema` the live one at `position`; keep the replaced one as the previous. The caller holds
    the projection's lock in the same transaction."""
    live, previous = projection.schema, previous_schema(projection.schema)
    cursor.execute(f"UPDATE {quote(schema)}.checkpoint SET position = %s", [position])
    cursor.execute(f"DROP SCHEMA IF EXISTS {quote(previous)} CASCADE")
    if schema_exists(cursor, live):
        cursor.execute(f"ALTER SCHEMA {quote(live)} RENAME TO {quote(previous)}")
    cursor.execute(f"ALTER SCHEMA {quote(schema)} RENAME TO {quote(live)}")
    # A projection stopped by a failing event or an old schema version runs again from the swapped one.
    Consumer.objects.filter(name=projection.name, state=Consumer.State.FAILED).update(
        state=Consumer.State.RUNNING, attempts=0, retry_at=None, failing_position=None
    )


def stream_gaps(
    cursor: CursorWrapper,
    projection: Projection,
    schema: str,
    *,
    after: int,
    up_to: int,
    exclude: dict[str, Any],
) -> int:
    """Streams with events between two positions that the rebuilt schema has not applied: 0 when the
    replay covered everything it had to."""
    expected = _last_sequences(projection, after=after, up_to=up_to, exclude=exclude)
    sql, params = expected.query.sql_with_params()
    cursor.execute(
        f"""
        SELECT count(*) FROM ({sql}) e
          LEFT JOIN {quote(schema)}.stream_checkpoint c ON c.stream_id = e.stream_id
         WHERE c.sequence IS NULL OR c.sequence < e.top
        """,
        params,
    )
    return int(cursor.fetchone()[0])


def rows_ahead_of_log(cursor: CursorWrapper, schema: str) -> int:
    """Events the schema has applied that the log no longer holds (a log restored from an older backup):
    the restore's RPO, 0 when the log is intact."""
    cursor.execute(
        f"""
        SELECT COALESCE(sum(c.sequence - COALESCE(s.version, 0)), 0)
          FROM {quote(schema)}.stream_checkpoint c
          LEFT JOIN streams_stream s ON s.id = c.stream_id
         WHERE c.sequence > COALESCE(s.version, 0)
        """
    )
    return int(cursor.fetchone()[0])


SAMPLES = 5


def compare(cursor: CursorWrapper, *, live: str, scratch: str) -> dict[str, dict[str, Any]]:
    """Table by table, the rows the live schema is missing, holds extra, or holds different (same primary
    key, other values) compared with a rebuilt one, with a few samples of each."""
    cursor.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'checkpoint' ORDER BY 1",
        [scratch],
    )
    report: dict[str, dict[str, Any]] = {}
    for (table,) in cursor.fetchall():
        keys = _primary_key(cursor, scratch, table)
        ours, theirs = f"{quote(scratch)}.{quote(table)}", f"{quote(live)}.{quote(table)}"
        cursor.execute("DROP TABLE IF EXISTS pg_temp.verify_missing, pg_temp.verify_extra")
        for temp, left, right in (("verify_missing", ours, theirs), ("verify_extra", theirs, ours)):
            cursor.execute(
                f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS"
                f" SELECT * FROM {left} EXCEPT ALL SELECT * FROM {right}"
            )
        if keys:
            same_key = (
                f"({', '.join(f'a.{quote(c)}' for c in keys)}) = ({', '.join(f'b.{quote(c)}' for c in keys)})"
            )
            missing = (
                "SELECT a.* FROM verify_missing a"
                f" WHERE NOT EXISTS (SELECT 1 FROM verify_extra b WHERE {same_key})"
            )
            extra = (
                "SELECT b.* FROM verify_extra b"
                f" WHERE NOT EXISTS (SELECT 1 FROM verify_missing a WHERE {same_key})"
            )
            different = (
                "SELECT json_build_object('expected', row_to_json(a), 'found', row_to_json(b)) AS row"
                f" FROM verify_missing a JOIN verify_extra b ON {same_key}"
            )
        else:
            missing, extra = "SELECT * FROM verify_missing", "SELECT * FROM verify_extra"
            different = None
        report[table] = {
            "missing": _count(cursor, missing),
            "extra": _count(cursor, extra),
            "different": _count(cursor, different) if different else 0,
            "samples": {
                "missing": _sample(cursor, f"SELECT row_to_json(t) FROM ({missing}) t"),
                "extra": _sample(cursor, f"SELECT row_to_json(t) FROM ({extra}) t"),
                "different": _sample(cursor, f"SELECT row FROM ({different}) t") if different else [],
            },
        }
        cursor.execute("DROP TABLE verify_missing, verify_extra")
    return report


def _primary_key(cursor: CursorWrapper, schema: str, table: str) -> list[str]:
    cursor.execute(
        """
        SELECT a.attname FROM pg_index i
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
         ORDER BY array_position(i.indkey, a.attnum)
        """,
        [f"{quote(schema)}.{quote(table)}"],
    )
    return [name for (name,) in cursor.fetchall()]


def _count(cursor: CursorWrapper, query: str) -> int:
    cursor.execute(f"SELECT count(*) FROM ({query}) t")
    return int(cursor.fetchone()[0])


def _sample(cursor: CursorWrapper, query: str) -> list[Any]:
    cursor.execute(f"{query} LIMIT {SAMPLES}")
    return [row for (row,) in cursor.fetchall()]
