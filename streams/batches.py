"""The batch relation: the events a projection applies next, copied into a temporary table inside
PostgreSQL, so that a set-based projection folds them without a round trip through Python.

A runner fills the table with one `INSERT … SELECT` from the log (the same filter, window and order it
would have read), and the projection's `apply_rows` reads the relation like any table. The table belongs
to the session (`pg_temp`) and is emptied at each commit, so concurrent runners never see each other's
rows.

The relation a projection reads (TABLE) is a view: the events' table (EVENTS_TABLE) with each event's
stream name joined in. The join is a LEFT JOIN on the streams' primary key, so PostgreSQL leaves it out
of a statement that does not read `stream` (join removal), and a statement that does reads the names of
its own rows only. Loading the names with every batch was a third of the load; the table's primary key
on position was another fifth, and nothing looks a batch's rows up by position (bench/README.md,
section 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import QuerySet

from streams.models import Event

if TYPE_CHECKING:
    from streams.projections import Projection

TABLE = "replaydesk_batch"
EVENTS_TABLE = "replaydesk_batch_events"
COLUMNS = (
    "position",
    "stream_id",
    "stream",
    "sequence",
    "event_id",
    "type",
    "data",
    "metadata",
    "actor",
    "recorded_at",
)
# What the events' table holds (all but the stream's name), and the model fields that fill it, in order.
_LOADED = tuple(column for column in COLUMNS if column != "stream")
# Both made once per session, in the statement that finds them missing: a rolled-back transaction takes
# what it created with it, so the statement runs before every load.
_CREATE = f"""
    DO $$
    BEGIN
        IF to_regclass('pg_temp.{TABLE}') IS NULL THEN
            CREATE TEMP TABLE IF NOT EXISTS {EVENTS_TABLE} (
                position bigint NOT NULL,
                stream_id bigint NOT NULL,
                sequence bigint NOT NULL,
                event_id uuid NOT NULL,
                type text NOT NULL,
                data jsonb NOT NULL,
                metadata jsonb NOT NULL,
                actor text NOT NULL,
                recorded_at timestamptz NOT NULL
            ) ON COMMIT DELETE ROWS;
            CREATE TEMP VIEW {TABLE} AS
                SELECT b.position, b.stream_id, s.name::text AS stream, b.sequence, b.event_id, b.type,
                       b.data, b.metadata, b.actor, b.recorded_at
                  FROM {EVENTS_TABLE} b LEFT JOIN public.streams_stream s ON s.id = b.stream_id;
        END IF;
    END
    $$
"""


@dataclass(frozen=True)
class Batch:
    """The next events a projection applies: in the batch table (events is None) or as objects."""

    count: int
    last: int | None
    events: list[Event] | None


def read(cursor: CursorWrapper, projection: Projection, events: QuerySet[Event], *, limit: int) -> Batch:
    """The first `limit` of `events` in position order, the way `projection` folds them."""
    if projection.set_based:
        count, last = load(cursor, events, limit=limit)
        return Batch(count, last, None)
    chosen = list(events.select_related("stream").order_by("position")[:limit])
    return Batch(len(chosen), chosen[-1].position if chosen else None, chosen)


def events_of(batch: Batch, events: QuerySet[Event]) -> list[Event]:
    """The batch's events as objects (the batch read from `events`): for finding which one fails."""
    if batch.events is not None:
        return batch.events
    return list(events.select_related("stream").order_by("position")[: batch.count])


def fold(cursor: CursorWrapper, projection: Projection, batch: Batch | list[Event], *, schema: str) -> None:
    """Run the projection's code over a batch with `schema` (live or a rebuild) first on the path."""
    cursor.execute(f"SET LOCAL search_path TO {_quote(schema)}, public")
    if isinstance(batch, Batch) and batch.events is None:
        projection.apply_rows(cursor, TABLE)
    else:
        projection.apply(cursor, batch.events if isinstance(batch, Batch) else batch)
    cursor.execute("SET LOCAL search_path TO DEFAULT")


def record(cursor: CursorWrapper, schema: str, batch: Batch | list[Event]) -> None:
    """Move the per-stream checkpoints of `schema` past a batch."""
    events = batch.events if isinstance(batch, Batch) else batch
    if events is None:
        _record_table(cursor, _quote(schema))
    elif events:
        cursor.execute(
            f"""
            INSERT INTO {_quote(schema)}.stream_checkpoint (stream_id, sequence)
            SELECT stream_id, max(sequence) FROM unnest(%s::bigint[], %s::bigint[]) AS e(stream_id, sequence)
             GROUP BY stream_id
            ON CONFLICT (stream_id) DO UPDATE
               SET sequence = GREATEST({_quote(schema)}.stream_checkpoint.sequence, EXCLUDED.sequence)
            """,
            [[e.stream_id for e in events], [e.sequence for e in events]],
        )


def load(cursor: CursorWrapper, events: QuerySet[Event], *, limit: int) -> tuple[int, int | None]:
    """Fill the batch with the first `limit` of `events` in position order; return how many and the
    last position (None for none)."""
    _empty(cursor)
    chosen = events.order_by("position").values_list(*_LOADED)[:limit]
    sql, params = chosen.query.sql_with_params()
    cursor.execute(
        f"WITH loaded AS (INSERT INTO {EVENTS_TABLE} ({', '.join(_LOADED)}) {sql} RETURNING position) "
        "SELECT count(*), max(position) FROM loaded",
        params,
    )
    count, last = cursor.fetchone()
    return count, last


def load_events(cursor: CursorWrapper, events: list[Event]) -> None:
    """Fill the batch with these events of the log (a batch that a runner already holds as objects)."""
    load(cursor, Event.objects.filter(position__in=[e.position for e in events]), limit=len(events) or 1)


def _record_table(cursor: CursorWrapper, schema: str) -> None:
    cursor.execute(
        f"""
        INSERT INTO {schema}.stream_checkpoint (stream_id, sequence)
        SELECT stream_id, max(sequence) FROM {EVENTS_TABLE} GROUP BY stream_id
        ON CONFLICT (stream_id) DO UPDATE
           SET sequence = GREATEST({schema}.stream_checkpoint.sequence, EXCLUDED.sequence)
        """
    )


def _empty(cursor: CursorWrapper) -> None:
    cursor.execute(_CREATE)
    cursor.execute(f"DELETE FROM {EVENTS_TABLE}")


def _quote(identifier: str) -> str:
    return connection.ops.quote_name(identifier)
