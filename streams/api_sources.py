"""The sources API (/api/v1/sources…): external event stores Replaydesk follows into its log
(streams/source_follow.py). Thin: check the body, call a service or a selector, render.

Listing and reading sources needs the read permission; adding one needs the administer permission (a
source's DSN reaches into another system), and so does giving it a write DSN; pausing, resuming and
deciding about parked events, the operate permission. A DSN is never shown back, and a parked event's
content (what the source held) only to those who may operate, as a sink's receiver's answers are.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import (
    TextField,
    checked_body,
    cursor_parameter,
    finish_query,
    limit_parameter,
    page_of,
    parse_query,
    problems,
)
from core.problems import Problem, not_found, unprocessable
from core.roles import Allows, Can, can
from streams import source_connect, source_kinds, source_services, source_status
from streams.models import Source, SourceParkedEvent
from streams.source_kinds import SourceError

MAX_DSN = 2000


@extend_schema_field({"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}})
class OptionsField(serializers.DictField):
    pass


class SourceIn(serializers.Serializer):
    name = TextField(
        source_services.NAME_RE.pattern,
        error_messages={"invalid": "1–40 lowercase letters, digits and _, starting with a letter"},
        help_text="1–40 lowercase letters, digits and _, starting with a letter.",
    )
    kind = serializers.ChoiceField(choices=[], help_text="The kind of store (GET /api/v1/sources/kinds).")
    dsn = serializers.CharField(
        required=False,
        default="",
        max_length=MAX_DSN,
        trim_whitespace=False,
        help_text="How to reach it (a postgresql:// URL or key=value pairs), for a role that may only read "
        "there. Stored encrypted, never shown back. Give this or dsn_env.",
    )
    dsn_env = TextField(
        source_connect.ENV_NAME_RE.pattern,
        required=False,
        default="",
        error_messages={"invalid": "an environment variable's name: capitals, digits and _"},
        help_text="Instead of dsn: the environment variable of the server's processes that holds it.",
    )
    options = OptionsField(required=False, default=dict, help_text="The kind's options, by name.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [kind.name for kind in source_kinds.kinds()]


class WriteDsnIn(serializers.Serializer):
    dsn = serializers.CharField(
        required=False,
        default="",
        max_length=MAX_DSN,
        trim_whitespace=False,
        help_text="How to reach the source with a role that may write there (for write-backs). Stored "
        "encrypted, never shown back. Give this or dsn_env.",
    )
    dsn_env = TextField(
        source_connect.ENV_NAME_RE.pattern,
        required=False,
        default="",
        error_messages={"invalid": "an environment variable's name: capitals, digits and _"},
        help_text="Instead of dsn: the environment variable of the server's processes that holds it.",
    )


class SourceOut(serializers.Serializer):
    name = serializers.CharField(source="source.name")
    kind = serializers.CharField(source="source.kind")
    state = serializers.CharField(source="source.state")
    health = serializers.CharField()
    options = serializers.DictField(source="source.options")
    dsn_env = serializers.CharField(source="source.dsn_env", allow_blank=True)
    write_back = serializers.SerializerMethodField(
        help_text="Whether it has a DSN to write back with (PUT …/write-dsn); the DSN is never shown."
    )
    position = serializers.IntegerField(source="source.position", help_text="In the source's own order.")
    head = serializers.IntegerField(
        source="source.head", allow_null=True, help_text="The source's last position when last looked."
    )
    head_at = serializers.DateTimeField(source="source.head_at", allow_null=True)
    lag_events = serializers.IntegerField(
        allow_null=True, help_text="Positions after the copied one (an upper bound: rolled-back ones count)."
    )
    lag_seconds = serializers.FloatField(help_text="How long the copy has been behind; 0 when caught up.")
    rate = serializers.FloatField(
        source="source.rate", allow_null=True, help_text="Events copied per second over about a minute."
    )
    events_copied = serializers.IntegerField(source="source.events_copied")
    events_parked = serializers.IntegerField(source="source.events_parked")
    progressed_at = serializers.DateTimeField(source="source.progressed_at", allow_null=True)
    last_error = serializers.CharField(source="source.last_error", allow_blank=True)
    last_error_at = serializers.DateTimeField(source="source.last_error_at", allow_null=True)
    created_at = serializers.DateTimeField(source="source.created_at")
    created_by = serializers.CharField(source="source.created_by")

    def get_write_back(self, status) -> bool:
        return bool(status.source.write_dsn_encrypted or status.source.write_dsn_env)


@extend_schema_field(OpenApiTypes.OBJECT)
class PayloadField(serializers.JSONField):
    pass


class SourceParkedOut(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField(help_text="In the source's own order.")
    stream = serializers.CharField()
    sequence = serializers.IntegerField(allow_null=True)
    event_id = serializers.UUIDField(allow_null=True)
    type = serializers.CharField()
    reason = serializers.CharField()
    state = serializers.CharField()
    attempts = serializers.IntegerField()
    parked_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolved_by = serializers.CharField()
    payload = PayloadField(
        allow_null=True,
        help_text="What the source held (type, data, metadata); null for the read-only roles.",
    )

    def to_representation(self, instance):
        out = super().to_representation(instance)
        if not self.context.get("payloads"):
            out["payload"] = None
        return out


def _source_or_404(name: str) -> Source:
    source = Source.objects.filter(name=name).first()
    if source is None:
        raise not_found("source", f"no source is named {name!r}")
    return source


def _out(source: Source) -> dict:
    return SourceOut(source_status.source_status(source)).data


@extend_schema(
    methods=["GET"],
    operation_id="sources_list",
    responses={200: page_of("SourcePage", SourceOut), **problems(401)},
)
@extend_schema(
    methods=["POST"],
    operation_id="sources_create",
    request=SourceIn,
    responses={201: SourceOut, **problems(400, 401, 403, 409, 422)},
    description="Check a source and follow it from its start. 400 for a body that does not fit this schema; "
    "409 when one of that name exists; 422, field by field, when it cannot be followed as given (neither "
    "or both of dsn and dsn_env, options its kind does not take, unreachable or not allowed "
    "(REPLAYDESK_SOURCE_ALLOW), no such table or column, a role that may write there): the error says what "
    "to fix. Nothing is saved unless every check passes. Audited, without the DSN.",
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.ADMINISTER)])
def source_list(request: Request) -> Response:
    if request.method == "GET":
        results = [SourceOut(status).data for status in source_status.source_statuses()]
        return Response({"results": results, "next": None})
    body = checked_body(request, SourceIn)
    try:
        source = source_services.add_source(**body, actor=request.user.get_username(), request=request)
    except source_services.InvalidSource as exc:
        errors = exc.errors
        if any("exists already" in message for message in errors.get("name", [])):
            raise Problem(
                status_code=409, problem_type="source-conflict", title="Source exists", detail=str(exc)
            ) from exc
        raise unprocessable(errors) from exc
    location = reverse("api:api-source-detail", args=[source.name])
    return Response(_out(source), status=201, headers={"Location": location})


@extend_schema(operation_id="sources_retrieve", responses={200: SourceOut, **problems(401, 404)})
@api_view(["GET"])
def source_detail(request: Request, name: str) -> Response:
    return Response(_out(_source_or_404(name)))


def _state_view(state: str, operation_id: str, description: str):
    @extend_schema(
        operation_id=operation_id,
        request=None,
        responses={200: SourceOut, **problems(401, 403, 404)},
        description=description,
    )
    @api_view(["POST"])
    @permission_classes([Allows.to(Can.OPERATE)])
    def view(request: Request, name: str) -> Response:
        _source_or_404(name)
        actor = request.user.get_username()
        source = source_services.set_state(name=name, state=state, actor=actor, request=request)
        return Response(_out(source))

    return view


source_pause = _state_view(Source.State.PAUSED, "sources_pause", "Stop following it (audited).")
source_resume = _state_view(
    Source.State.RUNNING, "sources_resume", "Follow it again from where it stopped (audited)."
)


@extend_schema(
    operation_id="sources_parked",
    parameters=[
        OpenApiParameter(
            "state",
            str,
            enum=list(SourceParkedEvent.State.values),
            description="Only those in this state; all by default.",
        ),
        cursor_parameter(0),
        limit_parameter(50),
    ],
    responses={200: page_of("SourceParkedPage", SourceParkedOut), **problems(400, 401, 404)},
    description="Its events that could not be copied as they were, with why, in the source's order, "
    "keyset-paged by position (`next`); `payload` (what the source held) only for those who may operate.",
)
@api_view(["GET"])
def source_parked(request: Request, name: str) -> Response:
    source = _source_or_404(name)
    parser = parse_query(request, ("state", "cursor", "limit"))
    state = parser.choice("state", tuple(SourceParkedEvent.State.values), None)
    after = parser.integer("cursor", minimum=0)
    limit = parser.limit(50)
    finish_query(parser)
    parked = SourceParkedEvent.objects.filter(source=source)
    if state is not None:
        parked = parked.filter(state=state)
    if after is not None:
        parked = parked.filter(position__gt=after)
    page = list(parked.order_by("position")[:limit])
    next_cursor = str(page[-1].position) if len(page) == limit else None
    context = {"payloads": can(request.user, Can.OPERATE)}
    return Response({"results": SourceParkedOut(page, many=True, context=context).data, "next": next_cursor})


def _parked_view(action, operation_id: str, description: str):
    @extend_schema(
        operation_id=operation_id,
        request=None,
        responses={200: SourceParkedOut, **problems(401, 403, 404, 409)},
        description=description,
    )
    @api_view(["POST"])
    @permission_classes([Allows.to(Can.OPERATE)])
    def view(request: Request, name: str, parked_id: int) -> Response:
        _source_or_404(name)
        try:
            actor = request.user.get_username()
            parked = action(name=name, parked_id=parked_id, actor=actor, request=request)
        except SourceError as exc:
            raise Problem(
                status_code=409,
                problem_type="parked-event-conflict",
                title="Cannot do that now",
                detail=str(exc),
            ) from exc
        return Response(SourceParkedOut(parked, context={"payloads": True}).data)

    return view


source_parked_retry = _parked_view(
    source_services.retry_parked,
    "sources_parked_retry",
    "Read the event from the source again and copy it (audited); 409 with why when it is still in conflict.",
)
source_parked_skip = _parked_view(
    source_services.skip_parked, "sources_parked_skip", "Leave it out of the log for good (audited)."
)


@extend_schema(
    methods=["PUT"],
    operation_id="sources_write_dsn_set",
    request=WriteDsnIn,
    responses={200: SourceOut, **problems(400, 401, 403, 404, 422)},
    description="Give the source the DSN of a role that may write there, which a write_back job writes "
    "with. 422, field by field, when it cannot be reached or may not write what a write-back writes; "
    "nothing is saved then. Audited, without the DSN.",
)
@extend_schema(
    methods=["DELETE"],
    operation_id="sources_write_dsn_clear",
    request=None,
    responses={200: SourceOut, **problems(401, 403, 404)},
    description="Take the write DSN away (audited).",
)
@api_view(["PUT", "DELETE"])
@permission_classes([Allows.to(Can.ADMINISTER)])
def source_write_dsn(request: Request, name: str) -> Response:
    _source_or_404(name)
    body = checked_body(request, WriteDsnIn) if request.method == "PUT" else {"dsn": "", "dsn_env": ""}
    if request.method == "PUT" and not (body["dsn"] or body["dsn_env"]):
        raise unprocessable({"dsn": ["give the DSN, or the name of the variable that holds it (dsn_env)"]})
    try:
        source = source_services.set_write_dsn(
            name=name, **body, actor=request.user.get_username(), request=request
        )
    except source_services.InvalidSource as exc:
        raise unprocessable(exc.errors) from exc
    return Response(_out(source))
