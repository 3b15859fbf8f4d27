"""Sparklines: a small series drawn as an inline SVG polyline by the server (no chart library), and
whether a series rises, falls or holds steady over its last minutes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 120, 28
# A change smaller than this share of the larger figure (or than MIN_CHANGE events) is "steady".
STEADY_SHARE = 0.1
MIN_CHANGE = 10


@dataclass(frozen=True)
class Sparkline:
    # "x,y x,y …" for the polyline, in a WIDTH × HEIGHT box; "" when there is nothing to draw.
    points: str
    low: int
    high: int
    latest: int | None
    count: int
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def flat_zero(self) -> bool:
        return self.count > 0 and self.high == 0


def sparkline(values: Sequence[int | None], *, width: int = WIDTH, height: int = HEIGHT) -> Sparkline:
    """One point per value, left to right; a missing value (None) is left out of the line. The vertical
    scale runs from 0 to the highest value, so that a line near the top is near the series' peak."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return Sparkline("", 0, 0, None, 0, width, height)
    high = max(v for _, v in known)
    low = min(v for _, v in known)
    step = (width - 2) / max(len(values) - 1, 1)
    usable = height - 3

    def y(value: int) -> float:
        return 1.5 + usable - (usable * value / high if high else 0)

    points = " ".join(f"{1 + i * step:.1f},{y(v):.1f}" for i, v in known)
    return Sparkline(points, low, high, known[-1][1], len(known), width, height)


@dataclass(frozen=True)
class Trend:
    # "rising", "falling" or "steady"; "" when there is not enough to tell.
    direction: str
    since: int | None
    now: int | None

    @property
    def arrow(self) -> str:
        return {"rising": "↑", "falling": "↓", "steady": "→"}.get(self.direction, "")


def trend(values: Sequence[int | None], *, over: int) -> Trend:
    """Compares the last known value with the one `over` steps before it (or the nearest known one
    after that): a change of at least STEADY_SHARE of the larger and MIN_CHANGE counts."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return Trend("", None, known[-1][1] if known else None)
    last_index, now = known[-1]
    earlier = [v for i, v in known if i >= last_index - over and i < last_index]
    then = earlier[0] if earlier else known[-2][1]
    change = now - then
    if abs(change) < max(MIN_CHANGE, STEADY_SHARE * max(now, then)):
        return Trend("steady", then, now)
    return Trend("rising" if change > 0 else "falling", then, now)
