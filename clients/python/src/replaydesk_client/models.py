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


@dataclass(frozen=True)
class Batch:
    """What a subscription's fetch hands a reader: events of one partition, in position order (each
    stream's in sequence order), under a lease. No events: nothing to deliver before the wait ran out
    (partition and lease are then None, unless the reader holds a partition with events yet to
    acknowledge)."""

    partition: int | None
    lease: uuid.UUID | None
    """Acknowledge or nack under this lease."""
    lease_expires_at: dt.datetime | None
    """Unless an ack, a nack or a fetch of this reader renews it before (the server's clock)."""
    checkpoint: int | None
    """The partition's checkpoint: every event of it up to here is acknowledged."""
    delivered_up_to: int | None
    """The lease has delivered the partition's events up to here."""
    events: tuple[Event, ...]

    @property
    def positions(self) -> tuple[int, ...]:
        return tuple(event.position for event in self.events)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Batch:
        return cls(
            partition=body["partition"],
            lease=uuid.UUID(body["lease"]) if body["lease"] else None,
            lease_expires_at=_time(body["lease_expires_at"]),
            checkpoint=body["checkpoint"],
            delivered_up_to=body["delivered_up_to"],
            events=tuple(Event.from_json(item) for item in body["events"]),
        )


@dataclass(frozen=True)
class Acknowledged:
    """A partition after an ack: its checkpoint, and the lease renewed until `lease_expires_at`."""

    partition: int
    checkpoint: int
    delivered_up_to: int
    lease_expires_at: dt.datetime

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Acknowledged:
        return cls(
            partition=body["partition"],
            checkpoint=body["checkpoint"],
            delivered_up_to=body["delivered_up_to"],
            lease_expires_at=dt.datetime.fromisoformat(body["lease_expires_at"]),
        )


@dataclass(frozen=True)
class Nacked(Acknowledged):
    """A partition after a nack. The event is delivered again with what followed it, unless it was
    `parked` (its max_nacks-th nack in a row): then the checkpoint has passed it."""

    nacks: int
    """Nacks in a row of the event; 0 once it is parked."""
    parked: bool

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Nacked:
        acknowledged = Acknowledged.from_json(body)
        return cls(**vars(acknowledged), nacks=body["nacks"], parked=body["parked"])


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None
