"""Source kinds: what the follower (streams/source_follow.py) needs to know about one kind of external
event store, and the registry of them.

A kind checks its options, says what a read-only role must be allowed to read (`check_access`), reads
the source's events after a position in the source's own order (`read`, which stops where the source is
not yet final: streams/source_horizon.py), and maps each to an event of the log: its stream, its
sequence there (from 1), its id (kept, or derived from the stream and sequence when the source has
none), type, data, metadata and time.

A kind that can be written back to (after the source's database was restored from an old backup) opens
a `SourceWriter` on its own write path.

A new kind is one module in this package with a SourceKind subclass and its `name`: defining the class
registers it, and `kinds()` imports the modules. `replaydesk source kinds` lists them with their
options; docs/sources.md describes each.
"""

from __future__ import annotations

import datetime as dt
import pkgutil
import uuid
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, ClassVar

import psycopg

_registry: dict[str, SourceKind] = {}
# Ids derived for events whose source keeps none: the same stream and sequence give the same id, on
# every server and in every version.
DERIVED_ID_NAMESPACE = uuid.UUID("5f0cbb0e-8f4c-4c0e-9a55-5e1e7d0c2b7a")


class SourceError(Exception):
    """A source that cannot be followed as configured; the message says what to fix."""


@dataclass(frozen=True)
class SourceEvent:
    """One event of a source, as the log will keep it. `problem` says why it cannot be copied as it is
    (its state cannot be decoded, say): it is parked with that reason instead."""

    position: int
    stream: str
    sequence: int | None
    id: uuid.UUID | None
    type: str
    data: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    recorded_at: dt.datetime | None = None
    problem: str = ""


@dataclass(frozen=True)
class Snapshot:
    """The source's transaction horizon when a read was made: `xmin`, the oldest transaction still in
    progress, and `xmax`, the first not yet started (xid8, as integers)."""

    xmin: int
    xmax: int


@dataclass(frozen=True)
class Read:
    """What one read found: events after the position asked, in the source's order, up to `limit`;
    the source's last position (`top`, 0 when it has none), the horizon it was read at, and the event
    at the position asked."""

    events: list[SourceEvent]
    top: int
    snapshot: Snapshot
    # The source's event at the position asked (None when it has none there, or none was asked: 0):
    # the follower checks that it is still the event it copied there.
    at: SourceEvent | None = None


def derived_id(stream: str, sequence: int) -> uuid.UUID:
    return uuid.uuid5(DERIVED_ID_NAMESPACE, f"{stream}@{sequence}")


class SourceKind:
    name: ClassVar[str]
    # One line for the form and the command line's help.
    help: ClassVar[str] = ""
    # The options it takes, with a line on each.
    options_help: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "name", None):
            if cls.name in _registry and type(_registry[cls.name]) is not cls:
                raise ValueError(f"two source kinds are named {cls.name!r}")
            _registry[cls.name] = cls()

    def check_options(self, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """The options with their defaults, and what is wrong with them, option by option."""
        raise NotImplementedError

    def check_access(self, connection: psycopg.Connection, options: dict[str, Any]) -> None:
        """Read what following needs to read (SourceError says what is missing), and nothing more."""
        raise NotImplementedError

    def read(
        self, connection: psycopg.Connection, options: dict[str, Any], *, after: int, limit: int
    ) -> Read:
        """The events after position `after` in the source's order, at most `limit`, with the source's
        top position and horizon, all at one snapshot of the source."""
        raise NotImplementedError

    def count(self, connection: psycopg.Connection, options: dict[str, Any], *, after: int) -> int | None:
        """How many events the source has after position `after` (a backfill's total); None when the
        kind cannot say cheaply."""
        return None

    def writer(self, dsn: str, options: dict[str, Any]) -> SourceWriter:
        """What a write-back writes through (recovery/kinds/write_back.py): the source's own write path,
        reached with `dsn`, a role that may write."""
        raise SourceError(f"Replaydesk cannot write back to a {self.name} source")


class SourceWriter:
    """A source opened for a write-back: close it when done (a context manager)."""

    def check_access(self) -> None:
        """The role may write what a write-back writes; SourceError says what is missing."""
        raise NotImplementedError

    def tails(self, streams: list[str]) -> dict[str, SourceEvent]:
        """The source's last event in each of these streams of the log that it holds any of, mapped as
        `read` maps it."""
        raise NotImplementedError

    def write(self, events: list[SourceEvent]) -> None:
        """Write the events of the log (a stream's in its order, after the source's tail of it) in one
        transaction of the source, through its own write path. A stream the source has written to
        meanwhile is a SourceError naming it, and nothing of the batch is written."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SourceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def discover() -> None:
    import streams.source_kinds as package

    for module in pkgutil.iter_modules(package.__path__):
        import_module(f"{package.__name__}.{module.name}")


def kinds() -> list[SourceKind]:
    discover()
    return sorted(_registry.values(), key=lambda kind: kind.name)


def get(name: str) -> SourceKind | None:
    discover()
    return _registry.get(name)
