"""An application built with the `eventsourcing` library (9.4 and later) and its PostgreSQL recorder.

The application recorder keeps the application's events in one table, `<application name lowercased>_events`
(in POSTGRES_SCHEMA, `public` by default): `originator_id` (the aggregate's id), `originator_version`
(its version, from 1), `topic` (the event class as `module:QualName`), `state` (the event's other
attributes, JSON by the library's transcoder, then compressed and encrypted if the application is
configured so) and `notification_id`, the application's own order, drawn from a sequence: the
position. It is read as the table kind reads a table, with the same horizon (table.py's shared helpers,
streams/source_horizon.py).

An event becomes an event of the log as the library would load it: its state decoded by the library's
own mapper parts (its cipher, compressor and JSON transcoder with the transcodings every application
registers), its type the event class's path (`Order.Created`), its stream `<category>-<originator id>`,
the category from the aggregate class (`Order` → `order`) unless the options name it. Its full topic is
kept in the metadata. An event the library's defaults cannot decode (an application's own
transcodings, compression or encryption the source was not given) is parked with the reason.

The library is imported only when a source of this kind is checked or read.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import uuid
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from streams.source_connect import ENV_NAME_RE
from streams.source_kinds import Read, SourceError, SourceEvent, SourceKind, SourceWriter, derived_id
from streams.source_kinds.table import (
    IDENTIFIER_RE,
    TableSource,
    TableWriter,
    check_table,
    first_sequence,
    read_rows,
    table_columns,
)

if TYPE_CHECKING:
    from eventsourcing.persistence import Mapper

# The library's names: the application's table is named after it as PostgresFactory names it.
APPLICATION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_IDENTIFIER = 63
CATEGORY_RE = re.compile(r"^[A-Za-z0-9_.]{1,100}$")
# Topics a source may name, and the one decoding here. Only these: a topic is imported, and options are
# typed by admins. The library's two AES ciphers write the same bytes (nonce, tag, ciphertext), so the one
# on `cryptography` (a dependency already) reads what either wrote, without pycryptodome.
COMPRESSORS = {
    "eventsourcing.compressor:ZlibCompressor": "eventsourcing.compressor:ZlibCompressor",
    "zlib": "zlib",
}
CIPHERS = {
    "eventsourcing.cipher:AESCipher": "eventsourcing.cryptography:AESCipher",
    "eventsourcing.cryptography:AESCipher": "eventsourcing.cryptography:AESCipher",
}
# The library's own rule: a CIPHER_KEY without a CIPHER_TOPIC means this cipher.
DEFAULT_CIPHER = "eventsourcing.cipher:AESCipher"
# What the application recorder's table holds, by the roles of table.py.
COLUMNS = {
    "position": "notification_id",
    "stream": "originator_id",
    "sequence": "originator_version",
    "type": "topic",
    "data": "state",
    "metadata": None,
    "time": None,
    "id": None,
}
# What JSON decodes to and the transcodings leave alone (exact types: a subclass may be registered).
_PLAIN = frozenset({str, int, float, bool, type(None)})
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class EventsourcingSource(SourceKind):
    name = "eventsourcing"
    help = "An application of the eventsourcing library (Python), stored by its PostgreSQL recorder."
    options_help = {
        "application": "the application's name (its class name unless it sets `name`); its table is "
        "<name lowercased>_events",
        "schema": "the schema of its tables, as POSTGRES_SCHEMA (default public)",
        "category": "the streams' category: one for every aggregate (orders), or per aggregate class "
        "(Order=orders,Customer=customer); default the aggregate class in snake case (Order → order)",
        "first_sequence": "the version of an aggregate's first event, 0 or 1 (default 1, the library's)",
        "compressor_topic": "the application's COMPRESSOR_TOPIC, if it compresses its events "
        "(eventsourcing.compressor:ZlibCompressor)",
        "cipher_topic": "the application's CIPHER_TOPIC, if it encrypts its events "
        "(eventsourcing.cipher:AESCipher)",
        "cipher_key_env": "the environment variable of Replaydesk's processes that holds the application's "
        "CIPHER_KEY (the key itself is never stored)",
    }

    def check_options(self, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
        errors: dict[str, list[str]] = {}
        for unknown in sorted(set(options) - set(self.options_help)):
            errors.setdefault(unknown, []).append(
                f"an eventsourcing source takes no option {unknown!r}; "
                f"it takes {', '.join(sorted(self.options_help))}"
            )
        checked: dict[str, Any] = {}
        application = options.get("application")
        if not isinstance(application, str) or not APPLICATION_RE.match(application):
            errors.setdefault("application", []).append(
                "name the application as the library knows it (its class name unless it sets `name`): "
                "letters, digits and _"
            )
        checked["application"] = application
        schema = options.get("schema") or "public"
        if not isinstance(schema, str) or not IDENTIFIER_RE.match(schema):
            errors.setdefault("schema", []).append("name the schema: letters, digits and _")
        checked["schema"] = schema
        checked["category"] = _category_option(options.get("category"), errors)
        checked["first_sequence"] = first_sequence(options, errors)
        checked.update(_codec_options(options, errors))
        if not errors.keys() & {"compressor_topic", "cipher_topic", "cipher_key_env"}:
            try:
                decoder(checked)
            except SourceError as exc:
                errors.setdefault("cipher_key_env", []).append(str(exc))
        return checked, errors

    def check_access(self, connection: psycopg.Connection, options: dict[str, Any]) -> None:
        table = events_table(options)
        columns = table_columns(connection, table)
        if columns is None:
            raise SourceError(
                f"the source has no table {table} (or the role cannot see it): is the application named "
                f"{options['application']}, stored with PERSISTENCE_MODULE=eventsourcing.postgres and "
                f"POSTGRES_SCHEMA={options['schema']}, and has it saved an aggregate yet?"
            )
        if "notification_id" not in columns:
            raise SourceError(
                f"table {table} has no notification_id: an aggregate recorder made it, which keeps no order "
                "across aggregates; following needs the table of an application recorder (an Application's)"
            )
        check_table(connection, table_options(options))

    def read(
        self, connection: psycopg.Connection, options: dict[str, Any], *, after: int, limit: int
    ) -> Read:
        rows, top, snapshot, at = read_rows(connection, table_options(options), after=after, limit=limit)
        found = decoder(options)
        return Read(
            events=[found.event(row) for row in rows],
            top=top,
            snapshot=snapshot,
            at=found.event(at) if at else None,
        )

    def writer(self, dsn: str, options: dict[str, Any]) -> SourceWriter:
        return EventsourcingWriter(dsn, options)


class EventsourcingWriter(TableWriter):
    """Writes back through the library's own application recorder (PostgresApplicationRecorder's
    insert_events: its table lock, so the application's notification order stays gapless for its own
    followers), each event's state encoded by the library's mapper as the application's."""

    def __init__(self, dsn: str, options: dict[str, Any]):
        self.decoder = decoder(options)
        super().__init__(dsn, table_options(options), event=self.decoder.event, key=self._originator_id)
        self.application = options
        self.dsn = dsn
        self._recorder = None

    def _originator_id(self, stream: str) -> Any:
        """The aggregate's id in the log's `<category>-<originator id>` (None when it names none)."""
        _, sep, rest = stream.partition("-")
        if not sep or not rest:
            return None
        if self.types.get("originator_id") == "uuid":
            try:
                return uuid.UUID(rest)
            except ValueError:
                return None
        return rest

    def check_access(self) -> None:
        table = self.options["table"]
        if not self.types:
            raise SourceError(f"the write DSN's role cannot see the application's table {table}")
        # The recorder locks the table IN EXCLUSIVE MODE, which PostgreSQL allows a role that may change
        # its rows; and it draws notification ids from the table's sequence.
        allowed = self.connection.execute(
            "SELECT has_table_privilege(to_regclass(%s), 'INSERT'),"
            " has_table_privilege(to_regclass(%s), 'UPDATE, DELETE, TRUNCATE'),"
            " coalesce(has_sequence_privilege(pg_get_serial_sequence(%s, 'notification_id'), 'USAGE'), true)",
            [table, table, table],
        ).fetchone()
        if not all(allowed):
            raise SourceError(
                f"the write DSN's role may not write as the application's recorder does: it needs INSERT "
                f"and UPDATE on {table} (the recorder locks the table) and USAGE on its notification_id "
                "sequence; the application's own role has them"
            )

    def write(self, events: list[SourceEvent]) -> None:
        from eventsourcing.persistence import IntegrityError, StoredEvent

        first = self.application["first_sequence"]
        stored = []
        for event in events:
            topic = event.metadata.get("topic")
            originator_id = self._originator_id(event.stream)
            if not topic or originator_id is None:
                raise SourceError(
                    f"{event.stream} sequence {event.sequence} was not copied from an eventsourcing "
                    "application (its metadata has no topic, or its stream names no aggregate id)"
                )
            stored.append(
                StoredEvent(
                    originator_id=originator_id,
                    originator_version=event.sequence + first - 1,
                    topic=topic,
                    state=self.decoder.encode(event.data, event.metadata),
                )
            )
        try:
            self.recorder().insert_events(stored)
        except IntegrityError as exc:
            raise SourceError(f"the application holds some of these events already: {exc}") from None

    def recorder(self):
        if self._recorder is None:
            from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
            from psycopg.conninfo import conninfo_to_dict
            from psycopg.rows import dict_row

            from streams import source_connect

            params = conninfo_to_dict(source_connect.checked_conninfo(self.dsn))
            datastore = PostgresDatastore(
                dbname=str(params.get("dbname") or ""),
                host=str(params.get("host") or ""),
                port=str(params.get("port") or 5432),
                user=str(params.get("user") or ""),
                password=str(params.get("password") or ""),
                schema=self.application["schema"],
                originator_id_type="uuid" if self.types.get("originator_id") == "uuid" else "text",
            )
            # Its connections go to the checked address (hostaddr), as every connection to a source does.
            datastore.pool.kwargs = {**params, "row_factory": dict_row}
            table = self.options["table"].rpartition(".")[2]
            self._recorder = PostgresApplicationRecorder(datastore, events_table_name=table)
        return self._recorder

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.datastore.close()
        super().close()

    def count(self, connection: psycopg.Connection, options: dict[str, Any], *, after: int) -> int | None:
        return TableSource().count(connection, table_options(options), after=after)


