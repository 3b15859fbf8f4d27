"""Parsing of the global log's query strings (core/queries.py has the parser), shared by the API and the
pages: one set of names and rules."""

from __future__ import annotations

import uuid

from core import principals
from core.queries import QueryParser
from streams import masking
from streams.selectors import LogFilter, data_containment
from streams.validation import STREAM_NAME_RE, TYPE_RE

LOG_PARAMS = (
    "type",
    "actor",
    "appended_by",
    "category",
    "stream",
    "correlation_id",
    "recorded_after",
    "recorded_before",
)


def stream_name(parser: QueryParser, name: str) -> str | None:
    value = parser.raw(name)
    if value is not None and not STREAM_NAME_RE.fullmatch(value):
        parser.error(name, "a stream name is 1–200 characters of letters, digits and _ . : @ -")
        return None
    return value


def appended_by(parser: QueryParser, name: str) -> str | None:
    value = parser.raw(name)
    if value and not principals.is_principal(value):
        parser.error(name, f"names who appended as the store records it: {principals.FORMS}")
        return None
    return value


def parse_log_filter(parser: QueryParser, *, masked: bool = False) -> LogFilter:
    """The log's filter; `masked`: the reader sees personal data masked, so may not filter on it."""
    types: list[str] = []
    for value in parser.params.getlist("type") if hasattr(parser.params, "getlist") else [parser.raw("type")]:
        for item in (value or "").split(","):
            item = item.strip()
            if not item:
                continue
            if not TYPE_RE.fullmatch(item):
                parser.error("type", f"{item!r} is not an event type (they start with a letter)")
            else:
                types.append(item)
    data = []
    for key in parser.params:
        if key.startswith("data."):
            path = key.removeprefix("data.")
            if not path or any(not part for part in path.split(".")):
                parser.error(key, "write data.<field>=<value>, e.g. data.resource=issueABC")
                continue
            if masked and masking.personal("data", path):
                parser.error(key, masking.MASKED_FILTER)
                continue
            data.append(data_containment(path, parser.params.get(key, "")))
    category = parser.raw("category")
    if category is not None and not STREAM_NAME_RE.fullmatch(category):
        parser.error("category", "a category is the part of a stream name before the first -")
    correlation_id = None
    if (raw_correlation := parser.raw("correlation_id")) is not None:
        if masked and masking.personal("metadata", "correlation_id"):
            parser.error("correlation_id", masking.MASKED_FILTER)
        else:
            try:
                correlation_id = uuid.UUID(raw_correlation)
            except ValueError:
                parser.error("correlation_id", "must be a UUID (metadata.correlation_id of an event)")
    after, before = parser.time("recorded_after"), parser.time("recorded_before")
    if after and before and after >= before:
        parser.refuse("recorded_before", "must be later than recorded_after")
    return LogFilter(
        types=tuple(types),
        actor=parser.raw("actor"),
        appended_by=appended_by(parser, "appended_by"),
        category=category,
        stream=stream_name(parser, "stream"),
        correlation_id=correlation_id,
        recorded_after=after,
        recorded_before=before,
        data=tuple(data),
    )
