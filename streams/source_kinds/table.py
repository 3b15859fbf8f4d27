"""A PostgreSQL table you name: home-grown event tables, Marten's `mt_events`, anything with a row per
event and a position drawn from a sequence. The options name the table and its columns by role."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import psycopg
from psycopg import sql

from streams.source_kinds import (
    Read,
    Snapshot,
    SourceError,
    SourceEvent,
    SourceKind,
    SourceWriter,
    derived_id,
)

IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# The roles of the columns: those a source must have, and those it may.
REQUIRED = ("position", "stream", "sequence", "type", "data")
OPTIONAL = ("metadata", "time", "id")


def split_table(name: str) -> tuple[str, ...] | None:
    parts = tuple(name.split("."))
    if not 1 <= len(parts) <= 2 or not all(IDENTIFIER_RE.match(part) for part in parts):
        return None
    return parts


class TableSource(SourceKind):
    name = "table"
    help = "A PostgreSQL table of events you name, with its columns by role."
    options_help = {
        "table": "the table, schema-qualified or not (e.g. public.mt_events)",
        **{role: f"the column that holds the event's {role}" for role in REQUIRED},
        "metadata": "the column of the event's metadata (optional: none)",
        "time": "the column of the time the event was recorded (optional: when it is copied)",
        "id": "the column of the event's id, a UUID (optional: derived from the stream and sequence)",
        "first_sequence": "the sequence of a stream's first event in the source, 0 or 1 (default 1)",
    }

    def check_options(self, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        errors: dict[str, list[str]] = {}
        checked: dict[str, Any] = {}
        for unknown in sorted(set(options) - set(self.options_help)):
            errors.setdefault(unknown, []).append(
                f"a table source takes no option {unknown!r}; it takes {', '.join(sorted(self.options_help))}"
            )
        table = options.get("table")
        if not isinstance(table, str) or split_table(table) is None:
            errors.setdefault("table", []).append(
                "name the table: NAME or SCHEMA.NAME, letters, digits and _"
            )
        checked["table"] = table
        for role in (*REQUIRED, *OPTIONAL):
            column = options.get(role)
            if column in (None, "") and role in OPTIONAL:
                checked[role] = None
                continue
            if not isinstance(column, str) or not IDENTIFIER_RE.match(column):
                errors.setdefault(role, []).append(f"name the column that holds the {role}")
            checked[role] = column
        checked["first_sequence"] = first_sequence(options, errors)
        return checked, errors

    def check_access(self, connection: psycopg.Connection, options: dict[str, Any]) -> None:
        check_table(connection, options)

    def read(
        self, connection: psycopg.Connection, options: dict[str, Any], *, after: int, limit: int
    ) -> Read:
        rows, top, snapshot, at = read_rows(connection, options, after=after, limit=limit)
        first = options["first_sequence"]
        return Read(
            events=[self._event(row, first) for row in rows],
            top=top,
            snapshot=snapshot,
            at=self._event(at, first) if at else None,
        )

    def count(self, connection: psycopg.Connection, options: dict[str, Any], *, after: int) -> int | None:
        statement = sql.SQL("SELECT count(*) FROM {table} WHERE {position} > %s").format(
            table=sql.Identifier(*split_table(options["table"])), position=sql.Identifier(options["position"])
        )
        return connection.execute(statement, [after]).fetchone()[0]

    def writer(self, dsn: str, options: dict[str, Any]) -> SourceWriter:
        return TableWriter(dsn, options, event=self._event_of(options))

    def _event_of(self, options: dict[str, Any]):
        first = options["first_sequence"]
        return lambda row: self._event(row, first)

    def _event(self, row: tuple, first_sequence: int) -> SourceEvent:
        position, stream, sequence, type_, data, metadata, recorded_at, event_id = row
        problems = []
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError:
                problems.append("its data is not JSON")
        if isinstance(metadata, str | bytes):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                problems.append("its metadata is not JSON")
        if metadata is not None and not isinstance(metadata, dict):
            problems.append("its metadata is not a JSON object")
        ours = None
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            ours = sequence - first_sequence + 1
        else:
            problems.append(f"its sequence {sequence!r} is not a whole number")
        if event_id is not None and not isinstance(event_id, uuid.UUID):
            try:
                event_id = uuid.UUID(str(event_id))
            except ValueError:
                problems.append(f"its id {event_id!r} is not a UUID")
                event_id = None
        if event_id is None and ours is not None and stream:
            event_id = derived_id(str(stream), ours)
        if recorded_at is not None and not isinstance(recorded_at, dt.datetime):
            problems.append("its time is not a timestamp")
            recorded_at = None
        return SourceEvent(
            position=position,
            stream=str(stream or ""),
            sequence=ours,
            id=event_id,
            type=str(type_ or ""),
            data=data,
            metadata=metadata if isinstance(metadata, dict) else {},
            recorded_at=recorded_at,
            problem="; ".join(problems),
        )


# --- what every kind whose source is one PostgreSQL table shares (this one, the eventsourcing library's)


def first_sequence(options: dict[str, Any], errors: dict[str, list[str]]) -> Any:
    """The `first_sequence` option (the sequence of a stream's first event in the source: 0 or 1)."""
    first = options.get("first_sequence", 1)
    if isinstance(first, str) and first.isdigit():
        first = int(first)
    if first not in (0, 1) or isinstance(first, bool):
        errors.setdefault("first_sequence", []).append("must be 0 or 1")
    return first


def table_columns(connection: psycopg.Connection, table: str) -> dict[str, str] | None:
    """The table's columns and their types; None when there is no table of that name the role can see."""
    try:
        found = connection.execute("SELECT to_regclass(%s)::oid", [table]).fetchone()[0]
    except psycopg.Error as exc:
        raise SourceError(f"cannot look up table {table}: {_first_line(exc)}") from None
    if found is None:
        return None
    return dict(
        connection.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped",
            [found],
        ).fetchall()
    )


