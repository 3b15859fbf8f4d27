"""Figures as a person reads them: durations ("3 min 12 s"), rates ("12.5/s"); and a mapping's item."""

from __future__ import annotations

from django import template

register = template.Library()

_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))


@register.filter
def duration(seconds: float | None) -> str:
    """The two largest units of a number of seconds: "0 s", "42 s", "3 min 12 s", "2 d 4 h"."""
    if seconds is None:
        return "—"
    left = round(seconds)
    if left < 1:
        return "0 s" if seconds == 0 else "under 1 s"
    parts = []
    for unit, size in _UNITS:
        if left >= size:
            parts.append(f"{left // size} {unit}")
            left %= size
        elif parts:
            break
    return " ".join(parts[:2])


@register.filter
def per_second(rate: float | None) -> str:
    if rate is None:
        return "—"
    if rate >= 100:
        return f"{rate:,.0f}/s"
    return f"{rate:.1f}/s" if rate >= 1 or rate == 0 else f"{rate:.2f}/s"


@register.filter
def get_item(mapping: dict, key: str):
    return mapping.get(key)
