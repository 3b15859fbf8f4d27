"""The rules an append must satisfy (docs/architecture.md, The store's guarantees: limits), checked
before anything is written.

Errors are collected per field (`stream`, `expected_version`, `events[3].type`, …) so that a caller
can fix everything in one go.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from core import json as strict_json
from core.audit import CATEGORY as AUDIT_CATEGORY

MAX_BATCH = 1000
MAX_EVENT_BYTES = 1024 * 1024
MAX_STREAM_NAME = 200
MAX_TYPE = 200
MAX_ACTOR = 200

STREAM_NAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")
TYPE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,199}$")
_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
EXPECTED_VERSION_WORDS = ("any", "no_stream", "exists")
EVENT_FIELDS = {"id", "type", "data", "metadata"}


class AppendError(Exception):
    """Base for every refusal of an append."""


class InvalidAppend(AppendError):
    """Bad input: nothing was written. `errors` maps a field to what is wrong with it."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        first = next(iter(errors.items()))
        super().__init__(f"{first[0]}: {first[1][0]}")


class ReusedEventIds(InvalidAppend):
    """Ids recorded before, but not as this batch: an idempotent retry resends exactly the original one.
    The API answers 422, as for an Idempotency-Key reused with another payload."""


class StreamFromSource(AppendError):
    """The stream is copied from a source (streams/source_follow.py): only its follower appends to it,
    so that the copy stays the source's. Nothing was written."""

    def __init__(self, *, stream: str, source: str):
        self.stream, self.source = stream, source
        super().__init__(
            f"stream {stream!r} is copied from the source {source!r}: append to the source, and Replaydesk "
            "copies the event"
        )


class WrongExpectedVersion(AppendError):
    def __init__(self, *, stream: str, expected: str | int, current_version: int):
        self.stream = stream
        self.expected = expected
        self.current_version = current_version
        super().__init__(
            f"stream {stream!r} is at version {current_version}, the append expected {expected!r}"
        )


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID | None = None
    # The data and metadata as JSON text, as checked (so that an append does not encode them again).
    data_json: str | None = field(default=None, compare=False, repr=False)
    metadata_json: str | None = field(default=None, compare=False, repr=False)


@dataclass
class _Errors:
    by_field: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.by_field.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self.by_field:
            raise InvalidAppend(self.by_field)


def category_of(stream: str) -> str:
    return stream.split("-", 1)[0]


def check_stream_name(name: Any, errors: _Errors, field_name: str = "stream") -> None:
    if not isinstance(name, str) or not STREAM_NAME_RE.fullmatch(name):
        errors.add(
            field_name,
            "a stream name is 1–200 characters of letters, digits and _ . : @ - (for example user-123)",
        )


def parse_expected_version(value: Any, errors: _Errors) -> str | int:
    if isinstance(value, bool):
        errors.add("expected_version", 'must be "any", "no_stream", "exists" or a version number ≥ 0')
        return "any"
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 5.0 is the integer 5 to JSON Schema, and to a client that wrote it
    if isinstance(value, int):
        if value < 0:
            errors.add("expected_version", "a version number is ≥ 0 (0 means the stream has no events)")
        return value
    if value in EXPECTED_VERSION_WORDS:
        return value
    errors.add("expected_version", 'must be "any", "no_stream", "exists" or a version number ≥ 0')
    return "any"


def parse_events(raw: Any, errors: _Errors) -> list[NewEvent]:
    """Turn a JSON batch into NewEvents, checking every rule; errors are recorded, not raised."""
    if not isinstance(raw, list):
        errors.add("events", "must be a list of events")
        return []
    if not raw:
        errors.add("events", "must hold at least one event")
        return []
    if len(raw) > MAX_BATCH:
        errors.add("events", f"a batch holds at most {MAX_BATCH} events; this one has {len(raw)}")
        return []
    parsed: list[NewEvent] = []
    seen: dict[uuid.UUID, int] = {}
    for index, item in enumerate(raw):
        event = _parse_event(item, f"events[{index}]", errors)
        if event is None:
            continue
        if event.id is not None:
            if event.id in seen:
                errors.add(f"events[{index}].id", f"repeats the id of events[{seen[event.id]}]")
            seen.setdefault(event.id, index)
        parsed.append(event)
    return parsed


