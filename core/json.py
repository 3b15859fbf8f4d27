"""JSON as the store can keep it: finite numbers only (PostgreSQL's jsonb has no Infinity or NaN), and
nested at most MAX_DEPTH levels, so that no request can exhaust the parser's recursion."""

from __future__ import annotations

import json
import math
from typing import Any

# Objects and arrays inside each other, at most (README, The API: limits).
MAX_DEPTH = 64


# The schema of a JSON value the store keeps (APPEND_COMPONENTS in console/settings.py): any JSON, but
# no string holds a NUL, which PostgreSQL cannot store. (Depth and size limits are the server's own.)
JSON_VALUE = "#/components/schemas/JsonValue"
# PostgreSQL can take no NUL in text, jsonb or a parameter: QueryParser and DRF's text fields refuse it.
NO_NUL = "^[^\\u0000]*$"
JSON_VALUE_SCHEMA = {
    "anyOf": [
        {"type": "null"},
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "array", "items": {"$ref": JSON_VALUE}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": JSON_VALUE},
        },
    ],
}


class JsonRuleError(ValueError):
    """JSON that is well-formed but breaks one of the rules above; the message names the rule."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise JsonRuleError(f"the number {text} is too large: numbers must be finite (at most about 1e308)")
    return number


def _no_constant(name: str) -> Any:
    raise JsonRuleError(f"{name} is not JSON: numbers must be finite")


def loads(text: str | bytes) -> Any:
    """json.loads with the rules above; JsonRuleError names the broken rule, ValueError bad syntax."""
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise JsonRuleError(too_deep()) from None
    check_depth(value)
    return value


def check_depth(value: Any) -> None:
    """Raise JsonRuleError when `value` nests objects and arrays deeper than MAX_DEPTH. Iterative, so
    that checking cannot exhaust the recursion it guards; a level at a time, and only objects and arrays
    are kept for the next: every API append checks its body and each event, and walking every value one
    by one was twice as slow."""
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise JsonRuleError(too_deep())
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]


def too_deep() -> str:
    return f"objects and arrays may be nested at most {MAX_DEPTH} levels deep"
