"""Reads of the event store. Every list is keyset paged: nothing here uses OFFSET on the log."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BigIntegerField, Func, Q, QuerySet, TextField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from streams.models import Event, Stream

DEFAULT_LIMIT = 100
# Events are loaded at most this many bytes (of data and metadata as JSON) at a time where a read goes
# through more of them than it keeps (a page's timeline, an export).
CHUNK_BYTES = 4 * 1024 * 1024


def settled_head() -> int:
    """Every position at or below this one is committed or never will be (migration streams/0006,
    streams/services.py says why). Its own statement: a statement's snapshot is taken when it starts, so
    a read must start after the settled head is known to see every commit below it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT replaydesk_settled_head()")
        return cursor.fetchone()[0]


# The first half of the append slots' advisory lock key (migration streams/0006).
APPEND_SLOT_LOCK_CLASS = 0x7270


@dataclass(frozen=True)
class OpenAppends:
    """Appends whose transactions are still open: while one is, readers of the global log wait below its
    first position, however much commits after it."""

    count: int
    oldest_seconds: float
    # Positions handed out above the settled head: what readers cannot read yet.
    unsettled_positions: int


def open_appends() -> OpenAppends:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*), coalesce(extract(epoch FROM now() - min(a.xact_start)), 0),
                   coalesce(pg_sequence_last_value(pg_get_serial_sequence('streams_event', 'position')), 0)
                   - replaydesk_settled_head()
              FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2
               AND l.mode = 'ExclusiveLock' AND l.granted
               -- Advisory locks belong to a database: another store on the same server is not ours.
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            [APPEND_SLOT_LOCK_CLASS],
        )
        count, oldest, unsettled = cursor.fetchone()
    return OpenAppends(count=count, oldest_seconds=float(oldest), unsettled_positions=max(0, unsettled))


def head() -> int:
    """The position of the last event a reader of the global log may go up to (0 for an empty log): the
    last committed event at or below the settled head. An event that commits later gets a higher
    position, so a reader that stops here never passes over one.

    One statement: its snapshot may predate a commit below the settled head, so the answer can be lower
    than it might be, never unsafe. A later statement bounded by it sees every commit at or below it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(max(position), 0) FROM streams_event"
            " WHERE position <= (SELECT replaydesk_settled_head())"
        )
        return cursor.fetchone()[0]


def _settled(events: QuerySet[Event]) -> QuerySet[Event]:
    return events.filter(position__lte=settled_head())


def next_position(*, after: int) -> int:
    """The first committed position after `after` (one index probe), or after + 1 when there is none."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(position) FROM streams_event WHERE position > %s", [after])
        found = cursor.fetchone()[0]
    return after + 1 if found is None else found


class Events(list):
    """Events in order; `cut` when a byte budget ended the read before its row limit (more follow)."""

    cut: bool = False


def _octets(field: str) -> Func:
    return Func(Cast(field, TextField()), function="octet_length", output_field=BigIntegerField())


def event_bytes() -> Func:
    """What an event weighs: its data and metadata as JSON text, in bytes. PostgreSQL says, so that a
    read chooses its events before it loads any of them."""
    return _octets("data") + _octets("metadata")


def _sized(candidates: QuerySet[Event]) -> list[tuple[int, int]]:
    """(position, bytes) of each candidate, in the candidates' order: small rows, whatever the events."""
    return list(candidates.values_list("position", event_bytes()))


# What a read of events never shows of their streams: left unloaded, a batch of 500 events is ≈18% cheaper
# to turn into objects (two timestamps and a number fewer to parse per event).
_UNREAD_STREAM_FIELDS = ("stream__version", "stream__created_at", "stream__updated_at")


def _load(positions: list[int], *, stream: Stream | None = None) -> list[Event]:
    """The events at these positions, in this order, each with its stream; events of one stream known
    to the caller are given that stream rather than an instance of it read again with each event."""
    if stream is None:
        found = Event.objects.select_related("stream").defer(*_UNREAD_STREAM_FIELDS)
    else:
        found = Event.objects.all()
    by_position = {event.position: event for event in found.filter(position__in=positions)}
    if stream is not None:
        for event in by_position.values():
            event.stream = stream
    return [by_position[position] for position in positions]


@dataclass(slots=True)
class StreamRef:
    id: int
    name: str
    category: str