def _parse_event(item: Any, where: str, errors: _Errors) -> NewEvent | None:
    if isinstance(item, NewEvent):
        item = {"id": item.id, "type": item.type, "data": item.data, "metadata": item.metadata}
    if not isinstance(item, dict):
        errors.add(where, 'must be an object with "type", "data" and optionally "id" and "metadata"')
        return None
    before = len(errors.by_field)
    if not item.keys() <= EVENT_FIELDS:
        unknown = sorted(set(item) - EVENT_FIELDS)
        errors.add(where, f"unknown field(s) {', '.join(unknown)}; an event has id, type, data, metadata")
    event_id = _parse_id(item.get("id"), f"{where}.id", errors)
    event_type = item.get("type")
    if not isinstance(event_type, str) or not TYPE_RE.fullmatch(event_type):
        errors.add(
            f"{where}.type",
            "an event type starts with a letter and has at most 200 letters, digits and _ . : -",
        )
    data = item.get("data")
    if not isinstance(data, dict):
        errors.add(f"{where}.data", "must be a JSON object")
    metadata = item.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        errors.add(f"{where}.metadata", "must be a JSON object")
    else:
        _check_metadata(metadata, f"{where}.metadata", errors)
    if len(errors.by_field) > before:
        return None
    try:
        encoded_data, encoded_metadata = _encoded(event_type, data, metadata)
    except _Refused as refused:
        errors.add(where, str(refused))
        return None
    return NewEvent(
        type=event_type,
        data=data,
        metadata=metadata,
        id=event_id,
        data_json=encoded_data,
        metadata_json=encoded_metadata,
    )


class _Refused(ValueError):
    """What is wrong with an event's JSON, as the append's error says it."""


def _encoded(event_type: str, data: Any, metadata: Any) -> tuple[str, str]:
    """The data and metadata as JSON text, once each rule on their JSON holds; _Refused says which does
    not. Each rule is settled by the encoded text where that is exact and cheap (a batch of 1,000 events
    pays it 2,000 times), and checked the long way only when the text cannot settle it."""
    try:
        encoded_data, encoded_metadata = json_text(data), json_text(metadata)
    except (ValueError, RecursionError) as exc:  # Infinity or NaN, or nested past what the encoder can
        _check_depths(data, metadata)
        raise _Refused("numbers must be finite") from exc
    except TypeError as exc:  # a datetime, a Decimal, a set: no JSON value
        raise _Refused(f"data and metadata hold JSON values only: {exc}") from None
    # Objects and arrays cannot nest deeper than the brackets in their text.
    brackets = (
        encoded_data.count("{")
        + encoded_data.count("[")
        + encoded_metadata.count("{")
        + encoded_metadata.count("[")
    )
    if brackets > strict_json.MAX_DEPTH:
        _check_depths(data, metadata)
    if ("\\u0000" in encoded_data and _NUL.search(encoded_data)) or (
        "\\u0000" in encoded_metadata and _NUL.search(encoded_metadata)
    ):
        raise _Refused("strings may not contain the NUL character (\\u0000); PostgreSQL cannot store it")
    if encoded_data.isascii() and encoded_metadata.isascii():
        size = len(event_type) + len(encoded_data) + len(encoded_metadata)
    else:
        try:
            size = len(event_type) + len(encoded_data.encode()) + len(encoded_metadata.encode())
        except UnicodeEncodeError:
            # JSON may escape half of a UTF-16 pair (\ud800) on its own: no text, and PostgreSQL refuses it.
            raise _Refused(
                "strings may not contain a lone surrogate (\\ud800–\\udfff); send valid Unicode"
            ) from None
    if size > MAX_EVENT_BYTES:
        raise _Refused(f"an event is at most 1 MiB ({MAX_EVENT_BYTES} bytes) of JSON; this one is {size}")
    return encoded_data, encoded_metadata


def _check_depths(*values: Any) -> None:
    for value in values:
        try:
            strict_json.check_depth(value)
        except strict_json.JsonRuleError as exc:
            raise _Refused(str(exc)) from None


def _parse_id(value: Any, where: str, errors: _Errors) -> uuid.UUID | None:
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    errors.add(where, "must be a UUID such as 3f2b8c1e-0d4a-4b6e-9a51-2f7c9d0e1a23")
    return None


