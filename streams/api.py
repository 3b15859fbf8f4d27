"""The event store's HTTP API (/api/v1/streams…, /api/v1/events…). Thin: parse, call, render."""

from __future__ import annotations

import uuid

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import finish_query, page_of, parse_query, problems
from core.problems import Problem, invalid_input, not_found
from core.roles import Allows, Can
from streams import lag, masking, selectors
from streams.models import Event, Stream
from streams.queries import LOG_PARAMS, parse_log_filter
from streams.services import append_events
from streams.validation import STREAM_NAME_RE, InvalidAppend, WrongExpectedVersion


class EventOut(serializers.Serializer):
    """An event; values at the REPLAYDESK_PII_PATHS are masked ("•••" and a hint) wherever it is listed:
    POST /api/v1/events/{id}/unmask reads one in clear, audited."""

    id = serializers.UUIDField(source="event_id")
    stream = serializers.CharField(source="stream.name")
    sequence = serializers.IntegerField()
    position = serializers.IntegerField()
    type = serializers.CharField()
    data = serializers.JSONField()
    metadata = serializers.JSONField()
    actor = serializers.CharField(
        help_text="Who the event says did it: metadata.actor, else the name of the user who appended it."
    )
    appended_by = serializers.CharField(
        allow_null=True,
        read_only=True,
        help_text="Who the store authenticated as appending it, which no request can set: user:NAME, "
        "cli:NAME (a command on the server), system:NAME (the console's background work) or anonymous; "
        "null for events recorded before appenders were.",
    )
    appended_via = serializers.CharField(
        allow_null=True,
        read_only=True,
        help_text='How a user appender was authenticated: "token" (an API token of theirs) or "session".',
    )
    recorded_at = serializers.DateTimeField()

    def to_representation(self, instance):
        # The fields above, written out: DRF's field-by-field path was half of a 1,000-event read. The
        # declarations stay for the schema; a test holds the two equal.
        return {
            "id": str(instance.event_id),
            "stream": instance.stream.name,
            "sequence": instance.sequence,
            "position": instance.position,
            "type": instance.type,
            "data": instance.data,
            "metadata": instance.metadata,
            "actor": instance.actor,
            "appended_by": instance.appended_by,
            "appended_via": instance.appended_via,
            "recorded_at": _TIMESTAMP.to_representation(instance.recorded_at),
        }


_TIMESTAMP = serializers.DateTimeField()


