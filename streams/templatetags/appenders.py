"""Who appended an event, as the pages show it beside the actor the event claims (core/principals.py)."""

from __future__ import annotations

from django import template

from core import principals
from streams.models import Event

register = template.Library()


@register.filter
def appended_by_another(event: Event) -> bool:
    """Whether the store recorded someone other than the claimed actor appending the event."""
    return not principals.claimed_by_self(appended_by=event.appended_by, actor=event.actor)
