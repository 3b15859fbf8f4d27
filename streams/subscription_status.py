"""What a subscription's readers and its operators see of it: per partition, the checkpoint, lag in events
and seconds, health, the reader holding it and until when (selectors that only read).

A partition's lag is counted exactly: the events it follows after its checkpoint, up to the head, in one
statement for every partition (so its cost grows with the lag of the slowest partition). The
subscription's own status (lag.consumer_status) measures from its slowest partition's checkpoint, as
every consumer list does, so its lag there is an upper bound; here it is the partitions' sum, and its
rate the sum of theirs.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from streams import health, lag, selectors, subscription_redelivery, subscriptions
from streams.models import Consumer, Subscription, SubscriptionPartition
from streams.subscriptions import log_filter


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    checkpoint: int
    delivered_up_to: int
    lag_events: int
    lag_seconds: float
    # Events acknowledged per second over its last window of about a minute; 0 after two windows without
    # an acknowledgement; None until a window was counted.
    rate: float | None
    health: str
    # The reader holding a current lease, and when it expires; None when the partition is free.
    reader: str | None
    lease_expires_at: dt.datetime | None
    nacks: int
    failing_position: int | None
    progressed_at: dt.datetime | None
    # Parked events of the partition queued for redelivery, not acknowledged yet.
    redeliveries: int


@dataclass(frozen=True)
class SubscriptionStatus:
    consumer: lag.ConsumerStatus
    subscription: Subscription
    lag_events: int
    # The partitions' rates summed; None until one was counted.
    rate: float | None
    partitions: list[PartitionStatus]


def subscription_status(
    *, subscription: Subscription, now: dt.datetime | None = None, measured: lag.ConsumerStatus | None = None
) -> SubscriptionStatus:
    """`measured`: the subscription's consumer status when the caller has it already (the dashboard
    measures every consumer together); its partitions are counted up to the same head."""
    now = now or timezone.now()
    consumer = subscription.consumer
    head = selectors.head() if measured is None else measured.head
    counts = _lag_by_partition(subscription, head)
    queued = subscription_redelivery.queued_by_partition(subscription)
    partitions = []
    for row in subscription.partition_rows.order_by("number"):
        count, oldest = counts.get(row.number, (0, None))
        held = row.lease is not None and row.lease_expires_at is not None and row.lease_expires_at > now
        partitions.append(
            PartitionStatus(
                partition=row.number,
                checkpoint=row.checkpoint,
                delivered_up_to=row.delivered_up_to,
                lag_events=count,
                lag_seconds=round(max(0.0, (now - oldest).total_seconds()), 3) if count and oldest else 0.0,
                rate=_rate(row, now),
                health=_health(consumer, row, count, oldest, now),
                reader=row.reader if held else None,
                lease_expires_at=row.lease_expires_at if held else None,
                nacks=row.nacks,
                failing_position=row.failing_position,
                progressed_at=row.progressed_at,
                redeliveries=queued.get(row.number, 0),
            )
        )
    return SubscriptionStatus(
        consumer=measured or lag.consumer_status(consumer=consumer, head=head, now=now),
        subscription=subscription,
        lag_events=sum(p.lag_events for p in partitions),
        rate=_total([p.rate for p in partitions]),
        partitions=partitions,
    )


def subscription_statuses(*, measured: list[lag.ConsumerStatus] | None = None) -> list[SubscriptionStatus]:
    """Every subscription; `measured`: the consumers' statuses when the caller has them already."""
    subscriptions = Subscription.objects.select_related("consumer").order_by("consumer__name")
    now = timezone.now()
    by_name = {status.name: status for status in measured or []}
    return [
        subscription_status(subscription=each, now=now, measured=by_name.get(each.consumer.name))
        for each in subscriptions
    ]


def _rate(row: SubscriptionPartition, now: dt.datetime) -> float | None:
    if row.rate is None or row.rate_window_at is None:
        return None
    quiet = (now - row.rate_window_at).total_seconds() >= 2 * subscriptions.RATE_WINDOW_SECONDS
    return 0.0 if quiet else row.rate


