"""The console's own audit trail: events in the store itself, category `console` (DESIGN.md §4).

Written in the same transaction as the action they describe, so an action is never without its record.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from streams.services import append_events


def record(
    *, subject: str, type: str, actor: str, data: dict[str, Any], request: HttpRequest | None = None
) -> None:
    """Append one audit event to the stream `console-<subject>` (e.g. console-consumer.users_directory)."""
    metadata: dict[str, Any] = {"actor": actor or "system"}
    if request is not None:
        metadata["ip"] = request.META.get("REMOTE_ADDR", "")
        metadata["user_agent"] = request.headers.get("User-Agent", "")[:500]
    append_events(
        stream=f"console-{subject}",
        events=[{"type": type, "data": data, "metadata": metadata}],
        actor=actor or "system",
    )
