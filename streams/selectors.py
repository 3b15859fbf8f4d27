"""Reads of the event store. Every list is keyset paged: nothing here uses OFFSET on the log."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KT

from streams.models import Event, Stream

DEFAULT_LIMIT = 100


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


def list_streams(
    *, prefix: str | None = None, category: str | None = None, after: str | None = None, limit: int = 50
) -> list[Stream]:
    """Streams in name order, after the cursor name `after`."""
    streams = Stream.objects.order_by("name")
    if prefix:
        streams = streams.filter(name__startswith=prefix)
    if category:
        streams = streams.filter(category=category)
    if after is not None:
        streams = streams.filter(name__gt=after)
    return list(streams[:limit])


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


def read_stream(
    *,
    stream: Stream,
    from_sequence: int | None = None,
    direction: str = "forward",
    limit: int = DEFAULT_LIMIT,
) -> list[Event]:
    """Events of one stream from `from_sequence` (inclusive), forward or backward."""
    events = Event.objects.filter(stream=stream)
    if direction == "backward":
        if from_sequence is not None:
            events = events.filter(sequence__lte=from_sequence)
        found = list(events.order_by("-sequence")[:limit])
    else:
        if from_sequence is not None:
            events = events.filter(sequence__gte=from_sequence)
        found = list(events.order_by("sequence")[:limit])
    # Every event is of the stream already at hand: no join, and one Stream object instead of `limit`.
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
        events = events.filter(stream__category=log_filter.category)
    if log_filter.categories:
        events = events.filter(stream__category__in=log_filter.categories)
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


def read_all(
    *,
    after_position: int = 0,
    log_filter: LogFilter | None = None,
    limit: int = DEFAULT_LIMIT,
    up_to_position: int | None = None,
) -> list[Event]:
    """The global log in position order after `after_position`, filtered, never past the settled head:
    a tail that goes on from the last position it got misses nothing. A caller that bounds the read
    itself passes `up_to_position`, which must come from head() (a sink's window does)."""
    events = Event.objects.filter(position__gt=after_position).select_related("stream")
    if up_to_position is None:
        events = _settled(events)
    else:
        events = events.filter(position__lte=up_to_position)
    events = filter_events(events, log_filter or LogFilter())
    return list(events.order_by("position")[:limit])


def read_all_backward(
    *, before_position: int | None = None, log_filter: LogFilter | None = None, limit: int = DEFAULT_LIMIT
) -> list[Event]:
    """The global log newest first, before `before_position` (the console's view of the log), from the
    settled head down, so that a live view tailing after its newest event misses nothing."""
    events = _settled(Event.objects.all()).select_related("stream")
    if before_position is not None:
        events = events.filter(position__lt=before_position)
    events = filter_events(events, log_filter or LogFilter())
    return list(events.order_by("-position")[:limit])


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
