"""A subscription's parked events retried: queued for redelivery, as KurrentDB replays parked messages.

A subscription's readers are elsewhere, so a retry cannot process the event here. Instead:

- Retrying a parked event queues it (state `queued`, who asked and when; audited). It wakes waiting
  fetches.
- The next fetch that holds, or takes, the event's partition delivers the partition's queued events
  first, as a batch of their own (`redelivery: true`), ahead of the partition's new events. That is out
  of position order (the partition's checkpoint has passed them): it is what a retry is for, and the
  reader is told so by the flag. The batch records the lease that delivered each event
  (`redelivery_lease`) and does not move the partition's `delivered_up_to` or checkpoint.
- An acknowledgement under that lease of a position at or after a redelivered event resolves it
  (state `retried`, resolved by whoever queued it, audited). An acknowledgement of a queued event that
  lease has not delivered is refused, and changes nothing.
- A nack of a redelivered event parks it again (attempts + 1); the lease's redelivered events before it
  are handled (resolved), as a nack says of the events before it, and those after it go again.
- A lease that expires before its acknowledgement leaves the events queued: the next lease of the
  partition delivers them again (at least once). A skip resolves a queued event as it does a parked one.

The functions here run inside the transactions of streams/subscriptions.py, which holds the
partition's row locked; queued rows are locked after it, in the same order everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Func, IntegerField, QuerySet, Value
from django.db.models.functions import Now
from django.http import HttpRequest
from django.utils import timezone

from core.audit import AuditType
from streams import audit, consumers, selectors, wakeups
from streams.models import Event, ParkedEvent, Subscription


@dataclass(frozen=True)
class Pending:
    """What a subscription's queued events ask of a fetch, per partition: events to deliver to a lease,
    and leases with events delivered and not acknowledged."""

    rows: frozenset[tuple[int, uuid.UUID | None]]

    def to_deliver(self, number: int, lease: uuid.UUID | None) -> bool:
        """Whether the partition has queued events `lease` has not delivered (any, for a new lease)."""
        return any(n == number and delivered != lease for n, delivered in self.rows)

    def awaiting(self, number: int, lease: uuid.UUID | None) -> bool:
        """Whether `lease` delivered queued events of the partition that are not acknowledged yet."""
        return lease is not None and (number, lease) in self.rows


def queue(*, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
    """Queue a subscription's parked event for redelivery by the next fetch of its partition, audited."""
    with transaction.atomic():
        parked = consumers.parked_for_update(parked_id)
        parked.state, parked.queued_by, parked.queued_at = ParkedEvent.State.QUEUED, actor, timezone.now()
        parked.redelivery_lease, parked.redelivered_to, parked.redelivered_at = None, "", None
        parked.save(
            update_fields=[
                "state",
                "queued_by",
                "queued_at",
                "redelivery_lease",
                "redelivered_to",
                "redelivered_at",
            ]
        )
        audit.record(
            subject=f"consumer.{parked.consumer.name}",
            type=AuditType.PARKED_EVENT_QUEUED,
            actor=actor,
            data=consumers.parked_data(parked),
            request=request,
        )
        # No append wakes a fetch waiting for events; this does (streams/wakeups.py).
        transaction.on_commit(lambda: wakeups.notify(selectors.head()))
    return parked


# --- inside a fetch (the partition's row is locked)


def pending(subscription: Subscription) -> Pending:
    """One look at the subscription's queued events, for every partition a fetch may consider."""
    rows = (
        _queued(subscription)
        .annotate(number=_partition(subscription))
        .values_list("number", "redelivery_lease")
        .distinct()
    )
    return Pending(frozenset(rows))


def take(
    subscription: Subscription, number: int, *, lease: uuid.UUID, reader: str, limit: int
) -> selectors.Events:
    """The partition's queued events that `lease` has not delivered, in position order, up to `limit`
    and the byte bound of a read, recorded as delivered under `lease` to `reader`. One being skipped or
    retried now (locked) waits for the next fetch."""
    chosen = list(
        _queued(subscription)
        .alias(number=_partition(subscription))
        .filter(number=number)
        .exclude(redelivery_lease=lease)
        .select_for_update(of=("self",), skip_locked=True)
        .order_by("event_id")
        .values_list("event_id", flat=True)[:limit]
    )
    if not chosen:
        return selectors.Events()
    events = selectors.load_within(
        Event.objects.filter(position__in=chosen).order_by("position"),
        max_bytes=settings.REPLAYDESK_READ_MAX_BYTES,
        rows=True,
    )
    ParkedEvent.objects.filter(
        consumer_id=subscription.pk, event_id__in=[event.position for event in events]
    ).update(redelivery_lease=lease, redelivered_to=reader, redelivered_at=Now())
    return events


# --- inside an ack or a nack (the partition's row is locked)


def delivered(subscription: Subscription, lease: uuid.UUID) -> list[ParkedEvent]:
    """The queued events `lease` delivered, locked, in position order."""
    return list(
        _queued(subscription)
        .filter(redelivery_lease=lease)
        .select_related("consumer", "event", "event__stream")
        .select_for_update(of=("self",))
        .order_by("event_id")
    )


def queued_at(subscription: Subscription, position: int) -> bool:
    return _queued(subscription).filter(event_id=position).exists()


def resolve(parked: Iterable[ParkedEvent], *, request: HttpRequest | None = None) -> None:
    """Acknowledged: retried, by whoever queued them (audited, with the reader that handled them)."""
    for each in parked:
        consumers.resolve_parked(
            each,
            state=ParkedEvent.State.RETRIED,
            actor=each.queued_by,
            request=request,
            details={"redelivered_to": each.redelivered_to},
        )


def park_again(parked: ParkedEvent, *, error: str) -> None:
    """Nacked after its redelivery: parked again, one attempt more, waiting for an operator."""
    ParkedEvent.objects.filter(pk=parked.pk).update(
        state=ParkedEvent.State.PARKED,
        error=error,
        attempts=F("attempts") + 1,
        parked_at=Now(),
        queued_by="",
        queued_at=None,
        redelivery_lease=None,
        redelivered_to="",
        redelivered_at=None,
    )


def deliver_again(parked: Iterable[ParkedEvent]) -> None:
    """Delivered, then passed over by a nack of an event before them: the next fetch delivers them again."""
    ParkedEvent.objects.filter(pk__in=[each.pk for each in parked]).update(
        redelivery_lease=None, redelivered_to="", redelivered_at=None
    )


def queued_by_partition(subscription: Subscription) -> dict[int, int]:
    """How many parked events each partition has queued for redelivery (for its status)."""
    rows = (
        _queued(subscription)
        .annotate(number=_partition(subscription))
        .values("number")
        .annotate(n=Count("pk"))
        .values_list("number", "n")
    )
    return dict(rows)


def _queued(subscription: Subscription) -> QuerySet[ParkedEvent]:
    # Along the (consumer, state, event) index: few rows, whatever the parking lot holds.
    return ParkedEvent.objects.filter(consumer_id=subscription.pk, state=ParkedEvent.State.QUEUED)


def _partition(subscription: Subscription) -> Func:
    """The partition of a parked event's stream (streams.subscriptions.partition_of, in SQL)."""
    return Func(
        F("event__stream__name"),
        Value(subscription.partitions),
        function="replaydesk_stream_partition",
        output_field=IntegerField(),
    )
