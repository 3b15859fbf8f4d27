"""Small measuring helpers: medians, percentiles, timed calls, and the shape of a result row."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed_ms(fn: Callable[[], Any], times: int, *, warmup: int = 2) -> list[float]:
    """Milliseconds per call, for `times` calls after a few untimed ones (plans and caches warm)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(times):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def row(section: str, name: str, unit: str, better: str, samples: dict[str, list[float]], **extra) -> dict:
    """One figure: per system the repetitions' values and their median."""
    return {
        "section": section,
        "name": name,
        "unit": unit,
        "better": better,
        "values": {system: round(median(values), 3) for system, values in samples.items()},
        "samples": {system: [round(v, 3) for v in values] for system, values in samples.items()},
        **extra,
    }


def ratio(row_: dict, reference: str, system: str = "replaydesk") -> float | None:
    """How many times the reference's speed Replaydesk has: > 1 is faster, whatever the unit."""
    mine, theirs = row_["values"].get(system), row_["values"].get(reference)
    if not mine or not theirs:
        return None
    return mine / theirs if row_["better"] == "higher" else theirs / mine
