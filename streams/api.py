"""The event store's HTTP API (/api/v1/streams…, /api/v1/events…). Thin: parse, call, render."""

from __future__ import annotations

import re
import uuid

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from core import principals
from core.api import SPACE, cursor_parameter, finish_query, limit_parameter, page_of, parse_query, problems
from core.json import JSON_VALUE, NO_NUL
from core.problems import Problem, invalid_input, not_found, unprocessable
from core.roles import Allows, Can
from streams import event_json, lag, masking, selectors
from streams.models import Event, Stream
from streams.queries import LOG_PARAMS, parse_log_filter
from streams.services import append_events
from streams.validation import (
    AUDIT_CATEGORY,
    EXPECTED_VERSION_WORDS,
    MAX_ACTOR,
    MAX_BATCH,
    STREAM_NAME_RE,
    TYPE_RE,
    InvalidAppend,
    ReusedEventIds,
    StreamFromSource,
    WrongExpectedVersion,
    category_of,
)


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
_RENDERER = JSONRenderer()
# How a list of events says it holds fewer than `limit` when they would not fit the byte bound.
BYTE_BOUND = (
    "A page stops before its response passes REPLAYDESK_READ_MAX_BYTES (4 MiB by default; always at least "
    "one event) and gives `next` for the rest."
)


def bounded_results(events: selectors.Events, *, limit: int, reserved: int = 0) -> tuple[list[dict], bool]:
    """The events as EventOut renders them, masked, as many as REPLAYDESK_READ_MAX_BYTES holds after
    `reserved` bytes of the rest of the body (always the first), and whether more may follow (the page
    is full, or some were left out): then `next` goes on after the last one. Each is measured as the
    renderer writes it: the store's own measure (load_within) differs by the escapes of non-ASCII text."""
    budget = settings.REPLAYDESK_READ_MAX_BYTES - reserved - event_json.ENVELOPE_BYTES
    results: list[dict] = []
    used = 0
    out = EventOut()
    for event in events:
        item = out.to_representation(masking.mask_event(event))
        size = len(_RENDERER.render(item)) + 1  # and its comma
        if results and used + size > budget:
            return results, True
        results.append(item)
        used += size
    return results, bool(results) and (len(results) == limit or events.cut)


class StreamOut(serializers.Serializer):
    name = serializers.CharField()
    category = serializers.CharField()
    version = serializers.IntegerField()
    source = serializers.CharField(
        source="source.name",
        allow_null=True,
        help_text="The source it is copied from; null for the log's own.",
    )
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


@extend_schema_field(
    {
        "type": ["object", "null"],
        "properties": {
            "actor": {"type": "string", "minLength": 1, "maxLength": MAX_ACTOR},
            "correlation_id": {"type": ["string", "null"], "format": "uuid"},
            "causation_id": {"type": ["string", "null"], "format": "uuid"},
            "occurred_at": {"type": ["string", "null"], "format": "date-time"},
        },
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": JSON_VALUE},
    }
)
class MetadataField(serializers.DictField):
    """For the schema only, as EventIn: the keys the store reads, and any other kept as given."""


@extend_schema_field(
    {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": {"$ref": JSON_VALUE}}
)
class DataField(serializers.DictField):
    """For the schema only, as EventIn: an object of JSON values."""


class EventIn(serializers.Serializer):
    """For the schema only: the append service checks every rule itself (streams.validation), and also
    refuses what a schema cannot state: JSON nested deeper than 64, strings with NUL, an event over
    1 MiB."""

    id = serializers.UUIDField(required=False, help_text="Client-chosen id; the idempotency key.")
    type = serializers.RegexField(TYPE_RE.pattern, help_text="Starts with a letter.")
    data = DataField()
    metadata = MetadataField(
        required=False,
        help_text="actor, correlation_id, causation_id, occurred_at, and anything else.",
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": list(EXPECTED_VERSION_WORDS)},
            {"type": "integer", "minimum": 0},
        ]
    }
)
class ExpectedVersionField(serializers.JSONField):
    pass


class AppendIn(serializers.Serializer):
    expected_version = ExpectedVersionField(
        required=False, help_text='"any" (default), "no_stream", "exists", or the current version N.'
    )
    events = serializers.ListField(child=EventIn(), min_length=1, max_length=MAX_BATCH)


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