@dataclass(slots=True)
class EventRow:
    """An event as a reader that only shows it needs it: the attributes of an Event and its stream's name,
    read as plain rows. Building 500 of these costs a fraction of 500 model instances with their stream
    (the subscription fetch's largest cost; bench/README.md, section 7). Never saved."""

    position: int
    event_id: uuid.UUID
    stream: StreamRef
    sequence: int
    type: str
    data: Any
    metadata: Any
    actor: str
    appended_by: str | None
    appended_via: str | None
    recorded_at: dt.datetime

    @property
    def stream_id(self) -> int:
        return self.stream.id


_ROWS_SQL = """
    SELECT e.position, e.id, e.stream_id, s.name, s.category, e.sequence, e.type, e.data, e.metadata,
           e.actor, e.appended_by, e.appended_via, e.recorded_at
      FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
     WHERE e.position = ANY(%s)
"""


def _load_rows(positions: list[int]) -> list[EventRow]:
    if not positions:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_ROWS_SQL, [positions])
        found = {}
        for position, id_, stream_id, name, category, *rest in cursor.fetchall():
            sequence, type_, data, metadata, actor, appended_by, appended_via, recorded_at = rest
            found[position] = EventRow(
                position,
                id_,
                StreamRef(stream_id, name, category),
                sequence,
                type_,
                jsonb_value(data),
                jsonb_value(metadata),
                actor,
                appended_by,
                appended_via,
                recorded_at,
            )
    return [found[position] for position in positions]


def jsonb_value(value: Any) -> Any:
    """A jsonb column read with a plain cursor: Django has psycopg hand jsonb over as text, for
    JSONField to decode."""
    return json.loads(value) if isinstance(value, str) else value


def load_within(candidates: QuerySet[Event], *, max_bytes: int | None, rows: bool = False) -> Events:
    """The candidates (ordered and sliced), loaded; with `max_bytes`, only the leading ones whose data and
    metadata fit in it (always the first, so a reader gets on), and `cut` when some were left. With
    `rows`, as EventRow (for readers that only show them) instead of Event instances."""
    if max_bytes is None:
        return Events(candidates)
    kept: list[int] = []
    used = 0
    sized = _sized(candidates)
    for position, size in sized:
        if kept and used + size > max_bytes:
            break
        kept.append(position)
        used += size
    events = Events(_load_rows(kept) if rows else _load(kept))
    events.cut = len(kept) < len(sized)
    return events


def iter_within(
    candidates: QuerySet[Event], *, chunk_bytes: int | None = None, stream: Stream | None = None
) -> Iterator[Event]:
    """Every candidate (ordered and sliced), in order, loaded at most `chunk_bytes` at a time (or one
    event): a caller that keeps only a little of each holds only one chunk. `stream`: the candidates are
    all of that stream (a stream's page)."""
    for chunk in _chunks(candidates, chunk_bytes):
        yield from _load(chunk, stream=stream)


def iter_data_within(
    candidates: QuerySet[Event], *, chunk_bytes: int | None = None
) -> Iterator[tuple[int, Any]]:
    """(sequence, data) of every candidate, in order, in iter_within's chunks: for a reader that needs
    nothing else of the events, such as a fold of those it does not show (no model instances, no
    metadata, no times to parse: a twelfth of loading the events)."""
    for chunk in _chunks(candidates, chunk_bytes):
        if not chunk:
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT position, sequence, data FROM streams_event WHERE position = ANY(%s)", [chunk]
            )
            found = {position: (sequence, data) for position, sequence, data in cursor.fetchall()}
        for position in chunk:
            sequence, data = found[position]
            yield sequence, jsonb_value(data)


def _chunks(candidates: QuerySet[Event], chunk_bytes: int | None) -> Iterator[list[int]]:
    """The candidates' positions, in order, in runs whose events weigh at most `chunk_bytes` together
    (default CHUNK_BYTES) or are one event."""
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    chunk: list[int] = []
    used = 0
    for position, size in _sized(candidates):
        if chunk and used + size > chunk_bytes:
            yield chunk
            chunk, used = [], 0
        chunk.append(position)
        used += size
    yield chunk


def get_stream(*, name: str) -> Stream | None:
    return Stream.objects.filter(name=name).first()


@dataclass(frozen=True)
class StreamSummary:
    stream: Stream
    first_recorded_at: dt.datetime | None
    last_recorded_at: dt.datetime | None


