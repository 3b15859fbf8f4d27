"""What a drill's report needs on a page: its checks by name."""

from __future__ import annotations

from django import template

from recovery import drill

register = template.Library()


@register.filter
def check_name(check: str) -> str:
    return drill.check_name(check)
