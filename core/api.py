"""What every part of the public API shares: problem+json in the schema, keyset pages, and query
strings parsed with every problem reported at once (errors themselves are core/problems.py)."""

from __future__ import annotations

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.request import Request

from core.problems import invalid_input
from core.queries import QueryErrors, QueryParser


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


def parse_query(request: Request, allowed: tuple[str, ...], *, allow_data: bool = False) -> QueryParser:
    return QueryParser(request.query_params, allowed, allow_data=allow_data)


def finish_query(parser: QueryParser) -> None:
    """A 400 naming every bad parameter, if there is one."""
    try:
        parser.done()
    except QueryErrors as exc:
        raise invalid_input(exc.errors) from exc