def stream_summary(*, stream: Stream) -> StreamSummary:
    # Two probes of the (stream, sequence) index, whatever the stream's length.
    ends = Event.objects.filter(stream=stream, sequence__in=[1, stream.version])
    times = dict(ends.values_list("sequence", "recorded_at"))
    return StreamSummary(
        stream=stream, first_recorded_at=times.get(1), last_recorded_at=times.get(stream.version)
    )


# The streams list's orders. Only orders an index serves are offered, so that a page stays an index
# range at a million streams:
# - "natural" (the page's default): names with their numbers read as numbers (user-2 before user-10),
#   by the sort key replaydesk_natural_key(name) and its indexes, alone and after category (migration
#   0014); the name never changes, so these indexes cost appends nothing (the row's updates stay HOT).
# - "name": byte order, the unique index on name (the API's order and cursor).
# - "recent": the last event first, served by the log's own primary key, walked back from the head
#   (recently_active_streams).
# Not offered: by event count (version) or by the stream row's updated_at. Both change on every append;
# an index on either would be written by every append and end the stream row's HOT updates.


class NaturalKey(Func):
    """The name's natural sort key, as the indexes of migration 0014 have it."""

    function = "replaydesk_natural_key"
    output_field = TextField()


STREAM_ORDERS = ("natural", "name", "recent")
# Above every character of a key: the keys that start with a text sort before text + this (the natural
# key is compared byte by byte, the stream name's collation being C).
NATURAL_KEY_END = "\U0010ffff"


def natural_key_start(prefix: str) -> str:
    """The start that every natural key of a name beginning with `prefix` shares: the prefix's runs as
    replaydesk_natural_key encodes them (a run of digits as its length in three digits, then the digits
    without leading zeros), less a final run of digits, which a longer name may continue."""
    runs = re.findall(r"[0-9]+|[^0-9]+", prefix)
    if runs and runs[-1][0] in "0123456789":
        runs.pop()
    return "".join(
        f"{len(run.lstrip('0')):03d}{run.lstrip('0')}" if run[0] in "0123456789" else run for run in runs
    )


def list_streams(
    *,
    prefix: str | None = None,
    category: str | None = None,
    source: str | None = None,
    after: str | None = None,
    limit: int = 50,
    order: str = "name",
) -> list[Stream]:
    """Streams in name order ("name": bytes; "natural": numbers as numbers), after the cursor name
    `after`; `source`: those copied from that source."""
    streams = _filtered_streams(prefix=prefix, category=category, source=source).select_related("source")
    key = "name"
    cursor: Any = after
    if order == "natural":
        streams, key = streams.alias(natural=NaturalKey("name")), "natural"
        cursor = NaturalKey(Value(after, output_field=TextField()))
        start = natural_key_start(prefix or "")
        if start:
            # The prefix's names are this range of the natural index: the walk starts at it and stops
            # after it, rather than reading every name ordered before it (at a million streams, a
            # prefix near the end of the order read 900,000 names to find 50).
            streams = streams.filter(natural__gte=start, natural__lt=start + NATURAL_KEY_END)
    if after is not None:
        streams = streams.filter(**{f"{key}__gt": cursor})
    return list(streams.order_by(key)[:limit])


def _filtered_streams(
    *, prefix: str | None = None, category: str | None = None, source: str | None = None
) -> QuerySet[Stream]:
    streams = Stream.objects.all()
    if prefix:
        streams = streams.filter(name__startswith=prefix)
    if category:
        streams = streams.filter(category=category)
    if source:
        streams = streams.filter(source__name=source)
    return streams


# Beyond this many, a filtered total says "over": counting a million names to print one figure is not
# worth a page's wait.
COUNT_MAX = 100_000


@dataclass(frozen=True)
class StreamTotal:
    count: int
    # "exact", "over" (at least count), or "about" (the table's statistics, for the whole store).
    kind: str = "exact"


def count_streams(
    *, prefix: str | None = None, category: str | None = None, source: str | None = None
) -> StreamTotal:
    """How many streams the list's filters find, bounded: an index-only count of at most COUNT_MAX
    (the name or (category, name) index), or for no filter at all, past COUNT_MAX, PostgreSQL's
    estimate of the table's rows, which ANALYZE keeps close."""
    streams = _filtered_streams(prefix=prefix, category=category, source=source)
    found = streams.values("id")[: COUNT_MAX + 1].count()
    if found <= COUNT_MAX:
        return StreamTotal(found)
    if not (prefix or category or source):
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'streams_stream'::regclass")
            estimate = cursor.fetchone()[0]
        if estimate > COUNT_MAX:
            return StreamTotal(estimate, "about")
    return StreamTotal(COUNT_MAX, "over")


