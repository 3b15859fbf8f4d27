"""A sink's settings as the console shows them: never a password that sits in its URL."""

from __future__ import annotations

from django import template

from streams.sink_config import public_url as _public_url

register = template.Library()


@register.filter
def public_url(url: str) -> str:
    return _public_url(url)
