"""Projections: Python code that folds events into PostgreSQL tables in a schema of its own.

The contract (every attribute and method, its default and its rules) is docs/projections.md, with a guide
that writes one from nothing; `contract_errors` is where it is checked. A projection declares its name,
version, what it follows, the tables it owns and how it folds a batch (`apply` over Event objects, or
`apply_rows`, set-based SQL over the batch inside PostgreSQL: streams/batches.py). Its tables live in the
schema `proj_<name>` together with its checkpoint, and the fold runs with that schema first on the
search_path, in the same transaction that moves the checkpoint: effects happen exactly once.

Projections are found in the `projections` module of every installed app (REPLAYDESK_APPS adds yours).
Defining a subclass with a `name` checks it against the contract and registers it: a projection that
breaks the contract, or takes another one's name, stops the start with ImproperlyConfigured naming it.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.backends.utils import CursorWrapper

from streams import batches, selectors
from streams.models import Event
from streams.validation import TYPE_RE

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SCHEMA_PREFIX = "proj_"
# The runner's own tables in every projection schema.
RESERVED_TABLES = ("checkpoint", "stream_checkpoint")
_IDENTIFIER = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_CREATE_TABLE = re.compile(
    rf"\s*CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_IDENTIFIER})(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_INDEX = re.compile(
    rf"\s*CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:{_IDENTIFIER}\s+)?ON\s+(?:ONLY\s+)?"
    rf"(?P<name>{_IDENTIFIER})(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL,
)

_registry: dict[str, Projection] = {}

# Live batches in one batch of a replay, restore or verify, unless the projection says (replay_batch_size):
# a fold of Event objects holds its batch in Python; a set-based fold's stays in PostgreSQL, where bigger
# batches cost fewer statements and commits per event (bench/README.md, *Replay and restore*).
REPLAY_LIVE_BATCHES = 10
REPLAY_LIVE_BATCHES_SET_BASED = 40


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
    # fewer commits. None: REPLAY_LIVE_BATCHES live batches (REPLAY_LIVE_BATCHES_SET_BASED for apply_rows).
    replay_batch_size: ClassVar[int | None] = None
    # Whether the fold (apply or apply_rows) finds rows through the plain, not unique, indexes of
    # `tables`. When False, a replay, restore or verify builds them once its lanes are done, instead of
    # keeping them up row by row while the lanes apply the log; primary keys and unique indexes are there
    # from the start (ON CONFLICT and look-ups by key need them).
    fold_reads_indexes: ClassVar[bool] = True

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract base
        errors = contract_errors(cls)
        if errors:
            raise ImproperlyConfigured(
                f"projection {cls.name!r} ({_where(cls)}) breaks the projection contract "
                f"(docs/projections.md): {'; '.join(errors)}"
            )
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
        own = self.replay_batch_size or self.batch_size * (
            REPLAY_LIVE_BATCHES_SET_BASED if self.set_based else REPLAY_LIVE_BATCHES
        )
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


def contract_errors(cls: type[Projection]) -> list[str]:
    """What a projection class declares against the contract (docs/projections.md); empty when it keeps it."""
    errors = []
    if not isinstance(cls.name, str) or not NAME_RE.fullmatch(cls.name):
        errors.append("name: use 1–40 of a-z, 0-9 and _, starting with a letter")
    if not _count(cls.version):
        errors.append(f"version is a whole number from 1, not {cls.version!r}")
    errors += _names_errors("categories", cls.categories, lambda c: bool(c) and "-" not in c, "without '-'")
    errors += _names_errors("types", cls.types, TYPE_RE.fullmatch, "starting with a letter")
    errors += _tables_errors(cls.tables)
    if cls.apply is Projection.apply and cls.apply_rows is Projection.apply_rows:
        errors.append("it defines neither apply(cursor, events) nor apply_rows(cursor, rows)")
    if cls.on_failure not in ("stop", "park"):
        errors.append(f"on_failure is 'stop' or 'park', not {cls.on_failure!r}")
    for setting in ("max_attempts", "batch_size"):
        if not _count(getattr(cls, setting)):
            errors.append(f"{setting} is a whole number from 1, not {getattr(cls, setting)!r}")
    if not isinstance(cls.fold_reads_indexes, bool):
        errors.append(f"fold_reads_indexes is True or False, not {cls.fold_reads_indexes!r}")
    if cls.replay_batch_size is not None and not _count(cls.replay_batch_size):
        errors.append(f"replay_batch_size is None or a whole number from 1, not {cls.replay_batch_size!r}")
    for method in ("forget", "fold_stream"):
        if method in dir(cls) and not callable(getattr(cls, method)):
            errors.append(f"{method} is a method")
    return errors


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _names_errors(attribute: str, value: Any, valid: Any, rule: str) -> list[str]:
    if not isinstance(value, tuple | list):
        # ("order") is the string "order", not a tuple: it would follow the categories o, r, d, e.
        return [f"{attribute} is a tuple of strings (write ({value!r},) for one), not {value!r}"]
    bad = [item for item in value if not isinstance(item, str) or not valid(item)]
    return [f"{attribute}: {', '.join(map(repr, bad))} (each is a string {rule})"] if bad else []


def _tables_errors(tables: Any) -> list[str]:
    if not isinstance(tables, tuple | list) or not all(isinstance(t, str) for t in tables):
        return ["tables is a tuple of SQL statements (CREATE TABLE, CREATE INDEX)"]
    errors, created = [], 0
    for statement in tables:
        quoted = " ".join(statement.split())
        quoted = repr(quoted if len(quoted) <= 60 else quoted[:60] + "…")
        if ";" in statement.strip().rstrip(";"):
            errors.append(f"tables: one statement each, no ';' inside ({quoted})")
            continue
        table, index = _CREATE_TABLE.fullmatch(statement), _CREATE_INDEX.fullmatch(statement)
        found = table or index
        if found is None:
            errors.append(f"tables: {quoted} is not a CREATE TABLE or CREATE INDEX statement")
        elif found["rest"].lstrip().startswith("."):
            errors.append(
                f"tables: {quoted} names a schema; names are unqualified (the runner puts them in the "
                "projection's own schema)"
            )
        elif found["name"].strip('"').lower() in RESERVED_TABLES and table:
            errors.append(f"tables: {found['name']} is the runner's own table; choose another name")
        created += table is not None
    if not created and not errors:
        errors.append("tables: declare at least one CREATE TABLE statement (the tables it keeps)")
    return errors


def _where(cls: type[Projection]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def projections() -> dict[str, Projection]:
    return dict(_registry)


def get_projection(name: str) -> Projection | None:
    return _registry.get(name)


def quote(identifier: str) -> str:
    return connection.ops.quote_name(identifier)


def create_schema(
    projection: Projection, schema: str | None = None, *, indexes: Literal["all", "unique", "none"] = "all"
) -> None:
    """Create the projection's schema with its tables and an empty checkpoint, unless it exists, with the
    CREATE INDEX statements that `indexes` names: all, only the unique ones (the plain ones built later by
    create_indexes), or none (all built after a bulk load)."""
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
            index = _CREATE_INDEX.fullmatch(statement)
            if index is None or indexes == "all" or (indexes == "unique" and index["unique"]):
                cursor.execute(statement)
        cursor.execute("SET LOCAL search_path TO DEFAULT")


def create_indexes(
    projection: Projection, schema: str, *, which: Literal["all", "unique", "plain"] = "all"
) -> None:
    """Run the projection's CREATE INDEX statements in `schema` that create_schema left out: `which` is
    "all", "unique" or "plain". An index built once over loaded rows costs less than one kept up by every
    row of the load."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL search_path TO {quote(schema)}, public")
        for statement in projection.tables:
            index = _CREATE_INDEX.fullmatch(statement)
            if index is not None and (which == "all" or (which == "unique") == bool(index["unique"])):
                cursor.execute(statement)
        cursor.execute("SET LOCAL search_path TO DEFAULT")