# Events of the log one page of the "recent" order reads at most, walking back from its cursor.
RECENT_SCAN = 20_000


def recently_active_streams(
    *,
    prefix: str | None = None,
    category: str | None = None,
    source: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[tuple[Stream, int]], int | None]:
    """Streams by their last event, newest first, whose last event lies before position `before`:
    (stream, its last event's position) and the cursor of the next page (None at the log's start).

    The log's primary key is walked back from `before` over at most RECENT_SCAN events (a hot stream
    fills many of them); of the streams they name, those whose last event is in the window are the
    page. A page can so hold fewer than `limit` streams and still have a next one."""
    filtered = _filtered_streams(prefix=prefix, category=category, source=source).values("id")
    sql, params = filtered.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH window_ AS (
                SELECT stream_id, position FROM streams_event
                 WHERE position < %s ORDER BY position DESC LIMIT %s
            )
            SELECT e.stream_id, e.position,
                   (SELECT min(position) FROM window_), (SELECT count(*) FROM window_)
              FROM (SELECT DISTINCT stream_id FROM window_) w
              JOIN streams_stream s ON s.id = w.stream_id
              JOIN streams_event e ON e.stream_id = s.id AND e.sequence = s.version
             WHERE e.position < %s AND s.id IN ({sql})
             ORDER BY e.position DESC
             LIMIT %s
            """,
            [before or 2**63 - 1, RECENT_SCAN, before or 2**63 - 1, *params, limit + 1],
        )
        rows = cursor.fetchall()
        if not rows:
            cursor.execute(
                "SELECT min(position), count(*) FROM (SELECT position FROM streams_event"
                " WHERE position < %s ORDER BY position DESC LIMIT %s) w",
                [before or 2**63 - 1, RECENT_SCAN],
            )
            oldest, scanned = cursor.fetchone()
            return [], (oldest if scanned == RECENT_SCAN else None)
    oldest, scanned = rows[0][2], rows[0][3]
    streams = Stream.objects.select_related("source").in_bulk([row[0] for row in rows[:limit]])
    page = [(streams[stream_id], position) for stream_id, position, _, _ in rows[:limit]]
    if len(rows) > limit:
        return page, page[-1][1]
    return page, (oldest if scanned == RECENT_SCAN else None)


def last_recorded_at(*, streams: list[Stream]) -> dict[int, dt.datetime]:
    """Time of each stream's last event, by stream id (one index probe per stream)."""
    if not streams:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.id, e.recorded_at
              FROM unnest(%s::bigint[], %s::bigint[]) AS s(id, version)
              JOIN streams_event e ON e.stream_id = s.id AND e.sequence = s.version
            """,
            [[s.id for s in streams], [s.version for s in streams]],
        )
        return dict(cursor.fetchall())


def stream_events(
    *, stream: Stream, from_sequence: int | None = None, direction: str = "forward"
) -> QuerySet[Event]:
    """Events of one stream from `from_sequence` (inclusive), forward or backward, unloaded."""
    events = Event.objects.filter(stream=stream)
    if direction == "backward":
        if from_sequence is not None:
            events = events.filter(sequence__lte=from_sequence)
        return events.order_by("-sequence")
    if from_sequence is not None:
        events = events.filter(sequence__gte=from_sequence)
    return events.order_by("sequence")


def read_stream(
    *,
    stream: Stream,
    from_sequence: int | None = None,
    direction: str = "forward",
    limit: int = DEFAULT_LIMIT,
    max_bytes: int | None = None,
) -> Events:
    """Events of one stream from `from_sequence` (inclusive), forward or backward: `limit` of them, or
    fewer when `max_bytes` would be passed (see load_within)."""
    candidates = stream_events(stream=stream, from_sequence=from_sequence, direction=direction)[:limit]
    found = load_within(candidates, max_bytes=max_bytes)
    # Every event is of the stream already at hand: one Stream object instead of `limit`.
    for event in found:
        event.stream = stream
    return found


@dataclass(frozen=True)
class LogFilter:
    types: tuple[str, ...] = ()
    # Who the events claim did them (the actor column), and who the store recorded appending them.
    actor: str | None = None
    appended_by: str | None = None
    category: str | None = None
    # Any of these categories (a consumer's subscription); `category` is the API's single one.
    categories: tuple[str, ...] = ()
    stream: str | None = None
    correlation_id: uuid.UUID | None = None
    recorded_after: dt.datetime | None = None
    recorded_before: dt.datetime | None = None
    # JSON containment on data, one entry per condition, each a tuple of alternatives:
    # ({"resource": "issueABC"},) matches events whose data holds that pair.
    data: tuple[tuple[dict[str, Any], ...], ...] = ()

    @property
    def is_empty(self) -> bool:
        return self == LogFilter()


def filter_events(events: QuerySet[Event], log_filter: LogFilter) -> QuerySet[Event]:
    if log_filter.types:
        events = events.filter(type__in=log_filter.types)
    if log_filter.actor:
        events = events.filter(actor=log_filter.actor)
    if log_filter.appended_by:
        events = events.filter(appended_by=log_filter.appended_by)
    if log_filter.category:
        events = events.filter(category=log_filter.category)
    if log_filter.categories:
        events = events.filter(category__in=log_filter.categories)
    if log_filter.stream:
        events = events.filter(stream__name=log_filter.stream)
    if log_filter.correlation_id:
        events = events.annotate(correlation=KT("metadata__correlation_id")).filter(
            correlation=str(log_filter.correlation_id)
        )
    if log_filter.recorded_after:
        events = events.filter(recorded_at__gte=log_filter.recorded_after)
    if log_filter.recorded_before:
        events = events.filter(recorded_at__lt=log_filter.recorded_before)
    for alternatives in log_filter.data:
        either = Q()
        for document in alternatives:
            either |= Q(data__contains=document)
        events = events.filter(either)
    return events


def log_events(
    *, after_position: int = 0, log_filter: LogFilter | None = None, up_to_position: int | None = None
) -> QuerySet[Event]:
    """The global log in position order after `after_position`, filtered, never past the settled head:
    a tail that goes on from the last position it got misses nothing. A caller that bounds the read
    itself passes `up_to_position`, which must come from head() (a sink's window does)."""
    events = Event.objects.filter(position__gt=after_position).select_related("stream")
    if up_to_position is None:
        events = _settled(events)
    else:
        events = events.filter(position__lte=up_to_position)
    return filter_events(events, log_filter or LogFilter()).order_by("position")


def read_all(
    *,
    after_position: int = 0,
    log_filter: LogFilter | None = None,
    limit: int = DEFAULT_LIMIT,
    up_to_position: int | None = None,
    max_bytes: int | None = None,
) -> Events:
    """`limit` events of log_events(), or fewer when `max_bytes` would be passed (see load_within)."""
    candidates = log_events(
        after_position=after_position, log_filter=log_filter, up_to_position=up_to_position
    )
    return load_within(candidates[:limit], max_bytes=max_bytes)


def log_events_backward(
    *, before_position: int | None = None, log_filter: LogFilter | None = None
) -> QuerySet[Event]:
    """The global log newest first, before `before_position` (the console's view of the log), from the
    settled head down, so that a live view tailing after its newest event misses nothing."""
    events = _settled(Event.objects.all()).select_related("stream")
    if before_position is not None:
        events = events.filter(position__lt=before_position)
    return filter_events(events, log_filter or LogFilter()).order_by("-position")


def get_event(*, event_id: uuid.UUID) -> Event | None:
    return Event.objects.select_related("stream").filter(event_id=event_id).first()


def data_containment(path: str, value: str) -> tuple[dict[str, Any], ...]:
    """`data.a.b=x` as containment documents: {"a": {"b": "x"}}, and also x as JSON when it is a
    number, true, false or null (a query string cannot say which was meant)."""
    values: list[Any] = [value]
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, float) and not math.isfinite(parsed):
        parsed = value  # NaN, Infinity, 1e999: Python reads them, PostgreSQL's JSON has no such number
    if parsed != value and not isinstance(parsed, dict | list | str):
        values.append(parsed)
    documents = []
    for leaf in values:
        document: Any = leaf
        for key in reversed(path.split(".")):
            document = {key: document}
        documents.append(document)
    return tuple(documents)
