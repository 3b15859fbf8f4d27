"""Parsing of list query strings, shared by the API and the pages: one set of names and rules."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping

from django.utils.dateparse import parse_date, parse_datetime

from streams.selectors import MAX_LIMIT, LogFilter, data_containment
from streams.validation import STREAM_NAME_RE, TYPE_RE


class QueryErrors(Exception):
    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(str(errors))


class QueryParser:
    """Reads typed values out of a QueryDict, collecting every problem before raising."""

    def __init__(self, params: Mapping, allowed: Iterable[str], *, allow_data: bool = False):
        self.params = params
        self.errors: dict[str, list[str]] = {}
        unknown = sorted(
            key for key in params if key not in set(allowed) and not (allow_data and key.startswith("data."))
        )
        for key in unknown:
            self.errors[key] = [f"unknown parameter; this list takes {', '.join(sorted(allowed))}"]
        for key in params:
            values = params.getlist(key) if hasattr(params, "getlist") else [params[key]]
            if any("\x00" in value for value in values):
                # PostgreSQL cannot take it in a parameter, so it could never match anything.
                self.error(key, "must not contain the NUL character (%00)")

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def raw(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None

    def integer(
        self, name: str, *, minimum: int, maximum: int | None = None, default: int | None = None
    ) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.error(name, "must be a whole number")
            return default
        if number < minimum or (maximum is not None and number > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            self.error(name, f"must be {bounds}")
            return default
        return number

    def limit(self, default: int) -> int:
        return self.integer("limit", minimum=1, maximum=MAX_LIMIT, default=default)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.raw(name)
        if value is None:
            return default
        if value not in choices:
            self.error(name, f"must be one of {', '.join(choices)}")
            return default
        return value

    def time(self, name: str) -> dt.datetime | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            # A "+" in a query string arrives as a space.
            parsed = parse_datetime(value.replace(" ", "+"))
            if parsed is None and (day := parse_date(value)) is not None:
                parsed = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        except ValueError:
            parsed = None
        if parsed is None:
            self.error(name, "must be an ISO 8601 time such as 2026-01-31T12:00:00Z")
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed

    def stream_name(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not STREAM_NAME_RE.match(value):
            self.error(name, "a stream name is 1–200 characters of letters, digits and _ . : @ -")
            return None
        return value

    def done(self) -> None:
        if self.errors:
            raise QueryErrors(self.errors)


LOG_PARAMS = ("type", "actor", "category", "stream", "correlation_id", "recorded_after", "recorded_before")


def parse_log_filter(parser: QueryParser) -> LogFilter:
    types: list[str] = []
    for value in parser.params.getlist("type") if hasattr(parser.params, "getlist") else [parser.raw("type")]:
        for item in (value or "").split(","):
            item = item.strip()
            if not item:
                continue
            if not TYPE_RE.match(item):
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
            data.append(data_containment(path, parser.params.get(key, "")))
    category = parser.raw("category")
    if category is not None and not STREAM_NAME_RE.match(category):
        parser.error("category", "a category is the part of a stream name before the first -")
    correlation_id = None
    if (raw_correlation := parser.raw("correlation_id")) is not None:
        try:
            correlation_id = uuid.UUID(raw_correlation)
        except ValueError:
            parser.error("correlation_id", "must be a UUID (metadata.correlation_id of an event)")
    after, before = parser.time("recorded_after"), parser.time("recorded_before")
    if after and before and after >= before:
        parser.error("recorded_before", "must be later than recorded_after")
    return LogFilter(
        types=tuple(types),
        actor=parser.raw("actor"),
        category=category,
        stream=parser.stream_name("stream"),
        correlation_id=correlation_id,
        recorded_after=after,
        recorded_before=before,
        data=tuple(data),
    )
