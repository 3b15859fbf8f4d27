"""Health of a consumer, and who may report a consumer as rebuilding.

Most specific first: `paused` by an operator; `rebuilding` while a replay or restore rebuilds it;
`failing` when stopped, retrying, with a recent error, or whatever else its kind counts (a sink's open
circuit); `stalled` when behind and not moving for its stall_seconds; `lagging` when more than its
lag_threshold behind but moving; else `healthy`.

Whether a consumer is being rebuilt is known to the app that rebuilds it (recovery's replays and
restores), which the store must not import: that app registers a reporter here from its
AppConfig.ready(), and health asks every reporter at read time, so a job that fails or is cancelled
stops counting the moment its row says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable

from streams import consumer_kinds
from streams.models import Consumer

HEALTHS = ("healthy", "lagging", "stalled", "failing", "paused", "rebuilding")

# Given consumer names, returns those of them it is rebuilding right now (one query for all of them).
RebuildingReporter = Callable[[Collection[str]], Iterable[str]]

_reporters: list[RebuildingReporter] = []


def report_rebuilding(reporter: RebuildingReporter) -> None:
    """Ask `reporter` too which consumers are being rebuilt."""
    if reporter not in _reporters:
        _reporters.append(reporter)


def rebuilding(*, names: Collection[str]) -> set[str]:
    """Those of `names` that some app is rebuilding right now."""
    found: set[str] = set()
    if names:
        for reporter in _reporters:
            found.update(reporter(names))
    return found


def health_of(
    *,
    consumer: Consumer,
    lag_events: int,
    oldest_unapplied_at: dt.datetime | None,
    now: dt.datetime,
    is_rebuilding: bool,
) -> str:
    if consumer.state == Consumer.State.PAUSED:
        return "paused"
    if is_rebuilding:
        return "rebuilding"
    if consumer_kinds.of(consumer).failing(consumer, now=now):
        return "failing"
    if lag_events > 0:
        # Not moving for stall_seconds while behind for as long: a consumer idle for an hour that has
        # just been handed one event is not stalled.
        moved_at = consumer.progressed_at or consumer.created_at or now
        since = max(moved_at, oldest_unapplied_at or moved_at)
        if (now - since).total_seconds() >= consumer.stall_seconds:
            return "stalled"
        if lag_events > consumer.lag_threshold:
            return "lagging"
    return "healthy"