def events_table(options: dict[str, Any]) -> str:
    """SCHEMA.TABLE of the application's events, named as PostgresFactory.application_recorder names
    it (and cut to PostgreSQL's longest identifier, as the server cut it when it was created)."""
    return f"{options['schema']}.{(options['application'].lower() + '_events')[:MAX_IDENTIFIER]}"


def table_options(options: dict[str, Any]) -> dict[str, Any]:
    return {"table": events_table(options), **COLUMNS}


def _category_option(value: Any, errors: dict[str, list[str]]) -> str | dict[str, str]:
    """The category option: "" (derived), one category, or categories by aggregate class name (a mapping,
    or "Order=orders,Customer=customer" as the command line gives it)."""
    if value in (None, ""):
        return ""
    if isinstance(value, str) and "=" not in value:
        if not CATEGORY_RE.match(value):
            errors.setdefault("category", []).append("a category is letters, digits, _ and . (no -)")
        return value
    if isinstance(value, str):
        pairs = [item.partition("=") for item in value.split(",") if item.strip()]
        value = {key.strip(): category.strip() for key, _, category in pairs}
    if not isinstance(value, dict) or not value:
        errors.setdefault("category", []).append("give a category, or Class=category pairs")
        return ""
    for key, category in value.items():
        if not isinstance(key, str) or not APPLICATION_RE.match(key):
            errors.setdefault("category", []).append(f"{key!r} is not an aggregate class's name")
        if not isinstance(category, str) or not CATEGORY_RE.match(category):
            errors.setdefault("category", []).append(
                f"the category of {key} must be letters, digits, _ and . (no -)"
            )
    return value