class StreamOut(serializers.Serializer):
    name = serializers.CharField()
    category = serializers.CharField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class StreamConsumerOut(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    checkpoint = serializers.IntegerField()
    applied_sequence = serializers.IntegerField(
        help_text="The stream's last sequence at or before the consumer's checkpoint."
    )
    lag_events = serializers.IntegerField(help_text="Events of this stream it follows and has yet to apply.")


class StreamDetailOut(StreamOut):
    first_recorded_at = serializers.DateTimeField(allow_null=True)
    last_recorded_at = serializers.DateTimeField(allow_null=True)
    consumers = StreamConsumerOut(many=True, help_text="Each consumer that follows the stream's category.")


class EventIn(serializers.Serializer):
    """For the schema only: the append service checks every rule itself (streams.validation)."""

    id = serializers.UUIDField(required=False, help_text="Client-chosen id; the idempotency key.")
    type = serializers.CharField(max_length=200, help_text="Starts with a letter.")
    data = serializers.DictField()
    metadata = serializers.DictField(
        required=False, help_text="actor, correlation_id, causation_id, occurred_at, and anything else."
    )


class AppendIn(serializers.Serializer):
    expected_version = serializers.JSONField(
        required=False, help_text='"any" (default), "no_stream", "exists", or the current version N.'
    )
    events = EventIn(many=True)


AppendOut = inline_serializer(
    "AppendResult",
    {
        "stream": serializers.CharField(),
        "version": serializers.IntegerField(),
        "first_sequence": serializers.IntegerField(),
        "positions": serializers.ListField(child=serializers.IntegerField()),
    },
)


_LIST_ERRORS = problems(400, 401)


def stream_or_404(name: str) -> Stream:
    if not STREAM_NAME_RE.match(name):
        raise invalid_input(
            {"stream": ["a stream name is 1–200 characters of letters, digits and _ . : @ -"]}
        )
    stream = selectors.get_stream(name=name)
    if stream is None:
        raise not_found("stream", f"no stream is named {name!r}")
    return stream


@extend_schema(
    operation_id="streams_list",
    parameters=[
        OpenApiParameter("prefix", str, description="Streams whose name starts with this."),
        OpenApiParameter(
            "category", str, description="Streams of one category (the part before the first -)."
        ),
        OpenApiParameter("cursor", str, description="`next` of the previous page."),
        OpenApiParameter("limit", int, description="1–1000, default 50."),
    ],
    responses={200: page_of("StreamPage", StreamOut), **_LIST_ERRORS},
)
@api_view(["GET"])
def stream_list(request: Request) -> Response:
    parser = parse_query(request, ("prefix", "category", "cursor", "limit"))
    limit = parser.limit(50)
    cursor = parser.raw("cursor")
    finish_query(parser)
    streams = selectors.list_streams(
        prefix=parser.raw("prefix"), category=parser.raw("category"), after=cursor, limit=limit
    )
    next_cursor = streams[-1].name if len(streams) == limit else None
    return Response({"results": StreamOut(streams, many=True).data, "next": next_cursor})


@extend_schema(operation_id="streams_retrieve", responses={200: StreamDetailOut, **problems(400, 401, 404)})
@api_view(["GET"])
def stream_detail(request: Request, stream: str) -> Response:
    summary = selectors.stream_summary(stream=stream_or_404(stream))
    body = StreamOut(summary.stream).data | {
        "first_recorded_at": serializers.DateTimeField().to_representation(summary.first_recorded_at)
        if summary.first_recorded_at
        else None,
        "last_recorded_at": serializers.DateTimeField().to_representation(summary.last_recorded_at)
        if summary.last_recorded_at
        else None,
        "consumers": StreamConsumerOut(lag.stream_consumers(stream=summary.stream), many=True).data,
    }
    return Response(body, headers={"ETag": f'"{summary.stream.version}"'})


@extend_schema(
    methods=["GET"],
    operation_id="streams_events_list",
    parameters=[
        OpenApiParameter("from_sequence", int, description="First sequence to read (inclusive)."),
        OpenApiParameter("direction", str, enum=["forward", "backward"]),
        OpenApiParameter("cursor", str, description="`next` of the previous page."),
        OpenApiParameter("limit", int, description="1–1000, default 100."),
    ],
    responses={200: page_of("StreamEventPage", EventOut), **problems(400, 401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="streams_events_append",
    request=AppendIn,
    parameters=[
        OpenApiParameter(
            "If-Match",
            str,
            OpenApiParameter.HEADER,
            description='"N" for expected version N, or * for "exists"; an alternative to expected_version.',
        )
    ],
    responses={201: AppendOut, **problems(400, 401, 409, 413, 415)},
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.APPEND)])
def stream_events(request: Request, stream: str) -> Response:
    if request.method == "POST":
        return _append(request, stream)
    found = stream_or_404(stream)
    parser = parse_query(request, ("from_sequence", "direction", "cursor", "limit"))
    direction = parser.choice("direction", ("forward", "backward"), "forward")
    limit = parser.limit(100)
    start = parser.integer("cursor", minimum=0) or parser.integer("from_sequence", minimum=0)
    finish_query(parser)
    events = selectors.read_stream(stream=found, from_sequence=start, direction=direction, limit=limit)
    next_cursor = None
    if len(events) == limit:
        following = events[-1].sequence + (1 if direction == "forward" else -1)
        next_cursor = str(following) if following >= 1 else None
    body = {"results": EventOut(masking.mask_events(events), many=True).data, "next": next_cursor}
    return Response(body, headers={"ETag": f'"{found.version}"'})


def _append(request: Request, stream: str) -> Response:
    body = request.data
    if not isinstance(body, dict):
        raise invalid_input({"body": ['must be an object: {"expected_version": …, "events": [...]}']})
    unknown = sorted(set(body) - {"expected_version", "events"})
    if unknown:
        raise invalid_input(
            {name: ["unknown field; the body has expected_version and events"] for name in unknown}
        )
    if "events" not in body:
        raise invalid_input({"events": ["is required: a list of at least one event"]})
    expected = _expected_version(request, body)
    actor = request.user.get_username()
    try:
        result = append_events(stream=stream, events=body["events"], expected_version=expected, actor=actor)
    except InvalidAppend as exc:
        raise invalid_input(exc.errors) from exc
    except WrongExpectedVersion as exc:
        raise Problem(
            status_code=409,
            problem_type="wrong-expected-version",
            title="Wrong expected version",
            detail=str(exc),
            headers={"ETag": f'"{exc.current_version}"'},
            current_version=exc.current_version,
        ) from exc
    headers = {"ETag": f'"{result.version}"'}
    if result.duplicate:
        headers["Idempotent-Replayed"] = "true"
    payload = {
        "stream": result.stream,
        "version": result.version,
        "first_sequence": result.first_sequence,
        "positions": result.positions,
    }
    return Response(payload, status=201, headers=headers)


def _expected_version(request: Request, body: dict):
    if_match = request.headers.get("If-Match")
    if if_match is None:
        return body.get("expected_version", "any")
    if_match = if_match.strip()
    if if_match == "*":
        from_header: str | int = "exists"
    elif len(if_match) >= 2 and if_match[0] == if_match[-1] == '"' and if_match[1:-1].isdigit():
        from_header = int(if_match[1:-1])
    else:
        raise invalid_input({"If-Match": ['must be one quoted version such as "5", or *']})
    if "expected_version" in body and body["expected_version"] != from_header:
        raise invalid_input(
            {
                "If-Match": [
                    f"says {if_match} but expected_version says {body['expected_version']!r}; send one"
                ]
            }
        )
    return from_header


@extend_schema(
    operation_id="events_list",
    parameters=[
        OpenApiParameter("after_position", int, description="Events after this position (default 0)."),
        OpenApiParameter("type", str, description="Event type; repeat or comma-separate for several."),
        OpenApiParameter("actor", str, description="Events whose actor (the one they claim) is this."),
        OpenApiParameter(
            "appended_by",
            str,
            description="Events the store recorded as appended by this principal, e.g. user:olivia "
            "(user:NAME, cli:NAME, system:NAME or anonymous).",
        ),
        OpenApiParameter("category", str),
        OpenApiParameter("stream", str),
        OpenApiParameter(
            "correlation_id", OpenApiTypes.UUID, description="Events whose metadata.correlation_id is this."
        ),
        OpenApiParameter("recorded_after", OpenApiTypes.DATETIME),
        OpenApiParameter("recorded_before", OpenApiTypes.DATETIME),
        OpenApiParameter(
            "data.<field>", str, description="JSON containment on data, e.g. data.resource=issueABC."
        ),
        OpenApiParameter("cursor", str, description="`next` of the previous page."),
        OpenApiParameter("limit", int, description="1–1000, default 100."),
    ],
    responses={200: page_of("EventPage", EventOut), **_LIST_ERRORS},
)
@api_view(["GET"])
def event_list(request: Request) -> Response:
    parser = parse_query(request, ("after_position", "cursor", "limit", *LOG_PARAMS), allow_data=True)
    after = parser.integer("cursor", minimum=0)
    if after is None:
        after = parser.integer("after_position", minimum=0, default=0)
    limit = parser.limit(100)
    log_filter = parse_log_filter(parser, masked=masking.sees_masked(request.user))
    finish_query(parser)
    events = selectors.read_all(after_position=after, log_filter=log_filter, limit=limit)
    next_cursor = str(events[-1].position) if len(events) == limit else None
    return Response({"results": EventOut(masking.mask_events(events), many=True).data, "next": next_cursor})


@extend_schema(operation_id="events_retrieve", responses={200: EventOut, **problems(400, 401, 404)})
@api_view(["GET"])
def event_detail(request: Request, event_id: str) -> Response:
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        raise invalid_input({"id": ["must be a UUID"]}) from None
    event: Event | None = selectors.get_event(event_id=parsed)
    if event is None:
        raise not_found("event", f"no event has id {parsed}")
    return Response(EventOut(masking.mask_event(event)).data)
