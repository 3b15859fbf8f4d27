"""The subscriptions API (/api/v1/subscriptions…): consumers in other services that read the log over
HTTP (streams/subscriptions.py). Thin: check the body, call a service or a selector, render.

Creating and deleting a subscription needs the operate permission (they are audited, and a deleted
subscription's checkpoints are gone). Fetching and acknowledging need only the read permission: a
reader receives events as the events API shows them to the same token (personal data masked), and an
acknowledgement moves only the checkpoint of the subscription its lease belongs to.
"""

from __future__ import annotations

import dataclasses

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import (
    NOT_BLANK,
    FlagField,
    NumberField,
    TextField,
    UUIDTextField,
    WholeNumberField,
    checked_body,
    page_of,
    problems,
)
from core.problems import Problem, not_found, unprocessable
from core.roles import Allows, Can
from streams import masking, subscription_status, subscriptions
from streams.api import EventOut
from streams.api_consumers import ConsumerOut
from streams.models import Subscription
from streams.sink_config import CATEGORY_RE, NAME_RE
from streams.validation import TYPE_RE

READER_RE = r"^[A-Za-z0-9_.:@-]{1,200}$"


class SubscriptionIn(serializers.Serializer):
    name = TextField(
        NAME_RE.pattern,
        error_messages={"invalid": "1–40 lowercase letters, digits and _, starting with a letter"},
        help_text="1–40 lowercase letters, digits and _, starting with a letter; unique among consumers.",
    )
    categories = serializers.ListField(
        child=TextField(
            CATEGORY_RE.pattern, error_messages={"invalid": "a category is 1–200 of A-Z a-z 0-9 _ . : @"}
        ),
        required=False,
        default=list,
        max_length=100,
        help_text="Stream categories it follows (a stream's name before its first -); empty: all.",
    )
    types = serializers.ListField(
        child=TextField(
            TYPE_RE.pattern,
            error_messages={"invalid": "an event type starts with a letter; letters, digits _ . : -"},
        ),
        required=False,
        default=list,
        max_length=100,
        help_text="Event types it follows; empty: all.",
    )
    partitions = WholeNumberField(
        min_value=1,
        max_value=subscriptions.MAX_PARTITIONS,
        default=1,
        help_text="Fixed for good: the events of one stream always go to one partition (the first 32 bits "
        "of the md5 of the stream's name, modulo this), each leased to one reader at a time.",
    )
    lease_seconds = WholeNumberField(
        min_value=1,
        max_value=3600,
        default=30,
        help_text="A lease its holder neither fetches nor acknowledges under for this long expires.",
    )
    max_nacks = WholeNumberField(
        min_value=1,
        max_value=100,
        default=5,
        help_text="Negative acknowledgements in a row that park an event.",
    )
    from_head = FlagField(default=False, help_text="Start at the head instead of the beginning of the log.")


class FetchIn(serializers.Serializer):
    reader = TextField(
        READER_RE,
        error_messages={"invalid": "1–200 of A-Z a-z 0-9 _ . : @ -"},
        help_text="An id the reader chooses (1–200 of A-Z a-z 0-9 _ . : @ -); a reader goes on with the "
        "partition it holds.",
    )
    lease = UUIDTextField(
        required=False,
        default=None,
        help_text="The lease of the last batch this reader received, to go on after it. Leave it out when "
        "the reader has received nothing since its last acknowledgement (it started, or an answer was "
        "lost): the partition's unacknowledged events come again, so none is passed over.",
    )
    max = WholeNumberField(min_value=1, max_value=subscriptions.MAX_BATCH, default=100)
    wait = NumberField(
        min_value=0,
        max_value=60,
        default=0,
        help_text="Seconds to wait for events when there are none (at most "
        "REPLAYDESK_FETCH_WAIT_MAX_SECONDS, 30 by default); then an empty batch.",
    )


class AckIn(serializers.Serializer):
    lease = UUIDTextField(help_text="The lease of the fetch that delivered the events.")
    position = WholeNumberField(
        min_value=0, help_text="Every event of the partition up to here is handled; at most delivered_up_to."
    )


class NackIn(serializers.Serializer):
    lease = UUIDTextField(help_text="The lease of the fetch that delivered the event.")
    position = WholeNumberField(
        min_value=1,
        help_text="The event not handled; those of the partition before it were. It is delivered again, "
        "and parked at its max_nacks-th nack in a row.",
    )
    reason = TextField(
        NOT_BLANK,
        max_length=subscriptions.MAX_REASON,
        error_messages={"invalid": "say why it was not handled"},
        help_text="Why it was not handled.",
    )


