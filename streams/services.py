"""Writes to the event store.

How an append keeps its promises (DESIGN.md §4, §7):
- per-stream order: a compare-and-set on streams_stream.version serialises appends to one stream;
- global order: positions are taken under a transaction-scoped advisory lock held until commit, so
  positions become visible in increasing order and a reader tailing `position > cursor` can never pass
  over an event that commits later with a lower position;
- idempotency: event ids are unique; a retry whose ids are all recorded gets the original result.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from psycopg.types.json import Jsonb

from streams.validation import (
    InvalidAppend,
    NewEvent,
    WrongExpectedVersion,
    category_of,
    parse_append,
)

# pg_advisory_xact_lock key for "positions are being assigned"; any fixed bigint will do.
GLOBAL_ORDER_LOCK = 0x7265706C6179  # "replay"
NOTIFY_CHANNEL = "replaydesk_events"


@dataclass(frozen=True)
class AppendResult:
    stream: str
    version: int
    first_sequence: int
    positions: list[int]
    # True when every event was already recorded: a retry, answered from the log.
    duplicate: bool = False

    @property
    def last_position(self) -> int:
        return self.positions[-1]


def append_events(
    *,
    stream: str,
    events: Sequence[NewEvent | dict[str, Any]],
    expected_version: str | int = "any",
    actor: str = "",
) -> AppendResult:
    """Append a batch to one stream atomically.

    expected_version: "any", "no_stream", "exists", or N (the stream's current version; 0 = no events).
    actor: who appends, used when an event's metadata names no actor.
    Raises InvalidAppend (bad input or a partial retry) or WrongExpectedVersion; in both cases nothing
    is written.

    Called inside a caller's transaction, the append commits with it; keep that transaction short,
    because positions are assigned under one lock held until commit and every other append waits.
    """
    raw = list(events) if isinstance(events, list | tuple) else events
    stream, batch, expected = parse_append(stream=stream, events=raw, expected_version=expected_version)
    ids = [event.id or uuid.uuid4() for event in batch]
    client_ids = [event.id for event in batch if event.id is not None]
    if client_ids:
        earlier = _recorded_result(stream, batch, ids)
        if earlier is not None:
            return earlier
    try:
        return _append(stream, batch, ids, expected, actor)
    except IntegrityError:
        # A concurrent retry of the same batch committed first: answer as a retry would be answered.
        if client_ids:
            earlier = _recorded_result(stream, batch, ids)
            if earlier is not None:
                return earlier
        raise


def _append(
    stream: str, batch: list[NewEvent], ids: list[uuid.UUID], expected: str | int, actor: str
) -> AppendResult:
    count = len(batch)
    actors = [str(event.metadata.get("actor") or actor or "") for event in batch]
    metadata = [
        Jsonb({**event.metadata, "actor": who} if who else event.metadata)
        for event, who in zip(batch, actors, strict=True)
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        stream_id, version = _claim_versions(cursor, stream, count, expected)
        first_sequence = version - count + 1
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [GLOBAL_ORDER_LOCK])
        cursor.execute(
            """
            INSERT INTO streams_event (stream_id, sequence, id, type, data, metadata, actor, recorded_at)
            SELECT %s, %s + ord - 1, e.id, e.type, e.data, e.metadata, e.actor, clock_timestamp()
              FROM unnest(%s::uuid[], %s::text[], %s::jsonb[], %s::jsonb[], %s::text[])
                   WITH ORDINALITY AS e(id, type, data, metadata, actor, ord)
             ORDER BY ord
            RETURNING position, sequence
            """,
            [
                stream_id,
                first_sequence,
                ids,
                [event.type for event in batch],
                [Jsonb(event.data) for event in batch],
                metadata,
                actors,
            ],
        )
        positions = [position for position, _ in sorted(cursor.fetchall(), key=lambda row: row[1])]
        cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(positions[-1])])
    return AppendResult(stream=stream, version=version, first_sequence=first_sequence, positions=positions)


def _claim_versions(cursor, stream: str, count: int, expected: str | int) -> tuple[int, int]:
    """Compare-and-set the stream's version; return (stream id, version after this append)."""
    category = category_of(stream)
    if expected == "any":
        cursor.execute(
            """
            INSERT INTO streams_stream (name, category, version, created_at, updated_at)
            VALUES (%s, %s, %s, now(), now())
            ON CONFLICT (name) DO UPDATE
               SET version = streams_stream.version + EXCLUDED.version, updated_at = now()
            RETURNING id, version
            """,
            [stream, category, count],
        )
        return cursor.fetchone()
    if expected == "no_stream" or expected == 0:
        cursor.execute(
            """
            INSERT INTO streams_stream (name, category, version, created_at, updated_at)
            VALUES (%s, %s, %s, now(), now())
            ON CONFLICT (name) DO NOTHING
            RETURNING id, version
            """,
            [stream, category, count],
        )
    elif expected == "exists":
        cursor.execute(
            "UPDATE streams_stream SET version = version + %s, updated_at = now() WHERE name = %s "
            "RETURNING id, version",
            [count, stream],
        )
    else:
        cursor.execute(
            "UPDATE streams_stream SET version = version + %s, updated_at = now() "
            "WHERE name = %s AND version = %s RETURNING id, version",
            [count, stream, expected],
        )
    row = cursor.fetchone()
    if row is None:
        cursor.execute("SELECT version FROM streams_stream WHERE name = %s", [stream])
        current = cursor.fetchone()
        raise WrongExpectedVersion(
            stream=stream, expected=expected, current_version=current[0] if current else 0
        )
    return row


def _json(value: Any) -> Any:
    # Django has psycopg hand jsonb over as text, for JSONField to decode.
    return json.loads(value) if isinstance(value, str) else value


def _recorded_result(stream: str, batch: list[NewEvent], ids: list[uuid.UUID]) -> AppendResult | None:
    """The original result when this batch was recorded before; None when none of it was.

    EventStoreDB's rule: all ids present is a retry and succeeds; some present is a client error.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, s.name, e.sequence, e.position, e.type, e.data
              FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
             WHERE e.id = ANY(%s)
            """,
            [ids],
        )
        found = {row[0]: row for row in cursor.fetchall()}
    if not found:
        return None
    problems: dict[str, list[str]] = {}
    for index, (event, event_id) in enumerate(zip(batch, ids, strict=True)):
        row = found.get(event_id)
        where = f"events[{index}].id"
        if row is None:
            problems[where] = [
                "is new, but other events of this batch were recorded before: a retry must resend exactly "
                "the original batch, and new events need a new batch"
            ]
        elif row[1] != stream:
            problems[where] = [f"was already recorded in stream {row[1]!r}"]
        elif row[4] != event.type or _json(row[5]) != event.data:
            problems[where] = ["was already recorded with a different type or data"]
    rows = [found[event_id] for event_id in ids if event_id in found]
    sequences = [row[2] for row in rows]
    if not problems and sequences != list(range(sequences[0], sequences[0] + len(sequences))):
        problems["events"] = ["these ids were recorded before, but not as one batch in this order"]
    if problems:
        raise InvalidAppend(problems)
    return AppendResult(
        stream=stream,
        version=sequences[-1],
        first_sequence=sequences[0],
        positions=[row[3] for row in rows],
        duplicate=True,
    )
