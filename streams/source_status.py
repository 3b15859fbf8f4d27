"""How a source is doing, for the API, the pages, the command line and /metrics: how far behind the
copy is, how fast it goes, and its health in the words consumers use."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from streams.models import Source, SourceParkedEvent

# As a consumer's defaults: over this many positions behind is `lagging`; behind and not moving for
# this long is `stalled`.
LAG_THRESHOLD = 100
STALL_SECONDS = 60


@dataclass(frozen=True)
class SourceStatus:
    source: Source
    # Positions of the source after the copied one when the follower last looked: an upper bound, as
    # holes (rolled-back transactions) count; None before it first looked.
    lag_events: int | None
    # How long the copy has been behind: since it last moved, while there is more; 0 when caught up.
    lag_seconds: float
    health: str


def source_status(source: Source, now: dt.datetime | None = None) -> SourceStatus:
    now = now or timezone.now()
    lag = None if source.head is None else max(0, source.head - source.position)
    moved_at = source.progressed_at or source.created_at or now
    behind = (now - moved_at).total_seconds() if lag else 0.0
    health = _health(source, lag, behind, now)
    return SourceStatus(source=source, lag_events=lag, lag_seconds=round(behind, 3), health=health)


def source_statuses() -> list[SourceStatus]:
    now = timezone.now()
    return [source_status(source, now) for source in Source.objects.order_by("name")]


def _health(source: Source, lag: int | None, behind: float, now: dt.datetime) -> str:
    if source.state == Source.State.PAUSED:
        return "paused"
    if source.state == Source.State.FAILED or _recent_error(source, now):
        return "failing"
    if lag:
        if behind >= STALL_SECONDS:
            return "stalled"
        if lag > LAG_THRESHOLD:
            return "lagging"
    return "healthy"


def _recent_error(source: Source, now: dt.datetime) -> bool:
    """An error since the copy last moved, and recent (REPLAYDESK_ERROR_RECENT_SECONDS)."""
    if not source.last_error or source.last_error_at is None:
        return False
    if source.progressed_at is not None and source.progressed_at > source.last_error_at:
        return False
    return (now - source.last_error_at).total_seconds() < settings.REPLAYDESK_ERROR_RECENT_SECONDS


# Every health a source can have, worst first: how the dashboard orders its counts and /metrics names
# them (a source is never `rebuilding`: nothing replays into one).
HEALTHS = ("failing", "stalled", "lagging", "paused", "healthy")


def health_counts(statuses: list[SourceStatus]) -> list[tuple[str, int]]:
    """How many sources have each health, worst first, the healths none has left out."""
    counts = Counter(status.health for status in statuses)
    return [(health, counts[health]) for health in HEALTHS if counts[health]]


def parked_waiting() -> dict[int, int]:
    """Parked events waiting for a decision, by source id (what an operator has to look at; the
    source's `events_parked` counts every event ever parked)."""
    rows = (
        SourceParkedEvent.objects.filter(state=SourceParkedEvent.State.PARKED)
        .values("source")
        .annotate(n=Count("pk"))
    )
    return {row["source"]: row["n"] for row in rows}
