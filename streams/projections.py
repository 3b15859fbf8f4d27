"""Projections: Python code that folds events into PostgreSQL tables in a schema of its own.

A projection declares its name, version, the categories and/or types it follows, the tables it owns
(CREATE TABLE statements with unqualified names) and how it folds a batch: either `apply(cursor, events)`
over Event objects, or `apply_rows(cursor, rows)`, set-based SQL over a relation of the batch's events
that never leave PostgreSQL (streams/batches.py; several times faster on replays). Its tables live in
the schema `proj_<name>` together with its checkpoint, and the fold runs with that schema first on the
search_path, in the same transaction that moves the checkpoint: effects happen exactly once.

Projections are found in the `projections` module of every installed app.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.conf import settings
from django.db import connection
from django.db.backends.utils import CursorWrapper

from streams import batches, selectors
from streams.models import Event

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SCHEMA_PREFIX = "proj_"

_registry: dict[str, Projection] = {}


class Projection:
    name: ClassVar[str]
    version: ClassVar[int] = 1
    categories: ClassVar[tuple[str, ...]] = ()
    types: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[tuple[str, ...]] = ()
    # After max_attempts failures at one event: "stop" (the consumer is failed until an operator acts)
    # or "park" (set the event aside, audited, and go on).
    on_failure: ClassVar[str] = "stop"
    max_attempts: ClassVar[int] = 5
    batch_size: ClassVar[int] = 500
    # Events per batch of a replay, restore or verify (a rebuild schema no reader sees): bigger batches,
    # fewer commits. None: ten live batches.
    replay_batch_size: ClassVar[int | None] = None

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract base
        if not NAME_RE.fullmatch(cls.name):
            raise ValueError(
                f"projection name {cls.name!r}: use 1–40 of a-z, 0-9 and _, starting with a letter"
            )
        if cls.on_failure not in ("stop", "park"):
            raise ValueError(f"projection {cls.name}: on_failure is 'stop' or 'park', not {cls.on_failure!r}")
        if register:
            add(cls)

    def apply(self, cursor: CursorWrapper, events: list[Event]) -> None:
        """Fold a batch of events (in position order) into this projection's tables."""
        if not self.set_based:
            raise NotImplementedError(f"projection {self.name} defines neither apply nor apply_rows")
        batches.load_events(cursor, events)
        self.apply_rows(cursor, batches.TABLE)

    def apply_rows(self, cursor: CursorWrapper, rows: str) -> None:
        """Fold the batch held in the relation `rows` (columns: batches.COLUMNS, one row per event; order
        by position where order matters) into this projection's tables."""
        raise NotImplementedError

    def fold_stream(self, state: dict[str, Any], event: Event) -> dict[str, Any]:
        """Optional: the state of an entity after `event`, for its timeline (streams/timeline.py), as a
        new dict (the one given must not be changed). Without it, a timeline merges each event's data."""
        raise NotImplementedError

    @property
    def folds_streams(self) -> bool:
        return type(self).fold_stream is not Projection.fold_stream

    @property
    def set_based(self) -> bool:
        """Folds with apply_rows: runners load the batch inside PostgreSQL and skip Event objects."""
        cls = type(self)
        return cls.apply_rows is not Projection.apply_rows and cls.apply is Projection.apply

    @property
    def replay_batch(self) -> int:
        own = self.replay_batch_size or self.batch_size * 10
        cap = settings.REPLAYDESK_REPLAY_BATCH_MAX
        return min(own, cap) if cap else own

    @property
    def log_filter(self) -> selectors.LogFilter:
        """What it follows, as the log is read."""
        return selectors.LogFilter(types=tuple(self.types), categories=tuple(self.categories))

    @property
    def schema(self) -> str:
        return SCHEMA_PREFIX + self.name

    def __repr__(self) -> str:
        return f"<Projection {self.name} v{self.version}>"


def projections() -> dict[str, Projection]:
    return dict(_registry)


def get_projection(name: str) -> Projection | None:
    return _registry.get(name)


def quote(identifier: str) -> str:
    return connection.ops.quote_name(identifier)


def create_schema(projection: Projection, schema: str | None = None) -> None:
    """Create the projection's schema with its tables and an empty checkpoint, unless it exists."""
    schema = schema or projection.schema
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        if cursor.fetchone():
            return
        cursor.execute(f"CREATE SCHEMA {quote(schema)}")
        cursor.execute(f"SET LOCAL search_path TO {quote(schema)}, public")
        cursor.execute(
            "CREATE TABLE checkpoint (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row), "
            "position bigint NOT NULL, version integer NOT NULL)"
        )
        cursor.execute("INSERT INTO checkpoint (position, version) VALUES (0, %s)", [projection.version])
        cursor.execute(
            "CREATE TABLE stream_checkpoint (stream_id bigint PRIMARY KEY, sequence bigint NOT NULL)"
        )
        for statement in projection.tables:
            cursor.execute(statement)
        cursor.execute("SET LOCAL search_path TO DEFAULT")


def read_checkpoint(projection: Projection, schema: str | None = None) -> tuple[int, int] | None:
    """(position, version) of the projection's schema, or None when it has none yet."""
    schema = schema or projection.schema
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [f"{schema}.checkpoint"])
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT position, version FROM {quote(schema)}.checkpoint")
        return cursor.fetchone()


def add(cls: type[Projection]) -> None:
    existing = _registry.get(cls.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise ValueError(f"two projections are named {cls.name!r}")
    _registry[cls.name] = cls()


def remove(name: str) -> None:
    """Forget a projection (tests declare throwaway ones with register=False and add them)."""
    _registry.pop(name, None)


def drop_schemas(prefix: str = SCHEMA_PREFIX) -> None:
    """Drop every projection schema (tests; a fresh store)."""
    with connection.cursor() as cursor:
        pattern = prefix.replace("_", r"\_") + "%"
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [pattern])
        for (schema,) in cursor.fetchall():
            cursor.execute(f"DROP SCHEMA {quote(schema)} CASCADE")
