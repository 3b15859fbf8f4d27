"""Writes to the event store.

How an append keeps its promises (docs/architecture.md, The store's guarantees):
- per-stream order: a compare-and-set on streams_stream.version serialises appends to one stream;
- global order: an append takes an "append slot" before it draws positions (a transaction-scoped
  advisory lock, one of 64, held to commit) and records in the slot's floor a position below all it will
  draw. Readers of the global log stop at the settled head (`replaydesk_settled_head()`, migration
  streams/0006): the last position handed out, or the lowest floor of a slot held now if that is lower.
  Why no reader can pass over an event that commits later with a lower position p: the head H is read
  before the slots are tested, and the writer of p took its slot before drawing p. If p ≤ H, p was drawn
  before H was read, so the slot was already held; the reader then either finds it free (the writer
  has finished, and its commit is visible) or held with a floor below p, so the head stays below p.
  Writers never wait for each other here (slots are many), so their commits share fsyncs, and the
  NOTIFY that wakes consumers is sent after the commit, outside the writers' transactions (a NOTIFY
  inside one serialises every commit in the database);
- idempotency: event ids are unique; a retry whose ids are all recorded gets the original result.

Who appended each event is recorded as the store authenticated them (core/principals.py:
`appended_by`, `appended_via`), from whoever is acting where the append is called, never from the batch;
the actor the event claims (metadata.actor) is kept apart, in `actor`.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core import principals
from streams import selectors, wakeups
from streams.validation import (
    InvalidAppend,
    NewEvent,
    ReusedEventIds,
    StreamFromSource,
    WrongExpectedVersion,
    category_of,
    json_text,
    parse_append,
)


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
    audit_trail: bool = False,
) -> AppendResult:
    """Append a batch to one stream atomically.

    expected_version: "any", "no_stream", "exists", or N (the stream's current version; 0 = no events).
    actor: who the events say did them when their metadata names no actor (the `actor` column).
    The appender recorded is whoever is acting (core.principals.current(); NobodyActing when nobody is).
    audit_trail: only the console's own audit (streams.audit.record) may append to its category.
    Raises InvalidAppend (bad input or a partial retry) or WrongExpectedVersion; in both cases nothing
    is written.

    Called inside a caller's transaction, the append commits with it; keep that transaction short:
    readers of the global log (consumers, replays, tails) wait at its first position until it ends.
    """
    raw = list(events) if isinstance(events, list | tuple) else events
    appender = principals.current()
    stream, batch, expected = parse_append(
        stream=stream, events=raw, expected_version=expected_version, audit_trail=audit_trail
    )
    try:
        return _append(stream, batch, expected, actor, appender)
    except (IntegrityError, WrongExpectedVersion):
        # A retry of a recorded batch fails on its ids (or its expected version, which has moved on):
        # it gets the original result. Asked only then, so a first append costs no extra read.
        if any(event.id is not None for event in batch):
            earlier = _recorded_result(stream, batch, [event.id for event in batch])
            if earlier is not None:
                return earlier
        raise


# How each expected version claims the stream's next sequences: a compare-and-set on its version that
# returns no row when the expectation does not hold, or when the stream is copied from a source.
_CLAIMS = {
    "any": """
        INSERT INTO streams_stream (name, category, version, created_at, updated_at)
        VALUES (%(stream)s, %(category)s, %(count)s, now(), now())
        ON CONFLICT (name) DO UPDATE
           SET version = streams_stream.version + EXCLUDED.version, updated_at = now()
         WHERE streams_stream.source_id IS NULL""",
    "no_stream": """
        INSERT INTO streams_stream (name, category, version, created_at, updated_at)
        VALUES (%(stream)s, %(category)s, %(count)s, now(), now())
        ON CONFLICT (name) DO NOTHING""",
    "exists": """
        UPDATE streams_stream SET version = version + %(count)s, updated_at = now()
         WHERE name = %(stream)s AND source_id IS NULL""",
    "version": """
        UPDATE streams_stream SET version = version + %(count)s, updated_at = now()
         WHERE name = %(stream)s AND version = %(expected)s AND source_id IS NULL""",
}
# One statement, one round trip: claim the sequences (which locks the stream's row), then take an
# append slot (in the claim's RETURNING, so only when the claim held), then insert the events, whose
# positions are drawn after the slot is held.
_APPEND = """
    WITH claimed AS (
        {claim}
        RETURNING id, version, replaydesk_append_slot() AS slot
    ), appended AS (
        INSERT INTO streams_event (stream_id, category, sequence, id, type, data, metadata, actor,
                                   appended_by, appended_via, recorded_at)
        SELECT c.id, %(category)s::text, c.version - %(count)s + e.ord,
               COALESCE((e.doc->>'i')::uuid, gen_random_uuid()), e.doc->>'t', e.doc->'d', e.doc->'m',
               e.doc->>'a', %(appended_by)s, %(appended_via)s, clock_timestamp()
          FROM claimed c, jsonb_array_elements(%(batch)s::jsonb) WITH ORDINALITY AS e(doc, ord)
         ORDER BY e.ord
        RETURNING position, sequence
    )
    SELECT position, sequence FROM appended ORDER BY sequence
"""


def _append(
    stream: str,
    batch: list[NewEvent],
    expected: str | int,
    actor: str,
    appender: principals.Principal,
) -> AppendResult:
    count = len(batch)
    mode = "no_stream" if expected == 0 else expected if isinstance(expected, str) else "version"
    claim = _CLAIMS[mode]
    params = {
        "stream": stream,
        "category": category_of(stream),
        "count": count,
        "expected": expected,
        "batch": _batch_document(batch, actor),
        "appended_by": appender.name,
        "appended_via": appender.via,
    }
    # One statement is one transaction: outside a caller's transaction it runs in autocommit, one round
    # trip (an error takes all of it back); inside one, in a savepoint, so that a failed append leaves
    # the caller's transaction usable (to look up a retry's original result, say).
    inside = connection.in_atomic_block
    with transaction.atomic() if inside else contextlib.nullcontext(), connection.cursor() as cursor:
        # Prepared (parsed and planned once per connection, four statements at most): parsing and
        # planning this statement cost about as much as running it (console/settings.py).
        with connection.wrap_database_errors:
            cursor.cursor.execute(_APPEND.format(claim=claim), params, prepare=True)
        rows = cursor.fetchall()
        if not rows:
            cursor.execute(
                "SELECT s.version, src.name FROM streams_stream s"
                " LEFT JOIN streams_source src ON src.id = s.source_id WHERE s.name = %s",
                [stream],
            )
            current = cursor.fetchone()
            if current and current[1] is not None:
                raise StreamFromSource(stream=stream, source=current[1])
            raise WrongExpectedVersion(
                stream=stream, expected=expected, current_version=current[0] if current else 0
            )
    _notify_after_commit(rows[-1][0], inside)
    version = rows[-1][1]
    return AppendResult(
        stream=stream, version=version, first_sequence=version - count + 1, positions=[row[0] for row in rows]
    )


def _notify_after_commit(last_position: int, inside: bool) -> None:
    """Wake the listeners once the append is visible: at once in autocommit, at the caller's commit
    otherwise (never, if it rolls back). streams/wakeups.py says why not inside the transaction."""
    if inside:
        transaction.on_commit(lambda: wakeups.notify(last_position), robust=True)
    else:
        wakeups.notify(last_position)


def _batch_document(batch: list[NewEvent], actor: str) -> str:
    """The batch as one JSON document, one parameter however many events (an array parameter per
    column costs a quoting pass per element). Data and metadata go in as validation encoded them; an
    event without an id is given one by PostgreSQL."""
    parts = []
    for event in batch:
        who, data, metadata = _encoded_event(event, actor)
        # A type is letters, digits and _ . : - (validation): it needs no escaping.
        part = f'{{"t":"{event.type}","a":{json_text(who)},"m":{metadata},"d":{data}'
        parts.append(part + (f',"i":"{event.id}"}}' if event.id is not None else "}"))
    return "[" + ",".join(parts) + "]"


def _encoded_event(event: NewEvent, actor: str) -> tuple[str, str, str]:
    """Who the event says did it, and its data and metadata as JSON text: as validation encoded them, the
    metadata with the caller's actor when it names none."""
    who = str(event.metadata.get("actor") or actor or "")
    metadata = event.metadata_json if event.metadata_json is not None else json_text(event.metadata)
    if who and not event.metadata.get("actor"):
        # The actor the event is appended for, added last: of repeated keys, jsonb keeps the last.
        metadata = ("{" if metadata == "{}" else metadata[:-1] + ",") + f'"actor":{json_text(who)}}}'
    data = event.data_json if event.data_json is not None else json_text(event.data)
    return who, data, metadata


def _as_stored(value: Any) -> Any:
    """JSON as jsonb compares it: numbers by their decimal value. A float such as 1e300 comes back from
    jsonb as the integer 10**300, which Python would call different."""
    if isinstance(value, dict):
        return {key: _as_stored(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_stored(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(repr(value))
    return value


def _sent(event: NewEvent) -> Any:
    """The event's data as it was written: a UUID or an enum's member in it is its JSON text or value."""
    return json.loads(event.data_json) if event.data_json is not None else event.data


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
        elif row[4] != event.type or _as_stored(selectors.jsonb_value(row[5])) != _as_stored(_sent(event)):
            problems[where] = ["was already recorded with a different type or data"]
    rows = [found[event_id] for event_id in ids if event_id in found]
    sequences = [row[2] for row in rows]
    if not problems and sequences != list(range(sequences[0], sequences[0] + len(sequences))):
        problems["events"] = ["these ids were recorded before, but not as one batch in this order"]
    if problems:
        raise ReusedEventIds(problems)
    return AppendResult(
        stream=stream,
        version=sequences[-1],
        first_sequence=sequences[0],
        positions=[row[3] for row in rows],
        duplicate=True,
    )


@dataclass(frozen=True)
class ImportBatch:
    """Events for one stream in an import; each event may carry its original `recorded_at`."""

    stream: str
    events: list[dict[str, Any]]
    expected_version: str | int = "any"


@dataclass(frozen=True)
class ImportResult:
    events: int
    streams: int
    last_position: int


def import_events(*, batches: Sequence[ImportBatch], actor: str = "") -> ImportResult:
    """Append many streams' events in one transaction with COPY: for loading history (a migration from
    another store, the demo), where one append call per stream would take minutes.

    Every batch is checked as an append would be, expected versions included, and the whole import is
    written or none of it. Event ids must be new: an import is not a retry. Events may keep the time
    they were first recorded (`recorded_at`, ISO 8601); by default it is now. The appender recorded is
    whoever is acting (core.principals.current()), as for an append.
    """
    appender = principals.current()
    errors: dict[str, list[str]] = {}
    parsed: list[tuple[str, list[NewEvent], str | int, list[Any]]] = []
    for index, batch in enumerate(batches):
        try:
            stream, events, expected = parse_append(
                stream=batch.stream,
                events=[{k: v for k, v in e.items() if k != "recorded_at"} for e in batch.events],
                expected_version=batch.expected_version,
            )
        except InvalidAppend as exc:
            errors.update({f"batches[{index}].{name}": messages for name, messages in exc.errors.items()})
            continue
        parsed.append((stream, events, expected, [e.get("recorded_at") for e in batch.events]))
    if errors:
        raise InvalidAppend(errors)
    if not parsed:
        return ImportResult(events=0, streams=0, last_position=0)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            return _import(cursor, parsed, actor, appender)
    except (IntegrityError, psycopg.errors.UniqueViolation) as exc:  # COPY raises psycopg's own
        message = "an event id is recorded already; an import only adds new events"
        raise InvalidAppend({"events": [message]}) from exc


def _import(cursor, parsed, actor: str, appender: principals.Principal) -> ImportResult:
    names = list(dict.fromkeys(stream for stream, _, _, _ in parsed))
    cursor.execute(
        "SELECT s.name, s.id, s.version, src.name FROM streams_stream s"
        " LEFT JOIN streams_source src ON src.id = s.source_id"
        " WHERE s.name = ANY(%s) ORDER BY s.name FOR UPDATE OF s",
        [names],
    )
    existing = {}
    for name, stream_id, version, source in cursor.fetchall():
        if source is not None:
            raise StreamFromSource(stream=name, source=source)
        existing[name] = (stream_id, version)
    versions = {name: existing.get(name, (None, 0))[1] for name in names}
    first_sequences = []
    for stream, events, expected, _ in parsed:
        current = versions[stream]
        if not _expected_holds(expected, current):
            raise WrongExpectedVersion(stream=stream, expected=expected, current_version=current)
        first_sequences.append(current + 1)
        versions[stream] = current + len(events)
    new = [name for name in names if name not in existing]
    if new:
        cursor.execute(
            """
            INSERT INTO streams_stream (name, category, version, created_at, updated_at)
            SELECT name, category, version, now(), now()
              FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS s(name, category, version)
            RETURNING name, id
            """,
            [new, [category_of(name) for name in new], [versions[name] for name in new]],
        )
        existing.update({name: (stream_id, 0) for name, stream_id in cursor.fetchall()})
    old = [name for name in names if name not in new]
    if old:
        cursor.execute(
            """
            UPDATE streams_stream s SET version = v.version, updated_at = now()
              FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, version) WHERE s.id = v.id
            """,
            [[existing[name][0] for name in old], [versions[name] for name in old]],
        )

    def rows():
        for (stream, events, _, times), first in zip(parsed, first_sequences, strict=True):
            stream_id = existing[stream][0]
            category = category_of(stream)
            for offset, (event, recorded_at) in enumerate(zip(events, times, strict=True)):
                who, data, metadata = _encoded_event(event, actor)
                yield (
                    stream_id,
                    category,
                    first + offset,
                    event.id or uuid.uuid4(),
                    event.type,
                    data,
                    metadata,
                    who,
                    appender.name,
                    appender.via,
                    recorded_at or timezone.now(),
                )

    count, last = copy_events(cursor, rows())
    if count >= 10_000:
        # The planner's statistics would otherwise describe the store before the import for a while.
        cursor.execute("ANALYZE streams_event")
        cursor.execute("ANALYZE streams_stream")
    return ImportResult(events=count, streams=len(names), last_position=last)


_COPY_EVENTS = (
    "COPY streams_event (stream_id, category, sequence, id, type, data, metadata, actor, appended_by,"
    " appended_via, recorded_at) FROM STDIN"
)


def copy_events(cursor, rows: Iterable[tuple]) -> tuple[int, int]:
    """Write events with COPY, after taking an append slot (see the module's docstring): rows of
    (stream_id, category, sequence, id, type, data JSON, metadata JSON, actor, appended_by, appended_via,
    recorded_at). The caller has locked their streams' rows and set their versions, in the same
    transaction; the log's followers are woken when it commits. The number written, and the log's last
    position."""
    cursor.execute("SELECT replaydesk_append_slot()")
    count = 0
    with cursor.cursor.copy(_COPY_EVENTS) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    cursor.execute("SELECT max(position) FROM streams_event")
    last = cursor.fetchone()[0]
    _notify_after_commit(last, inside=True)
    return count, last


def _expected_holds(expected: str | int, current: int) -> bool:
    if expected == "any":
        return True
    if expected in ("no_stream", 0):
        return current == 0
    if expected == "exists":
        return current > 0
    return current == expected
