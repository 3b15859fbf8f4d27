"""Lag and health of consumers: selectors that only read, and the sampler behind the lag charts.

A lag figure counts the events a consumer follows after its checkpoint, never `head - checkpoint`:
positions have holes where appends rolled back, and a consumer skips the events it does not follow.
The count reads at most LAG_WINDOW positions after the checkpoint, so it costs the same whatever the
lag: when the head is within the window the count is exact; beyond it, the events counted in the window
are scaled to the whole distance to the head, and the figure says it is an estimate (`lag_exact`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import Count, Max, Min
from django.utils import timezone

from streams import selectors
from streams.models import Consumer, Event, LagSample, Stream
from streams.projections import SCHEMA_PREFIX, get_projection, read_checkpoint

HEALTHS = ("healthy", "lagging", "stalled", "failing", "paused", "rebuilding")
SAMPLE_RETENTION = dt.timedelta(days=7)
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


# --- what a consumer follows and where it is


def sink_of(*, consumer: Consumer) -> Any | None:
    """The Sink row of a sink consumer, if it has one. Its fields are read with getattr only, so that
    lag does not depend on the sinks' exact shape."""
    if consumer.kind != Consumer.Kind.SINK:
        return None
    try:
        return getattr(consumer, "sink", None)
    except ObjectDoesNotExist:
        return None


def subscription_of(*, consumer: Consumer, sink: Any | None = None) -> selectors.LogFilter:
    """The categories and types the consumer follows (empty: all). A consumer whose code or sink is
    gone is taken to follow everything, so that its lag is never understated."""
    if consumer.kind == Consumer.Kind.PROJECTION:
        source: Any = get_projection(consumer.name)
    else:
        source = sink if sink is not None else sink_of(consumer=consumer)
    if source is None:
        return selectors.LogFilter()
    return selectors.LogFilter(
        categories=tuple(getattr(source, "categories", None) or ()),
        types=tuple(getattr(source, "types", None) or ()),
    )


def checkpoint_of(*, consumer: Consumer) -> int:
    """A projection's checkpoint lives in its schema; a sink's in its Consumer row."""
    if consumer.kind == Consumer.Kind.PROJECTION:
        found = read_checkpoint(get_projection(consumer.name), schema=SCHEMA_PREFIX + consumer.name)
        return found[0] if found else 0
    return consumer.position or 0


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
    *, consumer: Consumer, head: int | None = None, now: dt.datetime | None = None, with_rate: bool = True
) -> ConsumerStatus:
    """Checkpoint, lag, rate and health of one consumer (a handful of queries; the lag count grows with
    the lag only)."""
    now = now or timezone.now()
    sink = sink_of(consumer=consumer)
    subscription = subscription_of(consumer=consumer, sink=sink)
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
        health=health_of(consumer=consumer, measure=measure, now=now, sink=sink),
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
    return [
        consumer_status(consumer=consumer, head=head, now=now, with_rate=with_rate)
        for consumer in Consumer.objects.order_by("name")
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


def is_rebuilding(*, consumer: Consumer) -> bool:
    """Whether a replay or restore is rebuilding this consumer into a fresh schema right now."""
    from recovery.models import Job

    return Job.objects.filter(
        target=consumer.name, kind__in=(Job.Kind.REPLAY, Job.Kind.RESTORE), state=Job.State.RUNNING
    ).exists()


def _breaker_open(sink: Any) -> bool:
    # Half-open is still failing: only the probe delivery is let through.
    return getattr(sink, "breaker_state", None) in ("open", "half_open")


def health_of(*, consumer: Consumer, measure: _Measure, now: dt.datetime, sink: Any | None = None) -> str:
    """DESIGN.md §2, most specific first: paused, rebuilding, failing, stalled, lagging, healthy."""
    if consumer.state == Consumer.State.PAUSED:
        return "paused"
    if is_rebuilding(consumer=consumer):
        return "rebuilding"
    if consumer.state == Consumer.State.FAILED or consumer.attempts > 0 or _breaker_open(sink):
        return "failing"
    recent = settings.REPLAYDESK_ERROR_RECENT_SECONDS
    error_at = consumer.last_error_at
    if (
        error_at is not None
        and (now - error_at).total_seconds() < recent
        and (consumer.progressed_at is None or consumer.progressed_at <= error_at)
    ):
        return "failing"
    if measure.lag_events > 0:
        # Not moving for stall_seconds while behind for as long: a consumer idle for an hour that has
        # just been handed one event is not stalled.
        moved_at = consumer.progressed_at or consumer.created_at or now
        since = max(moved_at, measure.oldest_unapplied_at or moved_at)
        if (now - since).total_seconds() >= consumer.stall_seconds:
            return "stalled"
        if measure.lag_events > consumer.lag_threshold:
            return "lagging"
    return "healthy"


# --- per stream


def top_lagging_streams(*, consumer: Consumer, limit: int = 10) -> list[StreamLag]:
    """The streams with the most events the consumer has yet to apply (events after its checkpoint
    grouped by stream: the cost grows with the lag)."""
    subscription = subscription_of(consumer=consumer)
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
        subscription = subscription_of(consumer=consumer)
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


# --- history


def sample_all(*, now: dt.datetime | None = None) -> int:
    """One lag sample per consumer, and samples older than 7 days dropped. Returns how many it took."""
    now = now or timezone.now()
    head = selectors.head()
    samples = []
    for consumer in Consumer.objects.all():
        status = consumer_status(consumer=consumer, head=head, now=now, with_rate=False)
        samples.append(
            LagSample(
                consumer=consumer,
                sampled_at=now,
                head=head,
                checkpoint=status.checkpoint,
                lag_events=status.lag_events,
                lag_seconds=status.lag_seconds,
            )
        )
    LagSample.objects.bulk_create(samples)
    LagSample.objects.filter(sampled_at__lt=now - SAMPLE_RETENTION).delete()
    return len(samples)


@dataclass(frozen=True)
class LagHistory:
    """A consumer's samples over a range, as a chart needs them: at most `max_points` of them (each the
    highest lag of its slice of the range, so that a short spike still shows), and figures over all."""

    points: list[LagSample]
    samples: int
    min_lag: int | None
    max_lag: int | None
    latest_lag: int | None


def lag_history(*, consumer: Consumer, since: dt.datetime, until: dt.datetime, max_points: int) -> LagHistory:
    """Thinned in the database: a week of samples every 10 s is 60,480 rows, of which a chart draws a
    few hundred."""
    samples = LagSample.objects.filter(consumer=consumer, sampled_at__gte=since)
    figures = samples.aggregate(count=Count("id"), low=Min("lag_events"), high=Max("lag_events"))
    latest = samples.order_by("-sampled_at").values_list("lag_events", flat=True).first()
    if figures["count"] <= max_points:
        points = list(samples.order_by("sampled_at"))
    else:
        slice_seconds = (until - since).total_seconds() / max_points
        points = list(
            LagSample.objects.raw(
                """
                SELECT DISTINCT ON (slice) *
                  FROM (SELECT l.*, floor(extract(epoch FROM l.sampled_at - %s) / %s) AS slice
                          FROM streams_lagsample l
                         WHERE l.consumer_id = %s AND l.sampled_at >= %s) AS s
                 ORDER BY slice, lag_events DESC, sampled_at
                """,
                [since, slice_seconds, consumer.pk, since],
            )
        )
    return LagHistory(
        points=points,
        samples=figures["count"],
        min_lag=figures["low"],
        max_lag=figures["high"],
        latest_lag=latest,
    )
