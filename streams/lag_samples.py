"""Lag samples: one per consumer every 10 s (kept 7 days), and a consumer's history thinned for a chart."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Max, Min
from django.utils import timezone

from streams.lag import statuses_of
from streams.models import Consumer, LagSample

SAMPLE_RETENTION = dt.timedelta(days=7)


def sample_all(*, now: dt.datetime | None = None) -> int:
    """One lag sample per consumer, and samples older than 7 days dropped. Returns how many it took."""
    now = now or timezone.now()
    consumers = list(Consumer.objects.select_related("sink", "subscription"))
    samples = [
        LagSample(
            consumer=consumer,
            sampled_at=now,
            head=status.head,
            checkpoint=status.checkpoint,
            lag_events=status.lag_events,
            lag_seconds=status.lag_seconds,
        )
        for consumer, status in zip(
            consumers, statuses_of(consumers=consumers, now=now, with_rate=False), strict=True
        )
    ]
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
