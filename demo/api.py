"""Reads of the demo's projections, with read-your-writes: pass `min_position` (the position an append
returned) and the read waits until the projection has applied it, or answers 503 with Retry-After (429
when too many reads wait already: streams/read_waits.py)."""

from __future__ import annotations

from django.db import connection
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import REPEATABLE, problems
from core.problems import Problem, invalid_input, not_found, unprocessable
from core.queries import QueryErrors, QueryParser
from streams.projections import Projection, get_projection, read_checkpoint
from streams.read_waits import wait_until_applied

_MIN_POSITION = OpenApiParameter(
    "min_position",
    {"type": "integer", "minimum": 0},
    description="Wait until the projection has applied this position (read-your-writes): 503 with "
    "Retry-After when it has not in time, 429 with Retry-After when too many reads wait already, 422 "
    "for a position no event has.",
)


class UserOut(serializers.Serializer):
    user_id = serializers.CharField()
    username = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    updated_at = serializers.DateTimeField()


class GrantOut(serializers.Serializer):
    user_id = serializers.CharField()
    resource = serializers.CharField()
    permission = serializers.CharField()
    granted_at = serializers.DateTimeField()


class GrantPage(serializers.Serializer):
    results = GrantOut(many=True)
    checkpoint = serializers.IntegerField(help_text="The position the projection had applied for this read.")


def _read(request: Request, projection_name: str, allowed: tuple[str, ...]) -> tuple[QueryParser, int]:
    """Parse the query, wait for min_position; return the parser and the checkpoint the read sees."""
    parser = QueryParser(request.query_params, ("min_position", *allowed), repeatable=REPEATABLE)
    min_position = parser.integer("min_position", minimum=0, default=0)
    try:
        parser.done()
    except QueryErrors as exc:
        raise invalid_input(exc.errors) from exc
    projection: Projection = get_projection(projection_name)
    reached = wait_until_applied(projection, min_position, user_id=request.user.pk)
    if reached < min_position:
        raise Problem(
            status_code=503,
            problem_type="not-yet-applied",
            title="Not applied yet",
            detail=f"{projection_name} has applied up to position {reached}, not yet {min_position}; "
            "retry shortly",
            headers={"Retry-After": "1"},
            checkpoint=reached,
            min_position=min_position,
        )
    if read_checkpoint(projection) is None:
        # A fresh store: the projection has not run yet, so its tables do not exist.
        raise Problem(
            status_code=503,
            problem_type="not-yet-applied",
            title="Not applied yet",
            detail=f"{projection_name} has not run yet; retry shortly",
            headers={"Retry-After": "1"},
            checkpoint=reached,
            min_position=min_position,
        )
    return parser, reached


def _rows(sql: str, params: list) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


@extend_schema(
    operation_id="demo_user_retrieve",
    parameters=[_MIN_POSITION],
    responses={200: UserOut, **problems(400, 401, 404, 422, 429, 503)},
)
@api_view(["GET"])
def user_detail(request: Request, user_id: str) -> Response:
    _, checkpoint = _read(request, "users_directory", ())
    rows = _rows(
        "SELECT user_id, username, name, email, updated_at FROM proj_users_directory.users "
        "WHERE user_id = %s",
        [user_id],
    )
    if not rows:
        raise not_found("", f"no user {user_id!r} as of position {checkpoint}")
    return Response(UserOut(rows[0]).data, headers={"X-Replaydesk-Checkpoint": str(checkpoint)})


@extend_schema(
    operation_id="demo_access_list",
    parameters=[_MIN_POSITION, OpenApiParameter("user_id", str), OpenApiParameter("resource", str)],
    responses={
        200: GrantPage,
        **problems(400, 401, 422, 429, 503),
    },
)
@api_view(["GET"])
def access_list(request: Request) -> Response:
    parser, checkpoint = _read(request, "access", ("user_id", "resource"))
    user_id, resource = parser.raw("user_id"), parser.raw("resource")
    if not user_id and not resource:
        raise unprocessable({"user_id": ["give user_id, resource, or both"]})
    rows = _rows(
        """
        SELECT user_id, resource, permission, granted_at FROM proj_access.grants
         WHERE (%s::text IS NULL OR user_id = %s) AND (%s::text IS NULL OR resource = %s)
         ORDER BY resource, user_id, permission LIMIT 1000
        """,
        [user_id, user_id, resource, resource],
    )
    return Response({"results": GrantOut(rows, many=True).data, "checkpoint": checkpoint})
