"""The lag chart of a consumer page: its samples over a range, thinned to what a chart can show, and
the geometry of an inline SVG drawn by the server (no chart library, nothing from a CDN).

The SVG fills its card at any width without scaling its text: times and counts are placed in percent of
the plot's width and height (the line itself in a 1000 × 1000 box stretched over the plot), and the
labels sit in the SVG's padding (app.css), so a phone's chart is narrower, never smaller.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from streams.lag_samples import lag_history
from streams.models import Consumer, LagSample

RANGES: dict[str, tuple[dt.timedelta, str]] = {
    "1h": (dt.timedelta(hours=1), "last hour"),
    "24h": (dt.timedelta(hours=24), "last 24 hours"),
    "7d": (dt.timedelta(days=7), "last 7 days"),
}
DEFAULT_RANGE = "1h"
# The size of the box the line is drawn in, stretched over the plot whatever its size.
LINE_BOX = 1000
# More points than this would be thinner than a pixel column; each keeps the highest lag of its slice.
MAX_POINTS = 380
# Samples are taken every 10 s; a longer silence (sampler down) breaks the line rather than bridging it.
SAMPLE_GAP = dt.timedelta(seconds=35)


@dataclass(frozen=True)
class Tick:
    at: float  # percent of the plot's width (times) or of its height from the top (counts)
    label: str


@dataclass(frozen=True)
class Dot:
    x: float  # percent
    y: float  # percent


@dataclass(frozen=True)
class LagChart:
    range: str
    label: str
    since: dt.datetime
    until: dt.datetime
    samples: int
    # One SVG path per unbroken run of samples.
    lines: list[str]
    # Lone points (a run of one sample) drawn as dots.
    dots: list[Dot]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    min_lag: int | None
    max_lag: int | None
    latest_lag: int | None
    line_box: int = LINE_BOX

    @property
    def no_lag(self) -> bool:
        """Samples, all of them at 0: a flat line on a made-up axis would say less than these words."""
        return self.samples > 0 and self.max_lag == 0


def parse_range(value: str | None) -> str:
    return value if value in RANGES else DEFAULT_RANGE


def lag_chart(*, consumer: Consumer, range_key: str, now: dt.datetime) -> LagChart:
    span, label = RANGES[range_key]
    since = now - span
    history = lag_history(consumer=consumer, since=since, until=now, max_points=MAX_POINTS)
    points = history.points
    top = nice_ceiling(max((s.lag_events for s in points), default=0))
    percent_of = _scale(0.0, span.total_seconds(), 0.0, 100.0)
    y_of = _scale(0.0, float(top), 100.0, 0.0)
    lines, dots = [], []
    for run in runs(points, gap=max(SAMPLE_GAP, 3 * span / MAX_POINTS)):
        xy = [(percent_of((s.sampled_at - since).total_seconds()), y_of(s.lag_events)) for s in run]
        if len(xy) == 1:
            dots.append(Dot(*xy[0]))
        else:
            lines.append("M" + " L".join(f"{x * LINE_BOX / 100:.1f},{y * LINE_BOX / 100:.1f}" for x, y in xy))
    return LagChart(
        range=range_key,
        label=label,
        since=since,
        until=now,
        samples=history.samples,
        lines=lines,
        dots=dots,
        x_ticks=[
            Tick(percent_of(i * span.total_seconds() / 4), _time_label(since + i * span / 4, span))
            for i in range(5)
        ],
        y_ticks=[Tick(y_of(top * i / 4), _count_label(top * i / 4)) for i in range(5)],
        min_lag=history.min_lag,
        max_lag=history.max_lag,
        latest_lag=history.latest_lag,
    )


def runs(points: list[LagSample], *, gap: dt.timedelta) -> list[list[LagSample]]:
    found: list[list[LagSample]] = []
    for point in points:
        if found and point.sampled_at - found[-1][-1].sampled_at <= gap:
            found[-1].append(point)
        else:
            found.append([point])
    return found


def nice_ceiling(value: float) -> int:
    """The smallest of 1, 2, 4, 5 × 10ⁿ (at least 4, so that quarter ticks are whole) not below value."""
    if value <= 4:
        return 4
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 5, 10):
        if step * magnitude >= value:
            return int(step * magnitude)
    return int(10 * magnitude)


def _scale(lo: float, hi: float, out_lo: float, out_hi: float):
    def scale(value: float) -> float:
        return out_lo + (value - lo) / (hi - lo) * (out_hi - out_lo)

    return scale


def _time_label(moment: dt.datetime, span: dt.timedelta) -> str:
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%m-%d %H:%M" if span > dt.timedelta(days=1) else "%H:%M")


def _count_label(value: float) -> str:
    value = round(value)
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:,}"
