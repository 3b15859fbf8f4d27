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


# --- counting


@dataclass(frozen=True)
class _Range:
    """The events a consumer follows after `after` up to `up_to`; up to the head when `up_to` is None."""

    subscription: selectors.LogFilter
    after: int
    up_to: int | None


@dataclass(frozen=True)
class _Count:
    count: int
    exact: bool
    oldest: dt.datetime | None


def _count(ranges: list[_Range]) -> tuple[list[_Count], int | None]:
    """For each range: (events it follows in the range, whether that is exact, the oldest one's time),
    reading at most LAG_WINDOW positions: beyond them the count is the window's, scaled to the whole
    range. The oldest is the window's oldest, which is the range's unless times run backwards across it.
    Every range in one statement, with the head that the ranges without an end of their own went up to
    (None when none of them needed it): read in that statement, so no count goes past the head it shows.

    Each range's window starts at the next event there is (a run of holes left by rolled-back appends
    costs nothing), and a category is probed by the stream's key, one probe per event in the window (a
    join would hash every stream, whatever the window)."""
    params: dict[str, object] = {"window": LAG_WINDOW}
    counts = []
    for i, each in enumerate(ranges):
        up_to = "(SELECT head FROM h)" if each.up_to is None else f"%(up_to_{i})s"
        params |= {f"after_{i}": each.after, f"up_to_{i}": each.up_to}
        conditions = ""
        if each.subscription.types:
            conditions += f" AND e.type = ANY(%(types_{i})s)"
            params[f"types_{i}"] = list(each.subscription.types)
        if each.subscription.categories:
            conditions += (
                " AND (SELECT category FROM streams_stream s WHERE s.id = e.stream_id)"
                f" = ANY(%(categories_{i})s)"
            )
            params[f"categories_{i}"] = list(each.subscription.categories)
        counts.append(
            f"""
            SELECT {i}, w.after, w.up_to, count(e.position), min(e.recorded_at)
              FROM (SELECT least(u.up_to, coalesce(
                       (SELECT min(position) FROM streams_event WHERE position > %(after_{i})s),
                       %(after_{i})s + 1
                    ) - 1) AS after, u.up_to
                      FROM (SELECT {up_to}::bigint AS up_to) u) w
              LEFT JOIN streams_event e
                ON e.position > w.after AND e.position <= least(w.up_to, w.after + %(window)s){conditions}
             GROUP BY w.after, w.up_to"""
        )
    needs_head = any(each.up_to is None for each in ranges)
    head = (
        "WITH h AS (SELECT COALESCE(max(position), 0) AS head FROM streams_event"
        " WHERE position <= (SELECT replaydesk_settled_head()))"
        if needs_head
        else ""
    )
    with connection.cursor() as cursor:
        cursor.execute(head + " UNION ALL ".join(counts), params)
        rows = sorted(cursor.fetchall())
    found = []
    read_head = None
    for (_, start, up_to, count, oldest), each in zip(rows, ranges, strict=True):
        if each.up_to is None:
            read_head = up_to
        if start + LAG_WINDOW >= up_to:
            found.append(_Count(count, True, oldest))
        else:
            found.append(_Count(round(count * (up_to - start) / LAG_WINDOW), False, oldest))
    return found, read_head


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
    checkpoints by kind, their rates' samples, then every lag and rate count with the head in one)."""
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
    baselines = _baselines(consumers, now) if with_rate else {}
    ranges = [
        _Range(subscription, checkpoints[consumer.pk], head)
        for consumer, subscription in zip(consumers, subscriptions, strict=True)
    ]
    # The rate: events it follows between the checkpoint of the oldest sample of the last minute and
    # the checkpoint now, counted as the lag is (not positions, which count holes and skipped events).
    rated = [
        (i, _Range(subscriptions[i], baselines[consumer.pk][1], checkpoints[consumer.pk]))
        for i, consumer in enumerate(consumers)
        if consumer.pk in baselines
    ]
    counted, read_head = _count(ranges + [each for _, each in rated])
    lags, applied = counted[: len(consumers)], counted[len(consumers) :]
    rates: dict[int, float] = {}
    for (i, _), found in zip(rated, applied, strict=True):
        sampled_at = baselines[consumers[i].pk][0]
        rates[i] = round(found.count / (now - sampled_at).total_seconds(), 3)
    head = read_head if head is None else head
    return [
        _status(
            consumer,
            checkpoints[consumer.pk],
            head,
            measure,
            rates.get(i) if with_rate else None,
            now,
            consumer.name in rebuilt,
        )
        for i, (consumer, measure) in enumerate(zip(consumers, lags, strict=True))
    ]


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


def _baselines(consumers: list[Consumer], now: dt.datetime) -> dict[int, tuple[dt.datetime, int]]:
    """(when, checkpoint) of each consumer's oldest sample of the last minute that is at least
    RATE_MIN_SPAN old, by consumer; a consumer without one has no rate (unknown, not zero)."""
    return {
        consumer_id: (sampled_at, checkpoint)
        for consumer_id, sampled_at, checkpoint in LagSample.objects.filter(
            consumer__in=consumers, sampled_at__gte=now - RATE_WINDOW, sampled_at__lte=now - RATE_MIN_SPAN
        )
        .order_by("consumer_id", "sampled_at")
        .distinct("consumer_id")
        .values_list("consumer_id", "sampled_at", "checkpoint")
    }


# --- per stream


def top_lagging_streams(*, consumer: Consumer, limit: int = 10) -> list[StreamLag]:
    """The streams with the most events the consumer has yet to apply (events after its checkpoint
    grouped by stream: the cost grows with the lag), or as its kind measures them."""
    measured = consumer_kinds.of(consumer).lagging_streams(consumer, limit=limit)
    if measured is not None:
        return measured
    subscription = follows(consumer=consumer)
    checkpoint = checkpoint_of(consumer=consumer)
    followed = "e.type = ANY(%(types)s)" if subscription.types else "true"
    in_categories = "AND s.category = ANY(%(categories)s)" if subscription.categories else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.name, s.version, min(e.sequence) - 1, count(*) FILTER (WHERE {followed}) AS lag
              FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
             WHERE e.position > %(checkpoint)s AND e.position <= %(head)s {in_categories}
             GROUP BY s.id
            HAVING count(*) FILTER (WHERE {followed}) > 0
             ORDER BY lag DESC, s.name
             LIMIT %(limit)s
            """,
            {
                "checkpoint": checkpoint,
                "head": selectors.head(),
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
