"""The consumers API (/api/v1/consumers…): lag and health, lagging streams, pause and resume, and the
parking lot. Thin: parse, call a selector or a service, render."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import cursor_parameter, finish_query, limit_parameter, page_of, parse_query, problems
from core.problems import Problem, not_found
from core.roles import Allows, Can, can
from streams import lag, masking
from streams.api import EventOut
from streams.consumers import ConsumerError, pause_consumer, resume_consumer, retry_parked, skip_parked
from streams.models import Consumer, ParkedEvent


class ConsumerOut(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Consumer.Kind.choices)
    state = serializers.ChoiceField(choices=Consumer.State.choices)
    checkpoint = serializers.IntegerField(help_text="The position up to which it has read the log.")
    head = serializers.IntegerField(help_text="The highest committed position.")
    lag_events = serializers.IntegerField(
        help_text="Events it follows committed after its checkpoint: counted exactly within 2,000 positions "
        "of it, estimated from those beyond (see lag_exact)."
    )
    lag_exact = serializers.BooleanField(help_text="False when lag_events is an estimate.")
    lag_seconds = serializers.FloatField(help_text="Age of the oldest of those events; 0 when caught up.")
    rate = serializers.FloatField(
        allow_null=True,
        help_text="Events it follows applied per second over about the last minute, from the lag "
        "samples; null until there is a sample of the last minute.",
    )
    health = serializers.ChoiceField(choices=[(h, h) for h in lag.HEALTHS])
    last_error = serializers.CharField(help_text="Empty when it never failed. Short: what happened.")
    last_error_detail = serializers.SerializerMethodField(
        help_text="What a sink's receiver or connection said with the last error (the start of its "
        "answer, the connection's error); null unless the caller may operate."
    )
    last_error_at = serializers.DateTimeField(allow_null=True)
    progressed_at = serializers.DateTimeField(allow_null=True, help_text="When its checkpoint last moved.")
    lag_threshold = serializers.IntegerField(help_text="Over this many events behind, it is lagging.")
    stall_seconds = serializers.IntegerField(
        help_text="Behind and not moving for this many seconds, it is stalled."
    )

    def get_last_error_detail(self, status) -> str | None:
        details = self.context.get("error_details")
        return None if details is None else details.get(status.name, "")


class StreamLagOut(serializers.Serializer):
    stream = serializers.CharField()
    version = serializers.IntegerField()
    applied_sequence = serializers.IntegerField(
        help_text="The stream's last sequence at or before the consumer's checkpoint."
    )
    lag_events = serializers.IntegerField(help_text="Events of the stream it follows and has yet to apply.")


class ParkedOut(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=ParkedEvent.State.choices)
    error = serializers.CharField(help_text="Short: what happened.")
    error_detail = serializers.SerializerMethodField(
        help_text="What the receiver or connection said; null unless the caller may operate."
    )
    attempts = serializers.IntegerField()
    parked_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolved_by = serializers.CharField()
    queued_by = serializers.CharField(
        help_text="A subscription's: who retried it, queueing it for redelivery (empty otherwise)."
    )
    queued_at = serializers.DateTimeField(allow_null=True)
    redelivered_to = serializers.CharField(
        help_text="The reader whose fetch delivered it again, not acknowledged yet (empty otherwise)."
    )
    redelivered_at = serializers.DateTimeField(allow_null=True)
    event = EventOut()

    def get_error_detail(self, parked: ParkedEvent) -> str | None:
        return parked.error_detail if self.context.get("shows_error_detail") else None


def _shows_error_detail(request: Request) -> bool:
    """What a receiver said can hold what an internal service answered: operators and admins only."""
    return can(request.user, Can.OPERATE)


def _error_details(request: Request, consumers: QuerySet[Consumer]) -> dict:
    """The serializer context: each consumer's error detail by name, for those who may see them."""
    if not _shows_error_detail(request):
        return {"error_details": None}
    return {"error_details": dict(consumers.values_list("name", "last_error_detail"))}


def _consumer_or_404(name: str) -> Consumer:
    consumer = Consumer.objects.filter(name=name).first()
    if consumer is None:
        raise not_found("consumer", f"no consumer is named {name!r}")
    return consumer


def _conflict(exc: ConsumerError) -> Problem:
    return Problem(
        status_code=409, problem_type="consumer-conflict", title="Cannot do that now", detail=str(exc)
    )


def _status(request: Request, consumer: Consumer) -> dict:
    context = _error_details(request, Consumer.objects.filter(pk=consumer.pk))
    return ConsumerOut(lag.consumer_status(consumer=consumer), context=context).data


@extend_schema(
    operation_id="consumers_list", responses={200: page_of("ConsumerPage", ConsumerOut), **problems(401)}
)
@api_view(["GET"])
def consumer_list(request: Request) -> Response:
    # Consumers are few (one per projection and sink): one page, so `next` is always null.
    context = _error_details(request, Consumer.objects.all())
    out = ConsumerOut(lag.consumer_statuses(), many=True, context=context)
    return Response({"results": out.data, "next": None})


