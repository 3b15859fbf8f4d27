"""The dashboard: the head, appends per minute and over the last hour, every consumer's lag with its
trend, what needs an operator's attention (failing or stalled consumers, parked events, failed jobs),
sources and subscriptions when there are any, the jobs that run and the approvals that wait. Its live
part polls itself through htmx (console/partials/dashboard_live.html).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from console import sparklines
from core.pages import render_page, role_required
from recovery import approval_views
from recovery import selectors as recovery_selectors
from recovery.models import Job
from streams import lag, selectors, source_status, subscription_status
from streams.consumer_views import parked_counts
from streams.models import Consumer, Event

# An append open this long is named on the dashboard: every consumer waits below its position.
OPEN_APPEND_NOTICE_SECONDS = 5.0
# The append chart: one bar of the sparkline a minute, over the last hour.
HISTORY_MINUTES = 60
# A minute that is over is counted once and kept this long (it leaves the chart after an hour).
MINUTE_CACHE_SECONDS = 65 * 60
# A consumer's lag trend: its samples over this many minutes, the trend over the last TREND_MINUTES.
LAG_TREND_MINUTES = 30
TREND_MINUTES = 5
# Jobs that failed this recently need an operator's look.
FAILED_JOBS_SINCE = dt.timedelta(hours=24)


@dataclass(frozen=True)
class AppendRate:
    """Events recorded in the last minute and the last ten, by recorded_at: an import that keeps the
    original times of its events adds nothing here, which is the truth about appends now."""

    last_minute: int
    last_ten_minutes: int
    last_recorded_at: dt.datetime | None

    @property
    def per_second_minute(self) -> float:
        return self.last_minute / 60

    @property
    def per_second_ten_minutes(self) -> float:
        return self.last_ten_minutes / 600


def append_rate(*, now: dt.datetime) -> AppendRate:
    found = Event.objects.filter(recorded_at__gt=now - dt.timedelta(minutes=10)).aggregate(
        ten=Count("position"), one=Count("position", filter=Q(recorded_at__gt=now - dt.timedelta(minutes=1)))
    )
    newest = Event.objects.aggregate(at=Max("recorded_at"))["at"]
    return AppendRate(found["one"], found["ten"], newest)


def append_history(*, now: dt.datetime) -> list[int]:
    """Events recorded in each of the last HISTORY_MINUTES minutes, oldest first, the current minute
    (so far) last. A minute that is over does not change, so it is counted once and kept in the cache:
    a refresh counts the current minute and any minute it has not counted yet, in one statement, and
    never reads an hour of a busy log again. (An import that keeps recent original times, or a restore
    of the database, is seen in a minute already counted only once that minute leaves the cache.)"""
    current = now.replace(second=0, microsecond=0)
    minutes = [current - dt.timedelta(minutes=back) for back in range(HISTORY_MINUTES - 1, -1, -1)]
    keys = {minute: f"dashboard:appends:{minute.isoformat()}" for minute in minutes[:-1]}
    kept = cache.get_many(list(keys.values()))
    counted = {minute: kept[key] for minute, key in keys.items() if key in kept}
    missing = [minute for minute in minutes if minute not in counted]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc('minute', recorded_at), count(*) FROM streams_event"
            " WHERE recorded_at >= %s AND recorded_at < %s GROUP BY 1",
            [missing[0], current + dt.timedelta(minutes=1)],
        )
        found = dict(cursor.fetchall())
    fresh = {minute: found.get(minute, 0) for minute in missing}
    cache.set_many({keys[m]: n for m, n in fresh.items() if m in keys}, timeout=MINUTE_CACHE_SECONDS)
    return [counted.get(minute, fresh.get(minute, 0)) for minute in minutes]


@dataclass(frozen=True)
class LagTrend:
    line: sparklines.Sparkline
    trend: sparklines.Trend


def lag_trends(*, now: dt.datetime) -> dict[str, LagTrend]:
    """Each consumer's highest sampled lag in each of the last LAG_TREND_MINUTES minutes (samples are
    taken every 10 s), and whether it rises or falls over the last TREND_MINUTES: one statement for
    every consumer, read from the (consumer, sampled_at) index. Each sample's minute is numbered in
    the statement: a time per row turned into a Python datetime cost more than the statement (300 rows
    for 10 consumers)."""
    since = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=LAG_TREND_MINUTES - 1)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.name, floor(extract(epoch FROM s.sampled_at - %(since)s) / 60)::int AS slot,
                   max(s.lag_events)
              FROM streams_lagsample s JOIN streams_consumer c ON c.id = s.consumer_id
             WHERE s.sampled_at >= %(since)s
             GROUP BY 1, 2
            """,
            {"since": since},
        )
        rows = cursor.fetchall()
    series: dict[str, list[int | None]] = {}
    for name, slot, lag_events in rows:
        if 0 <= slot < LAG_TREND_MINUTES:
            series.setdefault(name, [None] * LAG_TREND_MINUTES)[slot] = lag_events
    return {
        name: LagTrend(sparklines.sparkline(values), sparklines.trend(values, over=TREND_MINUTES))
        for name, values in series.items()
    }


