"""Links on a source's page to what other apps can do about it (recovery offers its jobs there: a verify
of the copy), as consumer_links.py does for a consumer's page: each app registers a provider from its
AppConfig.ready(), and the page shows what the providers give, to those who may operate."""

from __future__ import annotations

from collections.abc import Callable

from streams.consumer_links import Link
from streams.models import Source

Provider = Callable[[Source], list[Link]]

_providers: list[Provider] = []


def offer(provider: Provider) -> None:
    """Show what `provider` gives on every source's page."""
    if provider not in _providers:
        _providers.append(provider)


def links_for(source: Source) -> list[Link]:
    return [link for provider in _providers for link in provider(source)]
