"""What every part of the public API shares: problem+json in the schema, keyset pages, and query
strings parsed with every problem reported at once (errors themselves are core/problems.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request

from core.json import NO_NUL
from core.problems import invalid_input, unprocessable
from core.queries import MAX_LIMIT, QueryErrors, QueryParser


class ProblemOut(serializers.Serializer):
    """RFC 9457 problem details, served as application/problem+json."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="What is wrong, per field (`events[3].type`, `expected_version`, …).",
    )
    current_version = serializers.IntegerField(required=False, help_text="On 409: the stream's version now.")


def problems(*statuses: int) -> dict:
    """The schema's responses for these error statuses."""
    return {(code, "application/problem+json"): ProblemOut for code in statuses}


def page_of(name: str, item: type[serializers.Serializer]):
    """The schema of a keyset page: `{"results": [...], "next": <cursor or null>}`."""
    return inline_serializer(
        name, {"results": item(many=True), "next": serializers.CharField(allow_null=True)}
    )


def limit_parameter(default: int, maximum: int = MAX_LIMIT, *, note: str = "") -> OpenApiParameter:
    """`limit` as QueryParser.limit reads it; `note` says more (a page's byte bound)."""
    schema = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    return OpenApiParameter("limit", schema, description=f"1–{maximum}, default {default}. {note}".strip())


def cursor_parameter(minimum: int | None) -> OpenApiParameter:
    """`cursor`: the `next` of the previous page; a number from `minimum` (a position, sequence or id),
    or a string (None) for a list keyed by name."""
    schema = {"type": "string"} if minimum is None else {"type": "integer", "minimum": minimum}
    return OpenApiParameter("cursor", schema, description="`next` of the previous page.")


# What Python's str.strip() takes for white space (JSON Schema's \s is another set): DRF and the query
# parsers trim it.
SPACE = (
    "\\t\\n\\u000b\\u000c\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
# Text that must say something: DRF trims it first, so white space alone is blank.
NOT_BLANK = f"^[^\\u0000]*[^{SPACE}\\u0000][^\\u0000]*$"


def document_parsing(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing: what QueryParser and the body checks do everywhere. An empty query
    value reads as not given (HTML forms send empty fields; the pages and the API share the parser); a
    body refuses any field its schema does not name; no text takes a NUL."""
    for item in result.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "query":
                    continue
                if not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
                schema = parameter.get("schema", {})
                if schema.get("type") == "string" and not {"enum", "format", "pattern"} & set(schema):
                    schema["pattern"] = NO_NUL
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
            for field in component.get("properties", {}).values():
                if field.get("type") == "string" and not {"enum", "format", "pattern"} & set(field):
                    field["pattern"] = NO_NUL
    return result


def checked_body(request: Request, serializer: type[serializers.Serializer]) -> dict[str, Any]:
    """The request body checked against `serializer`, refusing fields it does not know."""
    if not isinstance(request.data, dict):
        raise invalid_input({"body": ["must be a JSON object"]})
    fields = serializer().fields
    unknown = sorted(set(request.data) - set(fields))
    if unknown:
        takes = ", ".join(sorted(fields))
        raise invalid_input({name: [f"unknown field; the body takes {takes}"] for name in unknown})
    # DRF would read a number given for a text field as its digits; the schema says a string.
    not_text = [
        name
        for name, field in fields.items()
        if isinstance(field, serializers.CharField) and name in request.data
        if not isinstance(request.data[name], str)
    ]
    if not_text:
        raise invalid_input({name: ["must be a string"] for name in not_text})
    parsed = serializer(data=request.data)
    parsed.is_valid(raise_exception=True)
    return parsed.validated_data


# Body fields that take only the JSON type their schema states: DRF would read "5" as 5, 5 as "5" and
# "yes" as true.


class TextField(serializers.RegexField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


class WholeNumberField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        whole = isinstance(data, int) or isinstance(data, float) and data.is_integer()
        if isinstance(data, bool) or not whole:
            raise serializers.ValidationError("must be a whole number")
        return super().to_internal_value(data)


class NumberField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError("must be a number")
        return super().to_internal_value(data)


class FlagField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError("must be true or false")
        return data


class UUIDTextField(serializers.UUIDField):
    def to_internal_value(self, data: Any):
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a UUID as a string")
        return super().to_internal_value(data)


# The API's only parameter that may be repeated (`type=A&type=B`, as its schema says).
REPEATABLE = ("type",)


def parse_query(request: Request, allowed: tuple[str, ...], *, allow_data: bool = False) -> QueryParser:
    return QueryParser(request.query_params, allowed, allow_data=allow_data, repeatable=REPEATABLE)


def finish_query(parser: QueryParser) -> None:
    """A 400 naming every bad parameter, if there is one; a 422 when each is of a valid form but breaks
    a rule."""
    try:
        parser.done()
    except QueryErrors as exc:
        raise (unprocessable if exc.by_rule else invalid_input)(exc.errors) from exc