def _health(
    consumer: Consumer,
    row: SubscriptionPartition,
    lag_events: int,
    oldest: dt.datetime | None,
    now: dt.datetime,
) -> str:
    """The consumers' states, for one partition: its own progress and nacks, the subscription's pause."""
    if row.nacks and consumer.state == Consumer.State.RUNNING:
        return "failing"
    partition = copy.copy(consumer)
    partition.progressed_at = row.progressed_at
    partition.last_error_at = None  # the nacks above are a partition's failures
    return health.health_of(
        consumer=partition, lag_events=lag_events, oldest_unapplied_at=oldest, now=now, is_rebuilding=False
    )


def _lag_by_partition(subscription: Subscription, head: int) -> dict[int, tuple[int, dt.datetime | None]]:
    followed = log_filter(subscription)
    conditions = ""
    if followed.types:
        conditions += " AND e.type = ANY(%(types)s)"
    if followed.categories:
        conditions += " AND s.category = ANY(%(categories)s)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH pending AS (
                SELECT e.position, e.recorded_at,
                       replaydesk_stream_partition(s.name, %(partitions)s) AS number
                  FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
                 WHERE e.position > (SELECT min(checkpoint) FROM streams_subscriptionpartition
                                      WHERE subscription_id = %(subscription)s)
                   AND e.position <= %(head)s{conditions}
            )
            SELECT p.number, count(e.position), min(e.recorded_at)
              FROM streams_subscriptionpartition p
              JOIN pending e ON e.number = p.number AND e.position > p.checkpoint
             WHERE p.subscription_id = %(subscription)s
             GROUP BY p.number
            """,
            {
                "partitions": subscription.partitions,
                "subscription": subscription.pk,
                "head": head,
                "types": list(followed.types),
                "categories": list(followed.categories),
            },
        )
        return {number: (count, oldest) for number, count, oldest in cursor.fetchall()}


def top_lagging_streams(*, subscription: Subscription, limit: int = 10) -> list[lag.StreamLag]:
    """The streams with the most events the subscription has yet to acknowledge, each measured from its
    own partition's checkpoint (the consumers' measure, from the slowest partition's, would count what
    faster partitions acknowledged). The cost grows with the lag of the slowest partition."""
    followed = log_filter(subscription)
    counted = "e.type = ANY(%(types)s)" if followed.types else "true"
    in_categories = " AND s.category = ANY(%(categories)s)" if followed.categories else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH pending AS (
                SELECT e.stream_id, e.sequence, e.type, e.position,
                       replaydesk_stream_partition(s.name, %(partitions)s) AS number
                  FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
                 WHERE e.position > (SELECT min(checkpoint) FROM streams_subscriptionpartition
                                      WHERE subscription_id = %(subscription)s)
                   AND e.position <= %(head)s{in_categories}
            )
            SELECT s.name, s.version, min(e.sequence) - 1, count(*) FILTER (WHERE {counted}) AS lag
              FROM pending e
              JOIN streams_subscriptionpartition p
                ON p.subscription_id = %(subscription)s AND p.number = e.number AND e.position > p.checkpoint
              JOIN streams_stream s ON s.id = e.stream_id
             GROUP BY s.id
            HAVING count(*) FILTER (WHERE {counted}) > 0
             ORDER BY lag DESC, s.name
             LIMIT %(limit)s
            """,
            {
                "partitions": subscription.partitions,
                "subscription": subscription.pk,
                "head": selectors.head(),
                "types": list(followed.types),
                "categories": list(followed.categories),
                "limit": limit,
            },
        )
        return [lag.StreamLag(*row) for row in cursor.fetchall()]


def _total(rates: list[float | None]) -> float | None:
    counted = [rate for rate in rates if rate is not None]
    return round(sum(counted), 3) if counted else None
