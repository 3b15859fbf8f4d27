"""Message DB (Eventide's event store on PostgreSQL): its `messages` table, followed in `global_position`
order. It is a table of a fixed shape, so this kind reads it as the `table` kind does (one REPEATABLE
READ transaction with its horizon: streams/source_horizon.py) through a fixed mapping of its columns:

    global_position → position, stream_name → stream, position (0-based) → sequence - 1,
    type, data, metadata, time (UTC, without a zone) → recorded_at, id → id.

Stream names Message DB takes and the log does not (a compound id, `account-123+456`) are parked by the
follower with the log's rule as the reason, as for any source. There is no category filter: a filter
would leave every other category's positions as holes, and each hole costs a settle round; the log's
own category filters serve consumers instead.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from streams.source_kinds import Read, SourceError, SourceEvent, SourceKind, SourceWriter
from streams.source_kinds.table import IDENTIFIER_RE, TableSource, TableWriter

DEFAULT_SCHEMA = "message_store"
# The `table` kind's options for Message DB's table: its columns by role.
COLUMNS = {
    "position": "global_position",
    "stream": "stream_name",
    "sequence": "position",
    "type": "type",
    "data": "data",
    "metadata": "metadata",
    "time": "time",
    "id": "id",
}
# Reads and checks are the table kind's, with the options above.
_table = TableSource()


def table_options(options: dict[str, Any]) -> dict[str, Any]:
    return {"table": f"{options['schema']}.messages", **COLUMNS, "first_sequence": 0}


class MessageDBSource(SourceKind):
    name = "messagedb"
    help = "Message DB (Eventide): its message_store.messages table, in global_position order."
    options_help = {"schema": f"the schema Message DB is installed in (default {DEFAULT_SCHEMA})"}

    def check_options(self, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        errors: dict[str, list[str]] = {}
        for unknown in sorted(set(options) - set(self.options_help)):
            errors[unknown] = [f"a messagedb source takes no option {unknown!r}; it takes schema"]
        schema = options.get("schema") or DEFAULT_SCHEMA
        # Lowercase, as PostgreSQL folds a name it is not given quoted (the table kind's look-up does).
        if not isinstance(schema, str) or not IDENTIFIER_RE.match(schema) or schema != schema.lower():
            errors["schema"] = [
                "name the schema: lowercase letters, digits and _ (Message DB's is message_store)"
            ]
        return {"schema": schema}, errors

    def check_access(self, connection: psycopg.Connection, options: dict[str, Any]) -> None:
        """Message DB's schema must be there and usable; then the table kind's checks on its table
        (its columns, SELECT, and no right to write: Message DB's own `message_store` role may INSERT)."""
        schema = options["schema"]
        usable = connection.execute(
            "SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = %s", [schema]
        ).fetchone()
        if usable is None:
            raise SourceError(
                f"the source has no schema {schema}: is Message DB installed in this database "
                "(or in another schema: see the schema option)?"
            )
        if not usable[0]:
            raise SourceError(
                f"the DSN's role may not use schema {schema}: GRANT USAGE ON SCHEMA {schema} and "
                f"SELECT ON {schema}.messages to it"
            )
        _table.check_access(connection, table_options(options))

    def read(
        self, connection: psycopg.Connection, options: dict[str, Any], *, after: int, limit: int
    ) -> Read:
        return _table.read(connection, table_options(options), after=after, limit=limit)

    def count(self, connection: psycopg.Connection, options: dict[str, Any], *, after: int) -> int | None:
        return _table.count(connection, table_options(options), after=after)

    def writer(self, dsn: str, options: dict[str, Any]) -> SourceWriter:
        return MessageDBWriter(dsn, options)


WRITE_MESSAGE = "write_message(varchar, varchar, varchar, jsonb, jsonb, bigint)"


class MessageDBWriter(TableWriter):
    def __init__(self, dsn: str, options: dict[str, Any]):
        super().__init__(dsn, table_options(options), event=_table._event_of(table_options(options)))
        self.schema = options["schema"]

    def check_access(self) -> None:
        function = f"{self.schema}.{WRITE_MESSAGE}"
        try:
            allowed = self.connection.execute(
                "SELECT has_function_privilege(%s, 'EXECUTE')", [function]
            ).fetchone()[0]
        except psycopg.errors.UndefinedFunction:
            raise SourceError(f"the source has no {function}: is Message DB installed there?") from None
        # write_message runs with its caller's rights: it needs the table's and its sequence's too.
        table = f"{self.schema}.messages"
        inserts = self.connection.execute(
            "SELECT has_table_privilege(to_regclass(%s), 'INSERT'),"
            " coalesce(has_sequence_privilege(pg_get_serial_sequence(%s, 'global_position'), 'USAGE'), true)",
            [table, table],
        ).fetchone()
        if not allowed or not all(inserts):
            raise SourceError(
                f"the write DSN's role may not write messages: it needs EXECUTE on {function}, INSERT on "
                f"{table} and USAGE on its global_position sequence (Message DB's own message_store role "
                "has them)"
            )

    def write(self, events: list[SourceEvent]) -> None:
        statement = f"SELECT {self.schema}.write_message(%s, %s, %s, %s, %s, %s)"
        rows = [
            (
                str(event.id),
                event.stream,
                event.type,
                Jsonb(event.data),
                Jsonb(event.metadata) if event.metadata else None,
                # Message DB counts a stream's messages from 0: the one before this one.
                event.sequence - 2,
            )
            for event in events
        ]
        try:
            with self.connection.transaction(), self.connection.cursor() as cursor:
                cursor.executemany(statement, rows)
        except (psycopg.errors.RaiseException, psycopg.errors.UniqueViolation) as exc:
            raise SourceError(f"Message DB refused the write: {str(exc).strip().splitlines()[0]}") from None
