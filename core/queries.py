"""Parsing of query strings, shared by the API and the pages: one set of rules, every problem at once."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping

from django.utils.dateparse import parse_date, parse_datetime

# A whole number, also as JSON Schema counts one: 5 or 5.0.
_WHOLE = re.compile(r"([-+]?[0-9]+)(?:\.0*)?")

# The largest page any list serves.
MAX_LIMIT = 1000


class QueryErrors(Exception):
    def __init__(self, errors: dict[str, list[str]], *, by_rule: bool = False):
        self.errors = errors
        # Every value has a valid form; the problems are with rules (QueryParser.refuse).
        self.by_rule = by_rule
        super().__init__(str(errors))


class QueryParser:
    """Reads typed values out of a QueryDict, collecting every problem before raising."""

    def __init__(
        self,
        params: Mapping,
        allowed: Iterable[str],
        *,
        allow_data: bool = False,
        repeatable: Iterable[str] | None = None,
    ):
        """`repeatable`: when given, the only parameters that may come more than once (the API's
        contract: its schema states each of the others as one value); a page's form may repeat any."""
        self.params = params
        self.errors: dict[str, list[str]] = {}
        self.refused: set[str] = set()
        unknown = sorted(
            key for key in params if key not in set(allowed) and not (allow_data and key.startswith("data."))
        )
        for key in unknown:
            self.errors[key] = [f"unknown parameter; this list takes {', '.join(sorted(allowed))}"]
        for key in params:
            values = params.getlist(key) if hasattr(params, "getlist") else [params[key]]
            if repeatable is not None and len(values) > 1 and key not in repeatable:
                self.error(key, "give it once: this parameter takes one value")
            if any("\x00" in value for value in values):
                # PostgreSQL cannot take it in a parameter, so it could never match anything.
                self.error(key, "must not contain the NUL character (%00)")

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def refuse(self, name: str, message: str) -> None:
        """A value of a valid form that breaks a rule about other parameters or stored data."""
        self.error(name, message)
        self.refused.add(name)

    def raw(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None

    def integer(
        self, name: str, *, minimum: int, maximum: int | None = None, default: int | None = None
    ) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        whole = _WHOLE.fullmatch(value.strip())
        if whole is None:
            self.error(name, "must be a whole number")
            return default
        number = int(whole.group(1))
        if number < minimum or (maximum is not None and number > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            self.error(name, f"must be {bounds}")
            return default
        return number

    def limit(self, default: int, *, maximum: int = MAX_LIMIT) -> int:
        return self.integer("limit", minimum=1, maximum=maximum, default=default)

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

    def done(self) -> None:
        if self.errors:
            raise QueryErrors(self.errors, by_rule=set(self.errors) <= self.refused)