class PartitionOut(serializers.Serializer):
    partition = serializers.IntegerField()
    checkpoint = serializers.IntegerField(
        help_text="Every event of the partition up to here is acknowledged."
    )
    delivered_up_to = serializers.IntegerField(help_text="What the current lease has delivered.")
    lag_events = serializers.IntegerField(help_text="Events of the partition after its checkpoint (exact).")
    lag_seconds = serializers.FloatField(help_text="Age of the oldest of them; 0 when caught up.")
    rate = serializers.FloatField(
        allow_null=True,
        help_text="Events acknowledged per second over its last window of about a minute; 0 after two "
        "minutes without one; null until a window was counted.",
    )
    health = serializers.CharField()
    reader = serializers.CharField(allow_null=True, help_text="Who holds its lease now; null when free.")
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    nacks = serializers.IntegerField(help_text="Negative acknowledgements in a row of failing_position.")
    failing_position = serializers.IntegerField(allow_null=True)
    progressed_at = serializers.DateTimeField(allow_null=True)
    redeliveries = serializers.IntegerField(
        help_text="Parked events of the partition queued for redelivery (retried, not acknowledged yet)."
    )


class SubscriptionOut(ConsumerOut):
    categories = serializers.ListField(child=serializers.CharField(), source="subscription.categories")
    types = serializers.ListField(child=serializers.CharField(), source="subscription.types")
    partitions = serializers.IntegerField(source="subscription.partitions")
    lease_seconds = serializers.IntegerField(source="subscription.lease_seconds")
    max_nacks = serializers.IntegerField(source="subscription.max_nacks")
    partition_status = PartitionOut(many=True, source="partitions")

    def to_representation(self, status):
        out = dict(ConsumerOut(status.consumer, context=self.context).data)
        # The partitions' own counts, exact; the consumer's is measured from its slowest partition.
        out["lag_events"], out["lag_exact"], out["rate"] = status.lag_events, True, status.rate
        for name, field in self.fields.items():
            if name not in out:
                out[name] = field.to_representation(field.get_attribute(status))
        return out


class BatchOut(serializers.Serializer):
    partition = serializers.IntegerField(allow_null=True, help_text="Null when there was nothing to deliver.")
    lease = serializers.UUIDField(allow_null=True, help_text="Acknowledge under this lease.")
    lease_expires_at = serializers.DateTimeField(allow_null=True)
    checkpoint = serializers.IntegerField(allow_null=True, help_text="The partition's checkpoint.")
    delivered_up_to = serializers.IntegerField(
        allow_null=True, help_text="The lease has delivered the partition's events up to here."
    )
    events = EventOut(many=True, help_text="In position order; per stream, in sequence order.")
    redelivery = serializers.BooleanField(
        help_text="True for parked events an operator retried, delivered again ahead of the partition's "
        "new events and behind its checkpoint: out of position order, which is what a retry is for. "
        "Acknowledge (or nack) them under this lease as any others."
    )


class AckOut(serializers.Serializer):
    partition = serializers.IntegerField(source="number")
    checkpoint = serializers.IntegerField()
    delivered_up_to = serializers.IntegerField()
    lease_expires_at = serializers.DateTimeField(help_text="Renewed by this acknowledgement.")


class NackOut(serializers.Serializer):
    partition = serializers.IntegerField(source="partition.number")
    checkpoint = serializers.IntegerField(source="partition.checkpoint")
    delivered_up_to = serializers.IntegerField(source="partition.delivered_up_to")
    lease_expires_at = serializers.DateTimeField(source="partition.lease_expires_at")
    nacks = serializers.IntegerField(
        source="partition.nacks", help_text="Nacks in a row of the event; 0 once it is parked."
    )
    parked = serializers.BooleanField()


def _subscription_or_404(name: str) -> Subscription:
    subscription = subscriptions.get_subscription(name=name)
    if subscription is None:
        raise not_found("subscription", f"no subscription is named {name!r}")
    return subscription


def _status(request: Request, subscription: Subscription) -> dict:
    status = subscription_status.subscription_status(subscription=subscription)
    return SubscriptionOut(status, context={"error_details": None}).data


def _conflict(exc: Exception, problem_type: str) -> Problem:
    return Problem(status_code=409, problem_type=problem_type, title="Cannot do that now", detail=str(exc))