def _codec_options(options: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, str]:
    compressor = options.get("compressor_topic") or ""
    if compressor and (not isinstance(compressor, str) or compressor not in COMPRESSORS):
        errors.setdefault("compressor_topic", []).append(
            f"Replaydesk decodes the library's compressors: {', '.join(sorted(COMPRESSORS))}"
        )
    key_env = options.get("cipher_key_env") or ""
    cipher = options.get("cipher_topic") or (DEFAULT_CIPHER if key_env else "")
    if cipher and (not isinstance(cipher, str) or cipher not in CIPHERS):
        errors.setdefault("cipher_topic", []).append(
            f"Replaydesk decodes the library's ciphers: {', '.join(sorted(CIPHERS))}"
        )
    if cipher and not key_env:
        errors.setdefault("cipher_key_env", []).append(
            "name the environment variable that holds the application's CIPHER_KEY"
        )
    elif key_env and (not isinstance(key_env, str) or not ENV_NAME_RE.match(key_env)):
        errors.setdefault("cipher_key_env", []).append(
            "must be an environment variable's name (capitals, digits and _), never the key itself"
        )
    return {"compressor_topic": compressor, "cipher_topic": cipher, "cipher_key_env": key_env}


# --- decoding


def decoder(options: dict[str, Any]) -> Decoder:
    """The library's mapper as the application configures it (its factory reads COMPRESSOR_TOPIC,
    CIPHER_TOPIC and CIPHER_KEY), with the transcodings Application registers."""
    from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
    from eventsourcing.popo import POPOFactory
    from eventsourcing.utils import Environment

    env = {}
    if options["compressor_topic"]:
        env["COMPRESSOR_TOPIC"] = COMPRESSORS[options["compressor_topic"]]
    if options["cipher_topic"]:
        name = options["cipher_key_env"]
        key = os.environ.get(name, "")
        if not key:
            raise SourceError(f"the environment variable {name} that holds the CIPHER_KEY is not set")
        env |= {"CIPHER_TOPIC": CIPHERS[options["cipher_topic"]], "CIPHER_KEY": key}
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    try:
        mapper = POPOFactory(Environment(options["application"], env)).mapper(transcoder=transcoder)
    except ValueError as exc:
        raise SourceError(
            f"the CIPHER_KEY in {options['cipher_key_env']} is not an AES key ({exc}): give the "
            "application's, base64 of 16, 24 or 32 bytes"
        ) from None
    return Decoder(mapper=mapper, options=options)