@dataclass(frozen=True)
class ConsumerList:
    """The dashboard's consumers: each one's status (checkpoint, lag, rate, health) and lag trend."""

    statuses: list[lag.ConsumerStatus]
    trends: dict[str, LagTrend]


def consumer_list(*, now: dt.datetime) -> ConsumerList:
    """What the dashboard computes for its consumers, measured together against one head (the
    benchmark times this: bench/README.md, section 4)."""
    return ConsumerList(lag.consumer_statuses(now=now), lag_trends(now=now))


@dataclass(frozen=True)
class Attention:
    """What an operator should look at: each list or count empty when all is well."""

    failing: list[lag.ConsumerStatus]
    stalled: list[lag.ConsumerStatus]
    # (consumer name, parked events waiting for a decision)
    parked: list[tuple[str, int]]
    source_parked: int
    failed_jobs: int

    @property
    def anything(self) -> bool:
        return bool(self.failing or self.stalled or self.parked or self.source_parked or self.failed_jobs)


def attention(*, statuses: list[lag.ConsumerStatus], now: dt.datetime) -> Attention:
    counts = parked_counts()
    names = dict(Consumer.objects.filter(pk__in=list(counts)).values_list("pk", "name"))
    return Attention(
        failing=[status for status in statuses if status.health == "failing"],
        stalled=[status for status in statuses if status.health == "stalled"],
        parked=sorted((names[pk], n) for pk, n in counts.items() if n and pk in names),
        source_parked=sum(source_status.parked_waiting().values()),
        failed_jobs=Job.objects.filter(
            state=Job.State.FAILED, finished_at__gte=now - FAILED_JOBS_SINCE
        ).count(),
    )


@require_safe
@role_required
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    open_appends = selectors.open_appends()
    consumers = consumer_list(now=now)
    history = append_history(now=now)
    subscriptions = subscription_status.subscription_statuses(measured=consumers.statuses)
    context = {
        "section": "dashboard",
        "head": selectors.head(),
        "open_appends": open_appends,
        "appends_held": open_appends.oldest_seconds >= OPEN_APPEND_NOTICE_SECONDS,
        "rate": append_rate(now=now),
        "history": sparklines.sparkline(history, width=240, height=36),
        "history_total": sum(history),
        "statuses": consumers.statuses,
        "trends": consumers.trends,
        "attention": attention(statuses=consumers.statuses, now=now),
        "source_healths": source_status.health_counts(source_status.source_statuses()),
        "subscriptions": subscriptions,
        "now": now,
        "running_jobs": recovery_selectors.running_jobs(),
    } | approval_views.summary()
    return render_page(request, "console/dashboard.html", "console/partials/dashboard_live.html", context)