@extend_schema(operation_id="consumers_retrieve", responses={200: ConsumerOut, **problems(401, 404)})
@api_view(["GET"])
def consumer_detail(request: Request, name: str) -> Response:
    return Response(_status(request, _consumer_or_404(name)))


@extend_schema(
    operation_id="consumers_lagging_streams",
    parameters=[limit_parameter(10)],
    responses={200: page_of("StreamLagPage", StreamLagOut), **problems(400, 401, 404)},
)
@api_view(["GET"])
def lagging_streams(request: Request, name: str) -> Response:
    consumer = _consumer_or_404(name)
    parser = parse_query(request, ("limit",))
    limit = parser.limit(10)
    finish_query(parser)
    streams = lag.top_lagging_streams(consumer=consumer, limit=limit)
    return Response({"results": StreamLagOut(streams, many=True).data, "next": None})


@extend_schema(
    operation_id="consumers_pause", request=None, responses={200: ConsumerOut, **problems(401, 404, 409)}
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def pause(request: Request, name: str) -> Response:
    _consumer_or_404(name)
    try:
        consumer = pause_consumer(name=name, actor=request.user.get_username(), request=request)
    except ConsumerError as exc:
        raise _conflict(exc) from exc
    return Response(_status(request, consumer))


@extend_schema(
    operation_id="consumers_resume", request=None, responses={200: ConsumerOut, **problems(401, 404, 409)}
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def resume(request: Request, name: str) -> Response:
    _consumer_or_404(name)
    try:
        consumer = resume_consumer(name=name, actor=request.user.get_username(), request=request)
    except ConsumerError as exc:
        raise _conflict(exc) from exc
    return Response(_status(request, consumer))


@extend_schema(
    operation_id="consumers_parked_list",
    parameters=[
        OpenApiParameter(
            "state", str, enum=[s for s, _ in ParkedEvent.State.choices], description="Default parked."
        ),
        cursor_parameter(0),
        limit_parameter(50),
    ],
    responses={200: page_of("ParkedPage", ParkedOut), **problems(400, 401, 404)},
)
@api_view(["GET"])
def parked_list(request: Request, name: str) -> Response:
    consumer = _consumer_or_404(name)
    parser = parse_query(request, ("state", "cursor", "limit"))
    state = parser.choice("state", tuple(ParkedEvent.State.values), ParkedEvent.State.PARKED)
    after = parser.integer("cursor", minimum=0)
    limit = parser.limit(50)
    finish_query(parser)
    # Keyset by the event's position, in log order, along the (consumer, state, event) index.
    parked = ParkedEvent.objects.filter(consumer=consumer, state=state).select_related("event__stream")
    if after is not None:
        parked = parked.filter(event_id__gt=after)
    page = list(parked.order_by("event_id")[:limit])
    next_cursor = str(page[-1].event_id) if len(page) == limit else None
    out = ParkedOut(_masked(page), many=True, context={"shows_error_detail": _shows_error_detail(request)})
    return Response({"results": out.data, "next": next_cursor})


def _masked(parked: list[ParkedEvent]) -> list[ParkedEvent]:
    """Parked events show their event as every event output does: personal data masked."""
    for item in parked:
        item.event = masking.mask_event(item.event)
    return parked


def _parked_action(request: Request, name: str, parked_id: int, action) -> Response:
    consumer = _consumer_or_404(name)
    if not ParkedEvent.objects.filter(pk=parked_id, consumer=consumer).exists():
        raise not_found("parked event", f"{name} has no parked event with id {parked_id}")
    try:
        parked = action(parked_id=parked_id, actor=request.user.get_username(), request=request)
    except ConsumerError as exc:
        raise _conflict(exc) from exc
    parked = ParkedEvent.objects.select_related("event__stream").get(pk=parked.pk)
    context = {"shows_error_detail": _shows_error_detail(request)}
    return Response(ParkedOut(_masked([parked])[0], context=context).data)


@extend_schema(
    operation_id="consumers_parked_retry",
    request=None,
    responses={200: ParkedOut, **problems(401, 404, 409)},
    description="Apply the parked event now (a projection's, a sink's). 409 when it fails again (its error "
    "is updated) or was resolved already. A subscription's is queued for redelivery instead (state "
    "`queued`): the next fetch of its partition delivers it, and a reader's acknowledgement retries it.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def parked_retry(request: Request, name: str, parked_id: int) -> Response:
    return _parked_action(request, name, parked_id, retry_parked)


@extend_schema(
    operation_id="consumers_parked_skip",
    request=None,
    responses={200: ParkedOut, **problems(401, 404, 409)},
    description="Give up on the parked event for good (audited). 409 when it was resolved already.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def parked_skip(request: Request, name: str, parked_id: int) -> Response:
    return _parked_action(request, name, parked_id, skip_parked)
