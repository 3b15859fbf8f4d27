"""Lag of consumers, and their status (checkpoint, lag, rate, health): selectors that only read.

A lag figure counts the events a consumer follows after its checkpoint, never `head - checkpoint`:
positions have holes where appends rolled back, and a consumer skips the events it does not follow.
The count reads at most LAG_WINDOW positions after the checkpoint, so it costs the same whatever the
lag: when the head is within the window the count is exact; beyond it, the events counted in the window
are scaled to the whole distance to the head, and the figure says it is an estimate (`lag_exact`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone
from psycopg import sql
from psycopg.types.json import Jsonb

from streams import consumer_kinds, health, selectors
from streams.consumer_kinds import checkpoint_of, follows
from streams.health import HEALTHS as HEALTHS  # the API's and the metrics' list of them
from streams.models import Consumer, Stream

# The rate is measured against the oldest sample of the last minute, if it is at least this old.
RATE_WINDOW = dt.timedelta(seconds=60)
RATE_MIN_SPAN = dt.timedelta(seconds=5)
# Positions after a checkpoint that a lag count reads: exact within them, an estimate beyond.
LAG_WINDOW = 2_000
# Positions a rate's count reads from where its sample's checkpoint was: a rate is a mean over about a
# minute, and beyond these positions it is the density they show, scaled to the whole range. Smaller
# than the lag's window: the dashboard counts a rate for each consumer beside its lag, and the events
# read are what its count costs (bench/README.md, section 4).
RATE_WINDOW_POSITIONS = 500


@dataclass(frozen=True)
class ConsumerStatus:
    name: str
    kind: str
    state: str
    checkpoint: int
    head: int
    lag_events: int
    # False when lag_events is an estimate (the head is more than LAG_WINDOW positions ahead).
    lag_exact: bool
    lag_seconds: float
    # Events (that it follows) applied per second over about the last minute; None without samples.
    rate: float | None
    health: str
    last_error: str
    last_error_at: dt.datetime | None
    progressed_at: dt.datetime | None
    lag_threshold: int
    stall_seconds: int


@dataclass(frozen=True)
class StreamLag:
    stream: str
    version: int
    # The stream's last sequence at or before the consumer's checkpoint.
    applied_sequence: int
    lag_events: int


@dataclass(frozen=True)
class ConsumerStreamLag:
    name: str
    kind: str
    checkpoint: int
    applied_sequence: int
    lag_events: int


# --- counting


@dataclass(frozen=True)
class _Range:
    """The events a consumer follows after `after`, up to `up_to` (the head when None). With `rated`
    (a consumer's primary key) instead of `after`, after the checkpoint of that consumer's oldest lag
    sample of the rate window, if it has one."""

    subscription: selectors.LogFilter
    after: int | None
    up_to: int | None
    rated: int | None = None

    @property
    def width(self) -> int:
        """The positions its count reads: exact within them, scaled beyond."""
        return min(LAG_WINDOW, RATE_WINDOW_POSITIONS) if self.rated is not None else LAG_WINDOW


@dataclass(frozen=True)
class _Count:
    count: int
    exact: bool
    oldest: dt.datetime | None
    # The rate window's sample a rated range started from; None for the others, and for a rated range
    # whose consumer has no sample there (then nothing was counted).
    sampled_at: dt.datetime | None = None


def _count(ranges: list[_Range], *, now: dt.datetime) -> tuple[list[_Count], int | None]:
    """For each range: (events it follows in the range, whether that is exact, the oldest one's time),
    reading at most its width of positions (LAG_WINDOW, or a rate's RATE_WINDOW_POSITIONS): beyond them
    the count is the window's, scaled to the whole range. The oldest is the window's oldest, which is
    the range's unless times run backwards across it. Every range in one statement, with the head that
    the ranges without an end of their own went up to (None when none of them needed it): read in that
    statement, so no count goes past the head it shows.

    Each window starts at the next event there is (a run of holes left by rolled-back appends costs
    nothing), and is one range of the log's primary key filtered by type and by category, which each
    event carries (streams/migrations/0017): no stream is looked up. The LIMIT is never reached (a
    window holds at most LAG_WINDOW positions) but tells the planner so: without it the planner costs
    each window as a third of the log, and past jit_above_cost PostgreSQL compiles the statement on
    every call.

    One consumer's statement is prepared (planning it cost 1-3 ms, as much as a short count). What
    shapes its plan is in its text, not in parameters: the window's width, the types and the categories
    (quoted by psycopg), so the plan PostgreSQL keeps for it after a few calls is the one it would make
    for each. A connection keeps one such text per set of filters it has measured. The statement for
    many consumers together (the dashboard's) is planned at each call: kept, its plan measured no
    faster at the dashboard's size (bench/README.md, section 4)."""
    params: dict[str, object] = {"since": now - RATE_WINDOW, "until": now - RATE_MIN_SPAN}
    groups: dict[selectors.LogFilter, int] = {}
    rows = []
    for i, each in enumerate(ranges):
        group = groups.setdefault(each.subscription, len(groups))
        params |= {f"after_{i}": each.after, f"up_to_{i}": each.up_to, f"rated_{i}": each.rated}
        bounds = f"%(after_{i})s::bigint, %(up_to_{i})s::bigint, %(rated_{i})s::bigint"
        rows.append(f"({i}, {group}, {bounds}, {each.width})")
    windows, counts = [], []
    for subscription, group in groups.items():
        followed = ""
        if subscription.types:
            followed += f" AND e.type = ANY({_literal(list(subscription.types))}::text[])"
        if subscription.categories:
            followed += f" AND e.category = ANY({_literal(list(subscription.categories))}::text[])"
        windows.append(
            f"""
            e{group} AS (
                SELECT w.i, count(*) AS n, min(e.recorded_at) AS oldest
                  FROM w CROSS JOIN LATERAL (
                       SELECT e.recorded_at FROM streams_event e
                        WHERE e.position > w.start AND e.position <= least(w.up_to, w.start + w.width)
                              {followed}
                        LIMIT {LAG_WINDOW}) e
                 WHERE w.grp = {group}
                 GROUP BY w.i)"""
        )
        counts.append(f"SELECT i, n, oldest FROM e{group}")
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.cursor.execute(
            f"""
            WITH h AS (SELECT COALESCE(max(position), 0) AS head FROM streams_event
                        WHERE position <= (SELECT replaydesk_settled_head())),
            r (i, grp, after, up_to, rated, width) AS (VALUES {", ".join(rows)}),
            b AS (
                SELECT r.i, coalesce(r.after, l.checkpoint) AS after, l.sampled_at,
                       coalesce(r.up_to, (SELECT head FROM h)) AS up_to, r.grp, r.width
                  FROM r LEFT JOIN LATERAL (
                       SELECT sampled_at, checkpoint FROM streams_lagsample
                        WHERE consumer_id = r.rated AND sampled_at >= %(since)s AND sampled_at <= %(until)s
                        ORDER BY sampled_at LIMIT 1) l ON true),
            w AS MATERIALIZED (
                SELECT b.i, b.grp, b.up_to, b.sampled_at, b.width,
                       least(b.up_to, coalesce(
                           (SELECT min(position) FROM streams_event WHERE position > b.after), b.after + 1
                       ) - 1) AS start
                  FROM b WHERE b.after IS NOT NULL),{",".join(windows)}
            SELECT r.i, w.start, w.up_to, coalesce(c.n, 0), c.oldest, w.sampled_at
              FROM r LEFT JOIN w USING (i)
              LEFT JOIN ({" UNION ALL ".join(counts)}) c USING (i)
             ORDER BY r.i
            """,
            params,
            prepare=len(ranges) <= 2,  # one consumer: its lag and its rate
        )
        found_rows = cursor.fetchall()
    found = []
    read_head = None
    for (_, start, up_to, count, oldest, sampled_at), each in zip(found_rows, ranges, strict=True):
        if each.up_to is None:
            read_head = up_to
        if start is None:  # a rated range without a sample to start from
            found.append(_Count(0, True, None))
        elif start + each.width >= up_to:
            found.append(_Count(count, True, oldest, sampled_at))
        else:
            found.append(_Count(round(count * (up_to - start) / each.width), False, oldest, sampled_at))
    return found, read_head


def _literal(values: list[str]) -> str:
    """Text values as an SQL literal, quoted by psycopg as this connection's server reads them."""
    connection.ensure_connection()
    return sql.Literal(values).as_string(connection.connection)


# --- per consumer


def consumer_status(
    *,
    consumer: Consumer,
    head: int | None = None,
    now: dt.datetime | None = None,
    with_rate: bool = True,
    is_rebuilding: bool | None = None,
) -> ConsumerStatus:
    """Checkpoint, lag, rate and health of one consumer (a handful of queries; the lag count grows with
    the lag only). A caller that lists consumers asks once for all of them whether they are rebuilding
    and passes `is_rebuilding`, or lets consumer_statuses measure them all together."""
    if is_rebuilding is None:
        is_rebuilding = consumer.name in health.rebuilding(names=[consumer.name])
    (found,) = _statuses(
        [consumer],
        head=head,
        now=now or timezone.now(),
        with_rate=with_rate,
        rebuilt={consumer.name} if is_rebuilding else set(),
    )
    return found


def consumer_statuses(*, with_rate: bool = True, now: dt.datetime | None = None) -> list[ConsumerStatus]:
    """Every consumer, by name, against one head."""
    consumers = Consumer.objects.select_related("sink", "subscription").order_by("name")
    return statuses_of(consumers=list(consumers), with_rate=with_rate, now=now)


def statuses_of(
    *, consumers: list[Consumer], with_rate: bool = True, now: dt.datetime | None = None
) -> list[ConsumerStatus]:
    """consumer_status of each of `consumers`, in their order, against one head, measured together: a
    number of statements that does not grow with the consumers (whether any is being rebuilt, their
    checkpoints by kind, then every lag and rate count in one, with the head and the rates' samples)."""
    return _statuses(
        consumers,
        head=None,
        now=now or timezone.now(),
        with_rate=with_rate,
        rebuilt=health.rebuilding(names=[consumer.name for consumer in consumers]),
    )


def _statuses(
    consumers: list[Consumer], *, head: int | None, now: dt.datetime, with_rate: bool, rebuilt: set[str]
) -> list[ConsumerStatus]:
    if not consumers:
        return []
    checkpoints = consumer_kinds.checkpoints_of(consumers=consumers)
    subscriptions = [follows(consumer=consumer) for consumer in consumers]
    ranges = [
        _Range(subscription, checkpoints[consumer.pk], head)
        for consumer, subscription in zip(consumers, subscriptions, strict=True)
    ]
    # The rate: events it follows between the checkpoint of its oldest sample of the last minute and its
    # checkpoint now, counted as the lag is (not positions, which count holes and skipped events).
    rated = [
        _Range(subscription, None, checkpoints[consumer.pk], rated=consumer.pk)
        for consumer, subscription in zip(consumers, subscriptions, strict=True)
        if with_rate
    ]
    counted, read_head = _count(ranges + rated, now=now)
    lags = counted[: len(consumers)]
    rates = [_rate(found, now) for found in counted[len(consumers) :]] or [None] * len(consumers)
    return [
        _status(
            consumer,
            checkpoints[consumer.pk],
            read_head if head is None else head,
            measure,
            rate,
            now,
            consumer.name in rebuilt,
        )
        for consumer, measure, rate in zip(consumers, lags, rates, strict=True)
    ]


def _rate(applied: _Count, now: dt.datetime) -> float | None:
    """Per second since the sample it was counted from; None without one (unknown, not zero)."""
    if applied.sampled_at is None:
        return None
    return round(applied.count / (now - applied.sampled_at).total_seconds(), 3)


def _status(
    consumer: Consumer,
    checkpoint: int,
    head: int,
    measure: _Count,
    rate: float | None,
    now: dt.datetime,
    is_rebuilding: bool,
) -> ConsumerStatus:
    lag_seconds = (
        max(0.0, (now - measure.oldest).total_seconds()) if measure.count and measure.oldest else 0.0
    )
    return ConsumerStatus(
        name=consumer.name,
        kind=consumer.kind,
        state=consumer.state,
        checkpoint=checkpoint,
        head=head,
        lag_events=measure.count,
        lag_exact=measure.exact,
        lag_seconds=round(lag_seconds, 3),
        rate=rate,
        health=health.health_of(
            consumer=consumer,
            lag_events=measure.count,
            oldest_unapplied_at=measure.oldest,
            now=now,
            is_rebuilding=is_rebuilding,
        ),
        last_error=consumer.last_error,
        last_error_at=consumer.last_error_at,
        progressed_at=consumer.progressed_at,
        lag_threshold=consumer.lag_threshold,
        stall_seconds=consumer.stall_seconds,
    )


# --- per stream


def top_lagging_streams(*, consumer: Consumer, limit: int = 10, within: int | None = None) -> list[StreamLag]:
    """The streams with the most events the consumer has yet to apply (events after its checkpoint
    grouped by stream: the cost grows with the lag), or as its kind measures them. `within`: only the
    first so many positions after the checkpoint are read, the events the consumer meets next (the
    consumer's page: far behind, the whole lag is millions of events to group)."""
    measured = consumer_kinds.of(consumer).lagging_streams(consumer, limit=limit)
    if measured is not None:
        return measured
    subscription = follows(consumer=consumer)
    checkpoint = checkpoint_of(consumer=consumer)
    head = selectors.head()
    if within is not None:
        head = min(head, checkpoint + within)
    followed = "e.type = ANY(%(types)s)" if subscription.types else "true"
    in_categories = "AND e.category = ANY(%(categories)s)" if subscription.categories else ""
    # Grouped by stream before the join: only the streams that have followed events are looked up by
    # key, rather than every stream of the followed categories hashed first (most of a call's time when
    # the range is short and those categories hold 100,000 streams).
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH lagging AS (
                SELECT e.stream_id, min(e.sequence) AS first, count(*) FILTER (WHERE {followed}) AS lag
                  FROM streams_event e
                 WHERE e.position > %(checkpoint)s AND e.position <= %(head)s {in_categories}
                 GROUP BY e.stream_id
            )
            SELECT s.name, s.version, l.first - 1, l.lag
              FROM lagging l JOIN streams_stream s ON s.id = l.stream_id
             WHERE l.lag > 0
             ORDER BY l.lag DESC, s.name
             LIMIT %(limit)s
            """,
            {
                "checkpoint": checkpoint,
                "head": head,
                "types": list(subscription.types),
                "categories": list(subscription.categories),
                "limit": limit,
            },
        )
        return [StreamLag(*row) for row in cursor.fetchall()]


def follows_stream(*, subscription: selectors.LogFilter, stream: Stream) -> bool:
    return not subscription.categories or stream.category in subscription.categories


def stream_consumers(*, stream: Stream) -> list[ConsumerStreamLag]:
    """For one stream, each consumer that follows its category: the stream's last sequence at or
    before the consumer's checkpoint, and how many events of the stream it has yet to apply. The
    checkpoints are asked once per kind, and the stream is measured for every consumer in one statement."""
    followers = []
    # A sink's and a subscription's filters are in their own rows: read with the consumers, not one by one.
    for consumer in Consumer.objects.select_related("sink", "subscription").order_by("name"):
        subscription = follows(consumer=consumer)
        if follows_stream(subscription=subscription, stream=stream):
            followers.append((consumer, subscription))
    if not followers:
        return []
    checkpoints = consumer_kinds.checkpoints_of(consumers=[consumer for consumer, _ in followers])
    # Within a stream, sequence order is position order: walking the (stream, sequence) index backwards
    # stops at the first applied event, and the count reads the unapplied events only. The followers come
    # as arrays, which the planner counts (a set-returning function of JSON would be guessed at 100 rows,
    # and a cost that high has the statement compiled by the JIT first: 15 ms).
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT applied.sequence,
                   (SELECT count(*) FROM streams_event e
                     WHERE e.stream_id = %(stream)s AND e.sequence > applied.sequence
                       AND (c.types IS NULL OR c.types ? e.type))
              FROM unnest(%(checkpoints)s::bigint[], %(types)s::jsonb[]) WITH ORDINALITY
                   AS c(checkpoint, types, i),
                   LATERAL (SELECT coalesce((SELECT e.sequence FROM streams_event e
                                              WHERE e.stream_id = %(stream)s AND e.position <= c.checkpoint
                                              ORDER BY e.sequence DESC LIMIT 1), 0) AS sequence) applied
             ORDER BY c.i
            """,
            {
                "stream": stream.pk,
                "checkpoints": [checkpoints[consumer.pk] for consumer, _ in followers],
                "types": [
                    Jsonb(list(subscription.types)) if subscription.types else None
                    for _, subscription in followers
                ],
            },
        )
        measured = cursor.fetchall()
    return [
        ConsumerStreamLag(consumer.name, consumer.kind, checkpoints[consumer.pk], applied, unapplied)
        for (consumer, _), (applied, unapplied) in zip(followers, measured, strict=True)
    ]