def check_table(connection: psycopg.Connection, options: dict[str, Any]) -> None:
    """The table named by `options` (a table source's options: the table and its columns by role) is
    there with those columns, and the role may read it and may not write to it."""
    columns = table_columns(connection, options["table"])
    if columns is None:
        raise SourceError(f"the source has no table named {options['table']} (or the role cannot see it)")
    missing = [
        f"{role} ({options[role]})"
        for role in (*REQUIRED, *OPTIONAL)
        if options[role] and options[role] not in columns
    ]
    if missing:
        raise SourceError(f"table {options['table']} has no column for {', '.join(missing)}")
    writes = connection.execute(
        "SELECT has_table_privilege(to_regclass(%s), 'INSERT, UPDATE, DELETE, TRUNCATE')", [options["table"]]
    ).fetchone()[0]
    if writes:
        raise SourceError(
            f"the DSN's role may write to {options['table']}: following only reads, so give it a role "
            "that may only SELECT (a read-only role limits what a leaked DSN can do)"
        )
    try:
        read_rows(connection, options, after=0, limit=1)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SourceError(f"the DSN's role may not read {options['table']}: {_first_line(exc)}") from None


def read_rows(
    connection: psycopg.Connection, options: dict[str, Any], *, after: int, limit: int
) -> tuple[list[tuple], int, Snapshot, tuple | None]:
    """The rows after position `after` (at most `limit`: the columns of REQUIRED then OPTIONAL, NULL
    for an optional one not named), the table's top position (0 when empty), the horizon and the row
    at `after` itself (None when there is none, or `after` is 0), all in one REPEATABLE READ
    transaction, so that they agree (streams/source_horizon.py)."""
    table = sql.Identifier(*split_table(options["table"]))
    position = sql.Identifier(options["position"])
    columns = [
        sql.Identifier(options[role]) if options[role] else sql.NULL for role in (*REQUIRED, *OPTIONAL)
    ]
    rows_sql = sql.SQL(
        "SELECT {columns} FROM {table} WHERE {position} >= %s ORDER BY {position} LIMIT %s"
    ).format(columns=sql.SQL(", ").join(columns), table=table, position=position)
    top_sql = sql.SQL(
        "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text,"
        " (SELECT max({position}) FROM {table}) FROM pg_current_snapshot() s"
    ).format(position=position, table=table)
    with connection.transaction(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        xmin, xmax, top = cursor.execute(top_sql).fetchone()
        rows = cursor.execute(rows_sql, [after, limit + 1]).fetchall()
    at = rows.pop(0) if rows and after and rows[0][0] == after else None
    return rows[:limit], top or 0, Snapshot(xmin=int(xmin), xmax=int(xmax)), at


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- writing back


# The column types a write-back writes JSON into.
JSON_TYPES = ("jsonb", "json", "text")


class TableWriter(SourceWriter):
    """Writes back with INSERTs into the mapped columns, in one transaction a batch; the table draws
    the position (its column's default) as it does for the team's own writes. `event` maps a row as the
    kind's read does; `key` turns a stream of the log into what the stream column holds."""

    def __init__(self, dsn: str, options: dict[str, Any], *, event, key=str):
        from streams import source_connect

        self.options, self.event, self.key = options, event, key
        self.connection = source_connect.connect(dsn, writes=True)
        self.types = table_columns(self.connection, options["table"]) or {}

    def close(self) -> None:
        self.connection.close()

    def check_access(self) -> None:
        options, table = self.options, self.options["table"]
        columns = table_columns(self.connection, table)
        if columns is None:
            raise SourceError(f"the write DSN's role cannot see a table named {table}")
        if not self._may("has_table_privilege(to_regclass(%s), 'INSERT')", table):
            raise SourceError(
                f"the write DSN's role may not INSERT into {table}: GRANT INSERT ON {table} to it"
            )
        drawn = self.connection.execute(
            "SELECT atthasdef OR attidentity <> '' FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attname = %s",
            [table, options["position"]],
        ).fetchone()
        if not drawn or not drawn[0]:
            raise SourceError(
                f"{table}.{options['position']} has no default: a write-back lets the table draw each "
                "event's position, as the team's writers do (a bigserial or identity column)"
            )
        sequence = self.connection.execute(
            "SELECT pg_get_serial_sequence(%s, %s)", [table, options["position"]]
        ).fetchone()[0]
        if sequence and not self._may("has_sequence_privilege(%s, 'USAGE')", sequence):
            raise SourceError(f"the write DSN's role may not use {sequence}: GRANT USAGE ON SEQUENCE to it")
        for role in ("data", "metadata"):
            column = options.get(role)
            if column and columns[column] not in JSON_TYPES:
                raise SourceError(
                    f"{table}.{column} is of type {columns[column]}: a write-back writes the {role} as "
                    f"{', '.join(JSON_TYPES)}"
                )

    def _may(self, check: str, name: str) -> bool:
        return bool(self.connection.execute(f"SELECT {check}", [name]).fetchone()[0])

    def tails(self, streams: list[str]) -> dict[str, SourceEvent]:
        options = self.options
        keys = {self.key(stream): stream for stream in streams}
        keys.pop(None, None)
        if not keys:
            return {}
        columns = [
            sql.Identifier(options[role]) if options[role] else sql.NULL for role in (*REQUIRED, *OPTIONAL)
        ]
        statement = sql.SQL(
            "SELECT DISTINCT ON ({stream}) {columns} FROM {table} WHERE {stream} = ANY(%s)"
            " ORDER BY {stream}, {sequence} DESC"
        ).format(
            columns=sql.SQL(", ").join(columns),
            table=sql.Identifier(*split_table(options["table"])),
            stream=sql.Identifier(options["stream"]),
            sequence=sql.Identifier(options["sequence"]),
        )
        found = {}
        for row in self.connection.execute(statement, [list(keys)]).fetchall():
            event = self.event(row)
            found[event.stream] = event
        return found

    def write(self, events: list[SourceEvent]) -> None:
        options = self.options
        roles = [
            role for role in ("stream", "sequence", "type", "data", "metadata", "time", "id") if options[role]
        ]
        statement = sql.SQL("INSERT INTO {table} ({columns}) VALUES ({values})").format(
            table=sql.Identifier(*split_table(options["table"])),
            columns=sql.SQL(", ").join(sql.Identifier(options[role]) for role in roles),
            values=sql.SQL(", ").join(
                sql.SQL("CAST(%s AS {})").format(sql.SQL(self.types[options[role]]))
                if role in ("data", "metadata")
                else sql.Placeholder()
                for role in roles
            ),
        )
        first = options["first_sequence"]
        rows = []
        for event in events:
            values = {
                "stream": self.key(event.stream),
                "sequence": event.sequence + first - 1,
                "type": event.type,
                "data": json.dumps(event.data),
                "metadata": json.dumps(event.metadata) if event.metadata else None,
                "time": event.recorded_at,
                "id": event.id,
            }
            rows.append([values[role] for role in roles])
        try:
            with self.connection.transaction(), self.connection.cursor() as cursor:
                cursor.executemany(statement, rows)
        except psycopg.errors.UniqueViolation as exc:
            raise SourceError(f"the source holds some of these events already: {_first_line(exc)}") from None
