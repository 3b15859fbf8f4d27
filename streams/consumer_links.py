"""Links on a consumer's page to what other apps can do about it (recovery offers its jobs there).

The store does not know those apps: each registers a provider from its AppConfig.ready(), and the page
shows what the providers give, in the order they give it (docs/architecture.md, Layers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streams.models import Consumer


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    # A button for an action; a plain link for somewhere to look.
    button: bool = True


Provider = Callable[[Consumer], list[Link]]

_providers: list[Provider] = []


def offer(provider: Provider) -> None:
    """Show what `provider` gives on every consumer's page."""
    if provider not in _providers:
        _providers.append(provider)


def links_for(consumer: Consumer) -> list[Link]:
    return [link for provider in _providers for link in provider(consumer)]