def read_checkpoint(projection: Projection, schema: str | None = None) -> tuple[int, int] | None:
    """(position, version) of the projection's schema, or None when it has none yet."""
    schema = schema or projection.schema
    return read_checkpoints([schema]).get(schema)


def read_checkpoints(schemas: list[str]) -> dict[str, tuple[int, int]]:
    """(position, version) of each of these projection schemas that has a checkpoint: two statements
    however many they are (which of them have one, then all of those checkpoints)."""
    if not schemas:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT schema FROM unnest(%s::text[]) AS schema"
            " WHERE to_regclass(schema || '.checkpoint') IS NOT NULL",
            [schemas],
        )
        present = [row[0] for row in cursor.fetchall()]
        if not present:
            return {}
        cursor.execute(
            " UNION ALL ".join(
                f"SELECT {i}, position, version FROM {quote(schema)}.checkpoint"
                for i, schema in enumerate(present)
            )
        )
        return {present[i]: (position, version) for i, position, version in cursor.fetchall()}


def add(cls: type[Projection]) -> None:
    existing = _registry.get(cls.name)
    if existing is not None and _where(type(existing)) != _where(cls):
        raise ImproperlyConfigured(
            f"two projections are named {cls.name!r}: {_where(type(existing))} and {_where(cls)}; "
            "rename one (its name is its schema, proj_<name>, and its consumer's name)"
        )
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
