"""Audit look-ups over the API: the search box, a stream's state as of a sequence or time, and the one
way to read an event's personal data unmasked (a POST, audited)."""

from __future__ import annotations

import uuid

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import cursor_parameter, finish_query, limit_parameter, parse_query, problems
from core.problems import invalid_input, not_found
from core.roles import Allows, Can
from streams import audit_search, masking, selectors, timeline
from streams.api import (
    BYTE_BOUND,
    EVENT_ID_PATH,
    STREAM_PATH,
    EventOut,
    StreamOut,
    bounded_results,
    stream_or_404,
)

_RENDERER = JSONRenderer()

SearchPage = inline_serializer(
    "AuditSearchPage",
    {
        "streams": StreamOut(many=True, help_text="Streams the query names (first page only)."),
        "results": EventOut(many=True, help_text="Matching events, newest first, personal data masked."),
        "next": serializers.CharField(allow_null=True),
    },
)

StateOut = inline_serializer(
    "StreamState",
    {
        "stream": serializers.CharField(),
        "sequence": serializers.IntegerField(help_text="The last event folded in (0: none)."),
        "recorded_at": serializers.DateTimeField(allow_null=True),
        "fold": serializers.CharField(help_text='"merge" (data objects merged) or the projection\'s name.'),
        "state": serializers.DictField(help_text="Personal data masked."),
    },
)


@extend_schema(
    operation_id="audit_search",
    parameters=[
        OpenApiParameter(
            "q",
            str,
            description="Terms, all of which must match: a stream name (else a prefix), an entity id, an "
            "actor or the user who appended, a value anywhere in the data (not through personal fields "
            "for a role that sees them masked), actor:NAME (the actor events claim), "
            "appended_by:PRINCIPAL (who the store recorded appending them: user:NAME, cli:NAME, "
            "system:NAME or anonymous), type:TYPE, "
            "stream:PREFIX, field=value (JSON containment on data).",
        ),
        OpenApiParameter("recorded_after", OpenApiTypes.DATETIME),
        OpenApiParameter("recorded_before", OpenApiTypes.DATETIME),
        cursor_parameter(1),
        limit_parameter(50, note=BYTE_BOUND),
    ],
    responses={200: SearchPage, **problems(400, 401, 403, 422)},
)
@api_view(["GET"])
def search(request: Request) -> Response:
    parser = parse_query(request, ("cursor", "limit", *audit_search.SEARCH_PARAMS))
    before, limit = parser.integer("cursor", minimum=1), parser.limit(50)
    query = audit_search.parse_search(parser, masked=masking.sees_masked(request.user))
    if query.is_empty and not parser.errors:
        parser.refuse("q", "say what to look for: a stream, an id, actor:NAME, type:TYPE or field=value")
    finish_query(parser)
    with audit_search.without_jit():
        events = audit_search.search_events(
            query, before=before, limit=limit, max_bytes=settings.REPLAYDESK_READ_MAX_BYTES
        )
        streams = StreamOut(audit_search.matching_streams(query) if before is None else [], many=True).data
    reserved = len(_RENDERER.render(streams)) + len('"streams":,')
    results, more = bounded_results(events, limit=limit, reserved=reserved)
    next_cursor = str(events[len(results) - 1].position) if more else None
    return Response({"streams": streams, "results": results, "next": next_cursor})


@extend_schema(
    operation_id="streams_state",
    parameters=[
        STREAM_PATH,
        OpenApiParameter(
            "sequence",
            {"type": "integer", "minimum": 0},
            description="The state after this event (default: the last); at most the stream's version.",
        ),
        OpenApiParameter("at", OpenApiTypes.DATETIME, description="The state at this time."),
    ],
    responses={200: StateOut, **problems(400, 401, 403, 404, 422)},
)
@api_view(["GET"])
def stream_state(request: Request, stream: str) -> Response:
    found = stream_or_404(stream)
    parser = parse_query(request, ("sequence", "at"))
    sequence, at = parser.integer("sequence", minimum=0), parser.time("at")
    if sequence is not None and sequence > found.version:
        parser.refuse("sequence", f"must be from 0 to {found.version}")
        sequence = None
    if sequence is not None and at is not None:
        parser.refuse("at", "give sequence or at, not both")
    finish_query(parser)
    state = timeline.state_as_of(stream=found, masked=True, sequence=sequence, at=at)
    return Response(
        {
            "stream": found.name,
            "sequence": state.sequence,
            "recorded_at": serializers.DateTimeField().to_representation(state.recorded_at)
            if state.recorded_at
            else None,
            "fold": state.fold,
            "state": state.state,
        }
    )


@extend_schema(
    operation_id="events_unmask",
    request=None,
    description="The event with its personal data in clear, for those who may unmask; audited "
    "(PiiUnmasked, with the caller's IP address and user agent).",
    parameters=[EVENT_ID_PATH],
    responses={200: EventOut, **problems(400, 401, 403, 404)},
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.UNMASK)])
def event_unmask(request: Request, event_id: str) -> Response:
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        raise invalid_input({"id": ["must be a UUID"]}) from None
    event = selectors.get_event(event_id=parsed)
    if event is None:
        raise not_found("event", f"no event {parsed}")
    masking.record_unmasked(
        request=request, view="api-event", target=str(event.event_id), detail={"stream": event.stream.name}
    )
    return Response(EventOut(event).data)