STREAM_PATH = OpenApiParameter(
    "stream",
    {"type": "string", "pattern": STREAM_NAME_RE.pattern},
    OpenApiParameter.PATH,
    description="1–200 letters, digits and _ . : @ -",
)
# One or more event types, comma-separated; blank items are skipped (streams.queries.parse_log_filter).
_TYPE_ITEM = f"[{SPACE}]*(" + TYPE_RE.pattern.strip("^$") + f"[{SPACE}]*)?"
TYPES_PATTERN = f"^{_TYPE_ITEM}(,{_TYPE_ITEM})*$"
EVENT_ID_PATH = OpenApiParameter("event_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def stream_or_404(name: str) -> Stream:
    check_stream_name(name)
    stream = selectors.get_stream(name=name)
    if stream is None:
        raise no_stream(name)
    return stream


def check_stream_name(name: str) -> None:
    if not STREAM_NAME_RE.fullmatch(name):
        raise invalid_input(
            {"stream": ["a stream name is 1–200 characters of letters, digits and _ . : @ -"]}
        )


def no_stream(name: str) -> Problem:
    return not_found("stream", f"no stream is named {name!r}")


@extend_schema(
    operation_id="streams_list",
    parameters=[
        OpenApiParameter("prefix", str, description="Streams whose name starts with this."),
        OpenApiParameter(
            "category", str, description="Streams of one category (the part before the first -)."
        ),
        OpenApiParameter("source", str, description="Streams copied from this source (GET /api/v1/sources)."),
        cursor_parameter(None),
        limit_parameter(50),
    ],
    responses={200: page_of("StreamPage", StreamOut), **_LIST_ERRORS},
)
@api_view(["GET"])
def stream_list(request: Request) -> Response:
    parser = parse_query(request, ("prefix", "category", "source", "cursor", "limit"))
    limit = parser.limit(50)
    cursor = parser.raw("cursor")
    finish_query(parser)
    streams = selectors.list_streams(
        prefix=parser.raw("prefix"),
        category=parser.raw("category"),
        source=parser.raw("source"),
        after=cursor,
        limit=limit,
    )
    next_cursor = streams[-1].name if len(streams) == limit else None
    return Response({"results": StreamOut(streams, many=True).data, "next": next_cursor})


@extend_schema(
    operation_id="streams_retrieve",
    parameters=[STREAM_PATH],
    responses={200: StreamDetailOut, **problems(400, 401, 404)},
)
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
        STREAM_PATH,
        OpenApiParameter(
            "from_sequence",
            {"type": "integer", "minimum": 0},
            description="First sequence to read (inclusive).",
        ),
        OpenApiParameter("direction", str, enum=["forward", "backward"]),
        cursor_parameter(0),
        limit_parameter(100, note=BYTE_BOUND),
    ],
    responses={200: page_of("StreamEventPage", EventOut), **problems(400, 401, 404)},
)
@extend_schema(
    methods=["POST"],
    operation_id="streams_events_append",
    request=AppendIn,
    parameters=[
        STREAM_PATH,
        OpenApiParameter(
            "If-Match",
            {"type": "string", "pattern": r'^(\*|"[0-9]+"|[0-9]+)$'},
            OpenApiParameter.HEADER,
            description='"N" for expected version N, or * for "exists"; an alternative to expected_version.',
        ),
    ],
    responses={201: AppendOut, **problems(400, 401, 403, 409, 413, 415, 422)},
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.APPEND)])
def stream_events(request: Request, stream: str) -> HttpResponse:
    if request.method == "POST":
        return _append(request, stream)
    check_stream_name(stream)
    parser = parse_query(request, ("from_sequence", "direction", "cursor", "limit"))
    direction = parser.choice("direction", ("forward", "backward"), "forward")
    limit = parser.limit(100)
    # Both are checked; a page's cursor goes on from where the first page started.
    cursor, from_sequence = parser.integer("cursor", minimum=0), parser.integer("from_sequence", minimum=0)
    start = cursor if cursor is not None else from_sequence
    try:
        finish_query(parser)
    except Problem:
        stream_or_404(stream)  # an unknown stream is a 404, whatever its query says
        raise
    page = event_json.read_stream_json(
        name=stream,
        from_sequence=start,
        direction=direction,
        limit=limit,
        max_bytes=settings.REPLAYDESK_READ_MAX_BYTES,
    )
    if page is None:
        raise no_stream(stream)
    return _served(page, headers={"ETag": f'"{page.version}"'})


