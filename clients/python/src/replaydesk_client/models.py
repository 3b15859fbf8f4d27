"""What goes in and what comes back, as typed values."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NewEvent:
    """An event to append. Leave `id` out and the client gives it one before the first try, so a retry
    sends the same id and the server records the event once."""

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID | None = None


@dataclass(frozen=True)
class AppendResult:
    stream: str
    version: int
    first_sequence: int
    positions: tuple[int, ...]
    event_ids: tuple[uuid.UUID, ...]
    replayed: bool
    """True when the server had recorded these events already (a retry): this is the original result."""

    @property
    def position(self) -> int:
        """The position of the last event: what to wait for to read your own writes."""
        return self.positions[-1]


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    stream: str
    sequence: int
    position: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    actor: str
    appended_by: str | None
    """Who the server authenticated as appending it (`user:NAME`, …); None for events from before that."""
    appended_via: str | None
    recorded_at: dt.datetime

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Event:
        return cls(
            id=uuid.UUID(item["id"]),
            stream=item["stream"],
            sequence=item["sequence"],
            position=item["position"],
            type=item["type"],
            data=item["data"],
            metadata=item["metadata"],
            actor=item["actor"],
            appended_by=item.get("appended_by"),
            appended_via=item.get("appended_via"),
            recorded_at=dt.datetime.fromisoformat(item["recorded_at"]),
        )
