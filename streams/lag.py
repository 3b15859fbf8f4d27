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

from streams import consumer_kinds, health, selectors
from streams.consumer_kinds import checkpoint_of, follows
from streams.health import HEALTHS as HEALTHS  # the API's and the metrics' list of them
from streams.models import Consumer, Event, LagSample, Stream

# The rate is measured against the oldest sample of the last minute, if it is at least this old.
RATE_WINDOW = dt.timedelta(seconds=60)
RATE_MIN_SPAN = dt.timedelta(seconds=5)
# Positions after a checkpoint that a lag count reads: exact within them, an estimate beyond.
LAG_WINDOW = 2_000


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


@dataclass(frozen=True)
class _Measure:
    checkpoint: int
    head: int
    lag_events: int
    exact: bool
    oldest_unapplied_at: dt.datetime | None


# --- counting


def _measure(consumer: Consumer, subscription: selectors.LogFilter, head: int) -> _Measure:
    checkpoint = checkpoint_of(consumer=consumer)
    # Bounded by a head read before, so that lag_events never counts more than the head shows.
    count, exact, oldest = count_followed(subscription, after=checkpoint, up_to=head)
    return _Measure(checkpoint, head, count, exact, oldest)


def count_followed(
    subscription: selectors.LogFilter, *, after: int, up_to: int
) -> tuple[int, bool, dt.datetime | None]:
    """(events it follows between two positions, whether that is exact, the oldest one's time), reading
    at most LAG_WINDOW positions: beyond them the count is the window's, scaled to the whole range. The
    oldest is the window's oldest, which is the range's unless times run backwards across it.

    One statement: the window starts at the next event there is (a run of holes left by rolled-back
    appends costs nothing), and a category is probed by the stream's key, one probe per event in the
    window (a join would hash every stream, whatever the window)."""
    conditions = ""
    if subscription.types:
        conditions += " AND e.type = ANY(%(types)s)"
    if subscription.categories:
        conditions += (
            " AND (SELECT category FROM streams_stream s WHERE s.id = e.stream_id) = ANY(%(categories)s)"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT w.after, count(e.position), min(e.recorded_at)
              FROM (SELECT least(%(up_to)s, coalesce(
                       (SELECT min(position) FROM streams_event WHERE position > %(after)s), %(after)s + 1
                    ) - 1) AS after) w
              LEFT JOIN streams_event e
                ON e.position > w.after AND e.position <= least(%(up_to)s, w.after + %(window)s){conditions}
             GROUP BY w.after
            """,
            {
                "after": after,
                "up_to": up_to,
                "window": LAG_WINDOW,
                "types": list(subscription.types),
                "categories": list(subscription.categories),
            },
        )
        start, count, oldest = cursor.fetchone()
    if start + LAG_WINDOW >= up_to:
        return count, True, oldest
    return round(count * (up_to - start) / LAG_WINDOW), False, oldest


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
    and passes `is_rebuilding`."""
    now = now or timezone.now()
    if is_rebuilding is None:
        is_rebuilding = consumer.name in health.rebuilding(names=[consumer.name])
    subscription = follows(consumer=consumer)
    measure = _measure(consumer, subscription, selectors.head() if head is None else head)
    lag_seconds = (
        max(0.0, (now - measure.oldest_unapplied_at).total_seconds())
        if measure.lag_events and measure.oldest_unapplied_at
        else 0.0
    )
    return ConsumerStatus(
        name=consumer.name,
        kind=consumer.kind,
        state=consumer.state,
        checkpoint=measure.checkpoint,
        head=measure.head,
        lag_events=measure.lag_events,
        lag_exact=measure.exact,
        lag_seconds=round(lag_seconds, 3),
        rate=_rate(consumer, subscription, measure.checkpoint, now) if with_rate else None,
        health=health.health_of(
            consumer=consumer,
            lag_events=measure.lag_events,
            oldest_unapplied_at=measure.oldest_unapplied_at,
            now=now,
            is_rebuilding=is_rebuilding,
        ),
        last_error=consumer.last_error,
        last_error_at=consumer.last_error_at,
        progressed_at=consumer.progressed_at,
        lag_threshold=consumer.lag_threshold,
        stall_seconds=consumer.stall_seconds,
    )


def consumer_statuses(*, with_rate: bool = True, now: dt.datetime | None = None) -> list[ConsumerStatus]:
    """Every consumer, by name, against one head."""
    head = selectors.head()
    now = now or timezone.now()
    consumers = list(Consumer.objects.order_by("name"))
    rebuilt = health.rebuilding(names=[consumer.name for consumer in consumers])
    return [
        consumer_status(
            consumer=consumer, head=head, now=now, with_rate=with_rate, is_rebuilding=consumer.name in rebuilt
        )
        for consumer in consumers
    ]


def _rate(
    consumer: Consumer, subscription: selectors.LogFilter, checkpoint: int, now: dt.datetime
) -> float | None:
    """Events it follows between the checkpoint of the oldest sample of the last minute and now,
    counted exactly (not positions, which count holes and the events it skips), per second."""
    baseline = (
        LagSample.objects.filter(
            consumer=consumer, sampled_at__gte=now - RATE_WINDOW, sampled_at__lte=now - RATE_MIN_SPAN
        )
        .order_by("sampled_at")
        .values_list("sampled_at", "checkpoint")
        .first()
    )
    if baseline is None:
        return None
    sampled_at, then = baseline
    applied, _, _ = count_followed(subscription, after=then, up_to=checkpoint)
    return round(applied / (now - sampled_at).total_seconds(), 3)


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
    in_categories = "AND s.category = ANY(%(categories)s)" if subscription.categories else ""
    # Grouped by stream before the join: only the streams that have followed events are looked up by
    # key, rather than every stream of the followed categories hashed first (most of a call's time when
    # the range is short and those categories hold 100,000 streams).
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH lagging AS (
                SELECT e.stream_id, min(e.sequence) AS first, count(*) FILTER (WHERE {followed}) AS lag
                  FROM streams_event e
                 WHERE e.position > %(checkpoint)s AND e.position <= %(head)s
                 GROUP BY e.stream_id
            )
            SELECT s.name, s.version, l.first - 1, l.lag
              FROM lagging l JOIN streams_stream s ON s.id = l.stream_id
             WHERE l.lag > 0 {in_categories}
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
    before the consumer's checkpoint, and how many events of the stream it has yet to apply."""
    found = []
    for consumer in Consumer.objects.order_by("name"):
        subscription = follows(consumer=consumer)
        if not follows_stream(subscription=subscription, stream=stream):
            continue
        checkpoint = checkpoint_of(consumer=consumer)
        # Within a stream, sequence order is position order: walking the (stream, sequence) index
        # backwards stops at the first applied event, after the unapplied ones only.
        applied = (
            Event.objects.filter(stream=stream, position__lte=checkpoint)
            .order_by("-sequence")
            .values_list("sequence", flat=True)
            .first()
        ) or 0
        unapplied = Event.objects.filter(stream=stream, sequence__gt=applied)
        if subscription.types:
            unapplied = unapplied.filter(type__in=subscription.types)
        found.append(ConsumerStreamLag(consumer.name, consumer.kind, checkpoint, applied, unapplied.count()))
    return found