def _check_metadata(metadata: dict, where: str, errors: _Errors) -> None:
    actor = metadata.get("actor")
    if actor is not None and (not isinstance(actor, str) or not 0 < len(actor) <= MAX_ACTOR):
        errors.add(f"{where}.actor", f"must be a non-empty string of at most {MAX_ACTOR} characters")
    for key in ("correlation_id", "causation_id"):
        value = metadata.get(key)
        # A UUID as it is usually written is settled by a pattern (a fifth of the UUID parse, which a
        # batch of 1,000 events pays 1,000 times); anything else is parsed, as _parse_id accepts it.
        if value is not None and not (isinstance(value, str) and _UUID_TEXT.fullmatch(value)):
            _parse_id(value, f"{where}.{key}", errors)
    occurred_at = metadata.get("occurred_at")
    if occurred_at is not None:
        parsed = None
        if isinstance(occurred_at, str):
            try:
                parsed = dt.datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
            except ValueError:
                parsed = None
        if parsed is None:
            errors.add(f"{where}.occurred_at", "must be an ISO 8601 time such as 2026-01-31T12:00:00Z")


# \u0000 as JSON writes it, not preceded by an escaped backslash.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _as_orjson_writes(value: Any) -> Any:
    """A UUID as its text and an enum's member as its value, as orjson writes them, whichever encoder
    writes the event; anything else JSON has no form for is a TypeError."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# allow_nan=False: jsonb has no Infinity or NaN, so the encoder refuses them (ValueError) before PostgreSQL.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_as_orjson_writes
)
# What orjson writes its own way is left to the standard encoder, whose rules hold: str, int, dict and list
# subclasses, dataclasses and datetimes (TypeError for what JSON has no value for).
_ORJSON = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def json_text(value: Any) -> str:
    """Compact JSON, non-ASCII kept as it is (its UTF-8 length is what the size limit counts).

    Written by orjson, a tenth of the standard encoder's time (an append of 1,000 events encodes 2,000
    documents). What orjson refuses (integers past 64 bits, keys that are not strings, lone surrogates,
    nesting past 254) or writes as null (NaN and the infinities, which jsonb has no value for) is encoded
    again by the standard encoder, which says what is wrong or writes it as before. A UUID or an enum's
    member is written as its text or value by either encoder."""
    try:
        encoded = orjson.dumps(value, option=_ORJSON)
    except orjson.JSONEncodeError:
        return _ENCODER.encode(value)
    if b"null" in encoded:
        return _ENCODER.encode(value)
    return encoded.decode()


def plainly_valid(
    *, stream: Any, event_id: Any, event_type: Any, data: Any, metadata: Any
) -> tuple[str, str] | None:
    """The data and metadata as JSON text when the event is within every rule parse_append applies to
    one event appended with expected_version "any"; None when it is not, and parse_append must say why.
    A copy of many events checks each this way, without building the errors of a batch."""
    if not isinstance(stream, str) or not STREAM_NAME_RE.fullmatch(stream):
        return None
    if category_of(stream) == AUDIT_CATEGORY:
        return None
    if event_id is not None and not isinstance(event_id, uuid.UUID):
        return None
    if not isinstance(event_type, str) or not TYPE_RE.fullmatch(event_type) or not isinstance(data, dict):
        return None
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return None
    if metadata:
        errors = _Errors()
        _check_metadata(metadata, "metadata", errors)
        if errors.by_field:
            return None
    try:
        return _encoded(event_type, data, metadata)
    except _Refused:
        return None


def parse_append(
    *, stream: Any, events: Any, expected_version: Any, audit_trail: bool = False
) -> tuple[str, list[NewEvent], str | int]:
    """Check a whole append; raise InvalidAppend with every problem found, or return the parsed parts.

    audit_trail: the console's own audit (streams.audit) writes; only it may append to its category."""
    errors = _Errors()
    check_stream_name(stream, errors)
    if isinstance(stream, str) and category_of(stream) == AUDIT_CATEGORY and not audit_trail:
        # An application's event there would break the trail's hash chain and could pass for an action
        # nobody took.
        errors.add("stream", f"the {AUDIT_CATEGORY} category is the console's own audit trail")
    expected = parse_expected_version(expected_version, errors)
    parsed = parse_events(events, errors)
    errors.raise_if_any()
    return stream, parsed, expected