@dataclass(frozen=True)
class Decoder:
    mapper: Mapper
    options: dict[str, Any]
    # Each topic's event type and category, worked out once.
    named: dict[str, tuple[str, str]] = field(default_factory=dict)

    def event(self, row: tuple) -> SourceEvent:
        position, originator_id, version, topic, state = row[:5]
        named = self.named.get(topic)
        if named is None:
            event_type, aggregate = names_of(topic)
            named = self.named[topic] = (event_type, self.category(aggregate))
        event_type, category = named
        stream = f"{category}-{originator_id}"
        sequence = version - self.options["first_sequence"] + 1
        attributes, problem = self.state(bytes(state or b""))
        metadata: dict[str, Any] = {"topic": topic}
        recorded_at = None
        if attributes is not None:
            if "class_version" in attributes:
                metadata["class_version"] = attributes.pop("class_version")
            timestamp = attributes.get("timestamp")
            recorded_at = timestamp if isinstance(timestamp, dt.datetime) else None
            transcoded: dict[str, str] = {}
            attributes = self.jsonable(attributes, "", transcoded)
            if transcoded:
                # Which values were of which type, so that a write-back encodes them as the application
                # did (streams/source_kinds/eventsourcing.py's writer).
                metadata["transcoded"] = transcoded
        return SourceEvent(
            position=position,
            stream=stream,
            sequence=sequence,
            id=derived_id(stream, sequence),
            type=event_type,
            data=attributes,
            metadata=metadata,
            recorded_at=recorded_at,
            problem=problem,
        )

    def category(self, aggregate: str) -> str:
        chosen = self.options["category"]
        if isinstance(chosen, str) and chosen:
            return chosen
        if isinstance(chosen, dict) and aggregate in chosen:
            return chosen[aggregate]
        return snake_case(aggregate or self.options["application"])

    def state(self, stored: bytes) -> tuple[dict[str, Any] | None, str]:
        """The event's attributes, decoded as Mapper.to_domain_event decodes them (decrypt, decompress,
        transcode), or why they cannot be."""
        from eventsourcing.persistence import TranscodingNotRegisteredError

        mapper, options = self.mapper, self.options
        if not stored:
            return None, "its state is empty"
        data = stored
        try:
            if mapper.cipher:
                data = mapper.cipher.decrypt(data)
        except Exception as exc:
            return None, (
                f"its state cannot be decrypted with {options['cipher_topic']} ({exc}): is the key in "
                f"{options['cipher_key_env']} the application's CIPHER_KEY?"
            )
        try:
            if mapper.compressor:
                data = mapper.compressor.decompress(data)
        except Exception as exc:
            return None, (
                f"its state cannot be decompressed with {options['compressor_topic']} ({exc}): does the "
                "application compress its events (COMPRESSOR_TOPIC), and encrypt them (CIPHER_TOPIC)?"
            )
        try:
            attributes = mapper.transcoder.decode(data)
        except TranscodingNotRegisteredError as exc:
            return None, (
                f"its state holds a value of a type the application registered a transcoding of its own "
                f"for, which Replaydesk does not have ({exc})"
            )
        except Exception as exc:
            return None, self._undecodable(stored, exc)
        if not isinstance(attributes, dict):
            return None, "its state is not an object of the event's attributes"
        return attributes, ""

    def _undecodable(self, stored: bytes, exc: Exception) -> str:
        """Why the transcoder failed, with what to do when the source was not told how the application
        encodes its events."""
        if not (self.mapper.compressor or self.mapper.cipher):
            if _is_zlib(stored):
                return (
                    "its state is compressed (zlib): give the source the application's compressor_topic "
                    "(COMPRESSOR_TOPIC, e.g. eventsourcing.compressor:ZlibCompressor)"
                )
            if not _is_json(stored):
                return (
                    "its state is not the library's JSON: the application encrypts or compresses its "
                    "events; give the source its cipher_topic and cipher_key_env (CIPHER_TOPIC, CIPHER_KEY) "
                    "and its compressor_topic (COMPRESSOR_TOPIC)"
                )
        return f"its state cannot be decoded by the library's JSON transcoder ({type(exc).__name__}: {exc})"

    def jsonable(self, value: Any, path: str = "", transcoded: dict[str, str] | None = None) -> Any:
        """Values the transcoder decoded into objects, back into JSON: UUIDs as their canonical string
        (the form the streams' names use), the rest as the library's transcodings write them
        (datetimes as ISO strings, Decimals as strings). `transcoded` gets each such value's JSON
        Pointer and its transcoding's name."""
        if isinstance(value, dict):
            return {
                key: item
                if type(item) in _PLAIN
                else self.jsonable(item, f"{path}/{_pointer_part(key)}", transcoded)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [
                item if type(item) in _PLAIN else self.jsonable(item, f"{path}/{index}", transcoded)
                for index, item in enumerate(value)
            ]
        if isinstance(value, uuid.UUID):
            if transcoded is not None:
                transcoded[path] = "uuid_hex"
            return str(value)
        transcoding = self.mapper.transcoder.types.get(type(value))
        if transcoding is not None:
            if transcoded is not None:
                transcoded[path] = transcoding.name
            return self.jsonable(transcoding.encode(value))
        return value

    def encode(self, data: dict[str, Any], metadata: dict[str, Any]) -> bytes:
        """An event of the log back into the application's stored state, as Mapper.to_stored_event
        encodes it: its values of the types `transcoded` names restored, its class version put back,
        transcoded, compressed and encrypted as the application is configured."""
        state = _restored(data, metadata.get("transcoded") or {})
        if "class_version" in metadata:
            state["class_version"] = metadata["class_version"]
        stored = self.mapper.transcoder.encode(state)
        if self.mapper.compressor:
            stored = self.mapper.compressor.compress(stored)
        if self.mapper.cipher:
            stored = self.mapper.cipher.encrypt(stored)
        return stored


# What the copy keeps a transcoded value as, back into the value (the library's three transcodings).
_RESTORE = {
    "uuid_hex": uuid.UUID,
    "decimal_str": Decimal,
    "datetime_iso": dt.datetime.fromisoformat,
}


def _pointer_part(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _restored(data: dict[str, Any], transcoded: dict[str, str]) -> dict[str, Any]:
    state = copy.deepcopy(data)
    for pointer, name in transcoded.items():
        parts = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
        if not parts or name not in _RESTORE:
            raise SourceError(
                f"the copy's value at {pointer} was of a type Replaydesk cannot encode ({name})"
            )
        holder = state
        for part in parts[:-1]:
            holder = holder[int(part)] if isinstance(holder, list) else holder[part]
        last = int(parts[-1]) if isinstance(holder, list) else parts[-1]
        holder[last] = _RESTORE[name](holder[last])
    return state


def names_of(topic: str) -> tuple[str, str]:
    """The event's type (its class's path: `shop.domain:Order.Created` → `Order.Created`) and its
    aggregate class's name (`Order`; "" for an event class of a module's own)."""
    qualname = (topic or "").partition(":")[2] or (topic or "")
    path = qualname.rsplit("<locals>.", 1)[-1]
    aggregate = path.rpartition(".")[0].rpartition(".")[2]
    return path, aggregate


def _is_zlib(data: bytes) -> bool:
    try:
        zlib.decompress(data)
    except zlib.error:
        return False
    return True


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def snake_case(name: str) -> str:
    return _WORD_BOUNDARY.sub("_", name).lower()