def _served(page: event_json.EventPage, *, headers: dict[str, str] | None = None) -> HttpResponse:
    # The body as PostgreSQL wrote its events (streams/event_json.py), with the renderer's media type.
    return HttpResponse(page.body(), content_type=_RENDERER.media_type, headers=headers)


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
    if category_of(stream) == AUDIT_CATEGORY:
        # An application's event there would break the trail's hash chain and could pass for an action
        # nobody took (streams.validation refuses it too, for every other caller).
        raise Problem(
            status_code=403,
            problem_type="reserved-stream",
            title="Reserved stream",
            detail=f"the {AUDIT_CATEGORY} category is the console's own audit trail",
        )
    expected = _expected_version(request, body)
    actor = request.user.get_username()
    try:
        result = append_events(stream=stream, events=body["events"], expected_version=expected, actor=actor)
    except ReusedEventIds as exc:
        raise unprocessable(exc.errors) from exc
    except InvalidAppend as exc:
        raise invalid_input(exc.errors) from exc
    except StreamFromSource as exc:
        raise Problem(
            status_code=403,
            problem_type="stream-from-source",
            title="Stream copied from a source",
            detail=str(exc),
        ) from exc
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


_IF_MATCH_VERSION = re.compile(r'"([0-9]+)"|([0-9]+)')


def _expected_version(request: Request, body: dict):
    if_match = request.headers.get("If-Match")
    if if_match is None:
        return body.get("expected_version", "any")
    if_match = if_match.strip()
    if if_match == "*":
        from_header: str | int = "exists"
    elif version := _IF_MATCH_VERSION.fullmatch(if_match):
        # An entity tag is quoted; a bare number is read the same, as some clients drop the quotes.
        from_header = int(version.group(1) or version.group(2))
    else:
        raise invalid_input({"If-Match": ['must be one quoted version such as "5", or *']})
    if "expected_version" in body and body["expected_version"] != from_header:
        raise unprocessable(
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
        OpenApiParameter(
            "after_position",
            {"type": "integer", "minimum": 0},
            description="Events after this position (default 0).",
        ),
        OpenApiParameter(
            "type",
            {"type": "string", "pattern": TYPES_PATTERN},
            description="Event type; repeat or comma-separate for several.",
        ),
        OpenApiParameter("actor", str, description="Events whose actor (the one they claim) is this."),
        OpenApiParameter(
            "appended_by",
            {"type": "string", "pattern": principals.PATTERN},
            description="Events the store recorded as appended by this principal, e.g. user:olivia "
            f"({principals.FORMS}).",
        ),
        OpenApiParameter("category", {"type": "string", "pattern": STREAM_NAME_RE.pattern}),
        OpenApiParameter("stream", {"type": "string", "pattern": STREAM_NAME_RE.pattern}),
        OpenApiParameter(
            "correlation_id", OpenApiTypes.UUID, description="Events whose metadata.correlation_id is this."
        ),
        OpenApiParameter("recorded_after", OpenApiTypes.DATETIME),
        OpenApiParameter("recorded_before", OpenApiTypes.DATETIME),
        OpenApiParameter(
            "data.<field>", str, description="JSON containment on data, e.g. data.resource=issueABC."
        ),
        cursor_parameter(0),
        limit_parameter(100, note=BYTE_BOUND),
    ],
    responses={200: page_of("EventPage", EventOut), **problems(400, 401, 422)},
)
@api_view(["GET"])
def event_list(request: Request) -> HttpResponse:
    parser = parse_query(request, ("after_position", "cursor", "limit", *LOG_PARAMS), allow_data=True)
    # Both are checked; a page's cursor goes on from where the first page started.
    cursor, after_position = parser.integer("cursor", minimum=0), parser.integer("after_position", minimum=0)
    after = cursor if cursor is not None else after_position or 0
    limit = parser.limit(100)
    log_filter = parse_log_filter(parser, masked=masking.sees_masked(request.user))
    finish_query(parser)
    page = event_json.read_all_json(
        after_position=after, log_filter=log_filter, limit=limit, max_bytes=settings.REPLAYDESK_READ_MAX_BYTES
    )
    return _served(page)


@extend_schema(
    operation_id="events_retrieve",
    parameters=[EVENT_ID_PATH],
    responses={200: EventOut, **problems(400, 401, 404)},
)
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