@extend_schema(
    methods=["GET"],
    operation_id="subscriptions_list",
    responses={200: page_of("SubscriptionPage", SubscriptionOut), **problems(401)},
)
@extend_schema(
    methods=["POST"],
    operation_id="subscriptions_create",
    request=SubscriptionIn,
    responses={201: SubscriptionOut, **problems(400, 401, 403, 409)},
    description="409 when a consumer of that name exists. Audited.",
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def subscription_list(request: Request) -> Response:
    if request.method == "GET":
        statuses = subscription_status.subscription_statuses()
        out = SubscriptionOut(statuses, many=True, context={"error_details": None})
        return Response({"results": out.data, "next": None})
    body = checked_body(request, SubscriptionIn)
    try:
        subscription = subscriptions.create_subscription(
            **body, actor=request.user.get_username(), request=request
        )
    except subscriptions.SubscriptionExists as exc:
        raise _conflict(exc, "subscription-conflict") from exc
    location = reverse("api:api-subscription-detail", args=[subscription.consumer.name])
    return Response(_status(request, subscription), status=201, headers={"Location": location})


@extend_schema(
    methods=["GET"],
    operation_id="subscriptions_retrieve",
    responses={200: SubscriptionOut, **problems(401, 404)},
)
@extend_schema(
    methods=["DELETE"],
    operation_id="subscriptions_destroy",
    responses={204: None, **problems(401, 403, 404)},
    description="Forget it, its checkpoints, leases and parked events. Audited.",
)
@api_view(["GET", "DELETE"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def subscription_detail(request: Request, name: str) -> Response:
    subscription = _subscription_or_404(name)
    if request.method == "GET":
        return Response(_status(request, subscription))
    subscriptions.delete_subscription(name=name, actor=request.user.get_username(), request=request)
    return Response(status=204)


@extend_schema(
    operation_id="subscriptions_fetch",
    request=FetchIn,
    responses={200: BatchOut, **problems(400, 401, 404, 429)},
    description="A batch of one partition's events under a lease, after what the lease delivered (after "
    "the checkpoint, for a new lease). Parked events an operator retried come first, in a batch of their "
    "own marked `redelivery` (behind the checkpoint: out of position order). Waits up to `wait` seconds "
    "when there is nothing to deliver; then an empty batch (partition and lease null unless the reader "
    "holds a partition with events yet to acknowledge). 429 with Retry-After when too many fetches are "
    "waiting.",
)
@api_view(["POST"])
def fetch(request: Request, name: str) -> Response:
    subscription = _subscription_or_404(name)
    body = checked_body(request, FetchIn)
    batch = subscriptions.fetch(
        subscription=subscription,
        reader=body["reader"],
        max_events=body["max"],
        wait_seconds=body["wait"],
        user_id=request.user.pk,
        lease=body["lease"],
    )
    out = dict(BatchOut(dataclasses.replace(batch, events=())).data)
    event_out = EventOut()  # one for the batch: a serializer per event was a third of the rendering
    out["events"] = [event_out.to_representation(masking.mask_event(event)) for event in batch.events]
    return Response(out)


def _lease_refused(exc: Exception) -> Problem:
    if isinstance(exc, subscriptions.LeaseConflict):
        return _conflict(exc, "lease-conflict")
    return unprocessable({"position": [str(exc)]})


@extend_schema(
    operation_id="subscriptions_ack",
    request=AckIn,
    responses={200: AckOut, **problems(400, 401, 404, 409, 422)},
    description="Move the partition's checkpoint to `position` and renew the lease; the parked events this "
    "lease redelivered at or before `position` are retried (audited). 409 when the lease expired or is not "
    "the partition's now; 422 when `position` is beyond what the lease delivered, or is a parked event "
    "queued for redelivery that the lease has not delivered.",
)
@api_view(["POST"])
def ack(request: Request, name: str) -> Response:
    subscription = _subscription_or_404(name)
    body = checked_body(request, AckIn)
    try:
        partition = subscriptions.ack(
            subscription=subscription, lease=body["lease"], position=body["position"], request=request
        )
    except (subscriptions.LeaseConflict, subscriptions.NotDelivered) as exc:
        raise _lease_refused(exc) from exc
    return Response(AckOut(partition).data)


@extend_schema(
    operation_id="subscriptions_nack",
    request=NackIn,
    responses={200: NackOut, **problems(400, 401, 404, 409, 422)},
    description="The event at `position` was not handled (with why); the partition's events before it "
    "were. It is delivered again with what followed it, and parked at its max_nacks-th nack in a row "
    "(then listed under /api/v1/consumers/{name}/parked). A parked event the lease redelivered is parked "
    "again at once. The same nack sent again before the next fetch (its answer was lost) gets the same "
    "answer and is not counted twice. 409 as for an ack; 422 when `position` is not an event of the "
    "partition that the lease delivered and that is not acknowledged.",
)
@api_view(["POST"])
def nack(request: Request, name: str) -> Response:
    subscription = _subscription_or_404(name)
    body = checked_body(request, NackIn)
    try:
        nacked = subscriptions.nack(
            subscription=subscription,
            lease=body["lease"],
            position=body["position"],
            reason=body["reason"],
            request=request,
        )
    except (subscriptions.LeaseConflict, subscriptions.NotDelivered) as exc:
        raise _lease_refused(exc) from exc
    return Response(NackOut(nacked).data)
