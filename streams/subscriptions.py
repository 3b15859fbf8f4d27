"""Subscriptions: consumers in other services that read the log over HTTP, as a consumer group does.

A subscription hashes each stream to one of its partitions (`partition_of`, the same in SQL as
`replaydesk_stream_partition`, migration streams/0009; fixed at creation), so the events of one stream
always go to one partition, in position order. Each partition keeps its checkpoint and its lease in its
own row (SubscriptionPartition):

- A fetch claims, in one short transaction, a partition whose lease is free or expired, or goes on with
  the one the reader holds. The candidates are locked with `FOR UPDATE SKIP LOCKED`, so two readers
  never both see one partition as free: a partition is leased to one reader at a time.
- It delivers the partition's events after what its lease delivered so far (after the checkpoint, for a
  new lease), read only up to the settled head (selectors.head()), so that no event is passed over by a
  commit racing behind it. `delivered_up_to` records how far the lease got.
- An acknowledgement moves the checkpoint up to a position the lease delivered. A lease that expired,
  or that is not the partition's (taken over, released, another subscription's), is refused: an ack
  never moves a checkpoint for a reader that no longer holds the partition.
- A lease expires when its holder neither fetches nor acknowledges for `lease_seconds`; the next reader
  starts again from the checkpoint, so what was delivered and not acknowledged is delivered again (at
  least once) and per-stream order holds.
- A negative acknowledgement says the events before it were handled and it was not, with a reason; it
  is delivered again from there, and after `max_nacks` in a row it is parked (like a projection's or a
  sink's parked events: listed, skipped, in the consumers API) and the partition goes on.
- A parked event an operator retries is queued, and delivered again by the next fetch of its partition,
  ahead of the partition's new events, in a batch of its own marked `redelivery` (out of position order,
  which is what a retry is for); an acknowledgement under the lease that delivered it resolves it, a
  nack parks it again (streams/subscription_redelivery.py). The checkpoint does not move for these.

A fetch with nothing to deliver waits up to `wait` seconds in a slot of the waiting-read caps
(streams/read_waits.py), so waiting fetches cannot take every request thread. It looks again when the
process's one LISTEN connection says events may have been appended (wakeups.appends), and at least
every LOOK_AGAIN_SECONDS for what no append announces (a lease another reader let expire).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest, Now
from django.http import HttpRequest
from django.utils import timezone

from core.audit import AuditType
from streams import audit, read_waits, selectors, wakeups
from streams import subscription_redelivery as redelivery
from streams.consumer_kinds import ConsumerError
from streams.consumers import name_event
from streams.models import Consumer, Event, ParkedEvent, Subscription, SubscriptionPartition

MAX_PARTITIONS = 64
MAX_BATCH = 1000
MAX_REASON = 2000
# A partition's rate is counted over windows of about this long.
RATE_WINDOW_SECONDS = 60.0

_PARTITION_SQL = (
    "(SELECT replaydesk_stream_partition(s.name, %s) FROM streams_stream s"
    ' WHERE s.id = "streams_event"."stream_id")'
)


class SubscriptionExists(ConsumerError):
    """A consumer of that name exists already."""


class LeaseConflict(ConsumerError):
    """The lease is not (or no longer) the partition's: nothing was changed."""


class NotDelivered(ConsumerError):
    """A position the lease did not deliver, or acknowledged already: nothing was changed."""


@dataclass(frozen=True)
class Batch:
    """What a fetch hands a reader: a partition's events under its lease (none: nothing to do)."""

    partition: int | None = None
    lease: uuid.UUID | None = None
    lease_expires_at: dt.datetime | None = None
    checkpoint: int | None = None
    delivered_up_to: int | None = None
    events: tuple[Event, ...] = ()
    # Parked events retried by an operator, delivered again out of position order
    # (streams/subscription_redelivery.py); acknowledged like any others.
    redelivery: bool = False


@dataclass(frozen=True)
class Nacked:
    partition: SubscriptionPartition
    parked: bool


def partition_of(stream: str, partitions: int) -> int:
    """The partition of a stream: the first 32 bits of the md5 of its name, modulo the partitions."""
    return int(hashlib.md5(stream.encode()).hexdigest()[:8], 16) % partitions  # noqa: S324 - not security


def log_filter(subscription: Subscription) -> selectors.LogFilter:
    return selectors.LogFilter(types=tuple(subscription.types), categories=tuple(subscription.categories))


def get_subscription(*, name: str) -> Subscription | None:
    return Subscription.objects.select_related("consumer").filter(consumer__name=name).first()


# --- creating and deleting (audited)


def create_subscription(
    *,
    name: str,
    actor: str,
    categories: list[str] | tuple[str, ...] = (),
    types: list[str] | tuple[str, ...] = (),
    partitions: int = 1,
    lease_seconds: int = 30,
    max_nacks: int = 5,
    from_head: bool = False,
    request: HttpRequest | None = None,
) -> Subscription:
    """A subscription, its consumer and its partitions, starting at the beginning of the log (or at the
    head with `from_head`). The caller has checked the form of each setting (the API's serializer)."""
    with transaction.atomic():
        if Consumer.objects.filter(name=name).exists():
            raise SubscriptionExists(f"a consumer named {name!r} exists already")
        start = selectors.head() if from_head else 0
        consumer = Consumer.objects.create(name=name, kind=Consumer.Kind.SUBSCRIPTION, position=start)
        subscription = Subscription.objects.create(
            consumer=consumer,
            categories=list(categories),
            types=list(types),
            partitions=partitions,
            lease_seconds=lease_seconds,
            max_nacks=max_nacks,
        )
        SubscriptionPartition.objects.bulk_create(
            SubscriptionPartition(
                subscription=subscription, number=n, checkpoint=start, delivered_up_to=start
            )
            for n in range(partitions)
        )
        audit.record(
            subject=f"consumer.{name}",
            type=AuditType.SUBSCRIPTION_CREATED,
            actor=actor,
            data={
                "consumer": name,
                "position": start,
                "categories": list(categories),
                "types": list(types),
                "partitions": partitions,
                "lease_seconds": lease_seconds,
                "max_nacks": max_nacks,
            },
            request=request,
        )
    return subscription


def delete_subscription(*, name: str, actor: str, request: HttpRequest | None = None) -> None:
    """Forget the subscription, its checkpoints, leases and parked events (audited, with where each
    partition's checkpoint was, so that it could be created again from there)."""
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().filter(consumer__name=name).first()
        if subscription is None:
            raise ConsumerError(f"no subscription is named {name!r}")
        checkpoints = dict(subscription.partition_rows.values_list("number", "checkpoint"))
        Consumer.objects.filter(pk=subscription.pk).delete()
        audit.record(
            subject=f"consumer.{name}",
            type=AuditType.SUBSCRIPTION_DELETED,
            actor=actor,
            data={"consumer": name, "checkpoints": {str(n): cp for n, cp in sorted(checkpoints.items())}},
            request=request,
        )


# --- fetching


def fetch(
    *,
    subscription: Subscription,
    reader: str,
    max_events: int,
    wait_seconds: float,
    user_id: int | str,
    lease: uuid.UUID | None = None,
) -> Batch:
    """A batch of one partition's events for `reader` under a lease, waiting up to `wait_seconds` (at most
    REPLAYDESK_FETCH_WAIT_MAX_SECONDS) for some when there are none; an empty batch when the wait ran
    out. A Problem (429) when this process or user has as many reads waiting as the caps allow.

    `lease` is the lease of the last batch the reader received: the holder goes on after what that lease
    delivered. Without it (or with another), the reader is taken to have received nothing of its
    partition since the checkpoint (an answer lost on the way, a restarted reader), and the partition's
    unacknowledged events are delivered again: a lost answer never lets an acknowledgement pass over
    events nobody handled."""
    wait_seconds = min(wait_seconds, settings.REPLAYDESK_FETCH_WAIT_MAX_SECONDS)
    seen = wakeups.appends.seen() if wait_seconds > 0 else 0
    batch = _deliver(subscription, reader, max_events, lease)
    if batch.events or wait_seconds <= 0:
        return batch
    with read_waits.waiting_slot(user_id, seconds=wait_seconds, waiting_for="events"):
        deadline = time.monotonic() + wait_seconds
        while not batch.events and (left := deadline - time.monotonic()) > 0:
            seen = wakeups.appends.wait(seen, left)
            batch = _deliver(subscription, reader, max_events, lease)
    return batch


@dataclass(frozen=True)
class _Candidate:
    id: int
    number: int
    checkpoint: int
    delivered_up_to: int
    lease: uuid.UUID | None
    # A current lease of this reader.
    mine: bool
    # When a lease given or renewed now expires, on the database's clock (its transaction's now()).
    renewed: dt.datetime


def _deliver(subscription: Subscription, reader: str, limit: int, received: uuid.UUID | None) -> Batch:
    """One attempt: the reader's own partition if it has events for it (or events it has yet to
    acknowledge), else the first free or expired partition that has events. A reader whose partition
    has nothing left to deliver or acknowledge lets it go. A partition's parked events queued for
    redelivery go first, in a batch of their own. A paused subscription delivers nothing."""
    with transaction.atomic():
        state = Consumer.objects.filter(pk=subscription.pk).values_list("state", flat=True).first()
        if state != Consumer.State.RUNNING:
            return Batch()
        candidates = _candidates(subscription, reader)
        head = selectors.head()
        pending = redelivery.pending(subscription)
        for row in candidates:
            if row.mine:
                again = _redeliver(subscription, row, reader, row.lease, pending, limit)
                if again is not None:
                    return again
                # What its lease delivered, if the reader says it received it; else again from the checkpoint.
                after = row.delivered_up_to if received == row.lease else row.checkpoint
                events = _events(subscription, row.number, after=after, head=head, limit=limit)
                if events or row.delivered_up_to > row.checkpoint or pending.awaiting(row.number, row.lease):
                    return _lease(subscription, row, reader, row.lease, events)
                _passed_over(row, head)
        for row in candidates:
            if not row.mine:
                again = _redeliver(subscription, row, reader, uuid.uuid4(), pending, limit)
                if again is not None:
                    return again
                events = _events(subscription, row.number, after=row.checkpoint, head=head, limit=limit)
                if events:
                    return _lease(subscription, row, reader, uuid.uuid4(), events)
                _passed_over(row, head)
    return Batch()


def _redeliver(
    subscription: Subscription,
    row: _Candidate,
    reader: str,
    lease: uuid.UUID,
    pending: redelivery.Pending,
    limit: int,
) -> Batch | None:
    """The partition's queued parked events that `lease` has not delivered, as a redelivery batch under
    it; None when there are none."""
    if not pending.to_deliver(row.number, lease):
        return None
    events = redelivery.take(subscription, row.number, lease=lease, reader=reader, limit=limit)
    return _lease(subscription, row, reader, lease, events, redelivered=True) if events else None


def _passed_over(row: _Candidate, head: int) -> None:
    """A partition with nothing to deliver or acknowledge up to the head: it is let go, and its checkpoint
    moves to the head (it has no events before it), so that the next look starts there instead of
    reading the log again from an old checkpoint."""
    SubscriptionPartition.objects.filter(pk=row.id).update(
        lease=None,
        reader="",
        lease_expires_at=None,
        checkpoint=Greatest("checkpoint", head),
        delivered_up_to=Greatest("checkpoint", head),
    )


def _candidates(subscription: Subscription, reader: str) -> list[_Candidate]:
    """The partitions this reader may take, locked for this transaction: those it holds, then the free
    and expired ones, by number. A partition another transaction is claiming now is skipped."""
    mine = Q(reader=reader, lease__isnull=False, lease_expires_at__gt=Now())
    rows = (
        SubscriptionPartition.objects.select_for_update(skip_locked=True)
        .filter(subscription=subscription)
        .filter(mine | Q(lease__isnull=True) | Q(lease_expires_at__lte=Now()))
        .annotate(mine=ExpressionWrapper(mine, output_field=BooleanField()), renewed=_renewed(subscription))
        .order_by("-mine", "number")
        .values_list("id", "number", "checkpoint", "delivered_up_to", "lease", "mine", "renewed")
    )
    return [_Candidate(*row) for row in rows]


def _partition_events(subscription: Subscription, number: int, *, after: int, up_to: int) -> QuerySet[Event]:
    """The events of the partition it follows after `after`, up to `up_to` (a head: see head())."""
    events = selectors.filter_events(
        Event.objects.filter(position__gt=after, position__lte=up_to), log_filter(subscription)
    )
    if subscription.partitions == 1:
        return events  # every stream is the one partition's: no hash to compute per event
    return events.alias(partition=RawSQL(_PARTITION_SQL, [subscription.partitions])).filter(partition=number)


def _events(
    subscription: Subscription, number: int, *, after: int, head: int, limit: int
) -> selectors.Events:
    """The partition's events after `after`, in position order, up to `limit` and the byte bound of a read.

    The planner cannot tell how many events a partition filter keeps, so it costs a read from an old
    checkpoint as a scan of the rest of the log; past jit_above_cost PostgreSQL compiled the statement
    first, on every fetch: 9–110 ms on a log of 1.2 million events, against 4 ms for the read itself
    (bench/README.md, section 7). The read stops at `limit` rows: JIT is off for it."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
    candidates = _partition_events(subscription, number, after=after, up_to=head).order_by("position")
    return selectors.load_within(candidates[:limit], max_bytes=settings.REPLAYDESK_READ_MAX_BYTES, rows=True)


def _renewed(subscription: Subscription) -> RawSQL:
    """The database's clock, so that every web process agrees when a lease expires."""
    return RawSQL("now() + make_interval(secs => %s)", [subscription.lease_seconds])


def _lease(
    subscription: Subscription,
    row: _Candidate,
    reader: str,
    lease: uuid.UUID,
    events: selectors.Events,
    *,
    redelivered: bool = False,
) -> Batch:
    if redelivered:
        # Behind the checkpoint: the partition's own delivery stays where it was (a new lease has
        # delivered none of it yet).
        delivered = row.delivered_up_to if lease == row.lease else row.checkpoint
    else:
        delivered = events[-1].position if events else row.delivered_up_to
    SubscriptionPartition.objects.filter(pk=row.id).update(
        lease=lease, reader=reader, lease_expires_at=row.renewed, delivered_up_to=delivered
    )
    return Batch(
        partition=row.number,
        lease=lease,
        lease_expires_at=row.renewed,
        checkpoint=row.checkpoint,
        delivered_up_to=delivered,
        events=tuple(events),
        redelivery=redelivered,
    )


# --- acknowledging


def _held(subscription: Subscription, lease: uuid.UUID) -> SubscriptionPartition:
    """The partition this lease holds, locked; LeaseConflict when it holds none now."""
    partition = (
        SubscriptionPartition.objects.select_for_update()
        .filter(subscription=subscription, lease=lease)
        .annotate(
            live=ExpressionWrapper(Q(lease_expires_at__gt=Now()), output_field=BooleanField()),
            renewed=_renewed(subscription),
        )
        .first()
    )
    if partition is None:
        raise LeaseConflict(
            f"lease {lease} holds no partition of {subscription.consumer.name}: it expired and another "
            "reader took the partition, or it was let go; fetch again"
        )
    if not partition.live:
        raise LeaseConflict(
            f"lease {lease} expired at {partition.lease_expires_at.isoformat()}; what it delivered without "
            "acknowledgement goes to the next fetch; fetch again"
        )
    return partition


def _save(subscription: Subscription, partition: SubscriptionPartition, fields: list[str]) -> None:
    """The changed fields and the renewed lease, in one statement (the renewal's expiry was read with the
    partition, on the database's clock: see _held)."""
    partition.lease_expires_at = partition.renewed
    partition.save(update_fields=[*fields, "lease_expires_at"])


def ack(
    *, subscription: Subscription, lease: uuid.UUID, position: int, request: HttpRequest | None = None
) -> SubscriptionPartition:
    """Move the partition's checkpoint to `position` (events of it up to there are handled) and renew
    the lease; the parked events this lease redelivered at or before `position` are retried (audited).
    A position at or before the checkpoint changes nothing else (a repeated ack), but one of a parked
    event queued for redelivery that this lease has not delivered is refused."""
    with transaction.atomic():
        partition = _held(subscription, lease)
        if position > partition.delivered_up_to:
            raise NotDelivered(
                f"position {position} is beyond what lease {lease} delivered (up to "
                f"{partition.delivered_up_to})"
            )
        retried = [p for p in redelivery.delivered(subscription, lease) if p.event_id <= position]
        # A parked event is behind the checkpoint (parking moved the checkpoint past it).
        behind = position <= partition.checkpoint and position not in {p.event_id for p in retried}
        if behind and redelivery.queued_at(subscription, position):
            raise NotDelivered(
                f"the parked event at position {position} is queued for redelivery and lease {lease} has "
                "not delivered it; fetch to receive it, then acknowledge it"
            )
        redelivery.resolve(retried, request=request)
        fields: list[str] = []
        if position > partition.checkpoint:
            now = timezone.now()
            _measure_rate(subscription, partition, now, before=partition.checkpoint, after=position)
            partition.checkpoint, partition.progressed_at = position, now
            fields += ["checkpoint", "progressed_at", "rate", "rate_window_at", "rate_window_checkpoint"]
            if partition.failing_position is not None and partition.failing_position <= position:
                partition.failing_position, partition.nacks = None, 0
                fields += ["failing_position", "nacks"]
            Consumer.objects.filter(pk=subscription.pk).update(progressed_at=now)
        _save(subscription, partition, fields)
    return partition


def nack(
    *,
    subscription: Subscription,
    lease: uuid.UUID,
    position: int,
    reason: str,
    request: HttpRequest | None = None,
) -> Nacked:
    """The event at `position` was not handled (`reason`); the events of the partition before it were.
    It is delivered again, with what followed it; at its max_nacks-th nack in a row it is parked and the
    checkpoint passes it. A parked event this lease redelivered is parked again at once."""
    with transaction.atomic():
        partition = _held(subscription, lease)
        redelivered = redelivery.delivered(subscription, lease)
        if position in {p.event_id for p in redelivered}:
            return _nack_redelivered(subscription, partition, redelivered, position, reason, request)
        if _repeats_last_nack(subscription, partition, position):
            # The reader did not get the answer to its nack and asks again: the same answer, and the
            # nack is not counted twice.
            return Nacked(partition=partition, parked=partition.failing_position != position)
        redelivery.resolve([p for p in redelivered if p.event_id < position], request=request)
        if not partition.checkpoint < position <= partition.delivered_up_to:
            raise NotDelivered(
                f"lease {lease} has delivered and not acknowledged positions {partition.checkpoint + 1} to "
                f"{partition.delivered_up_to} only"
            )
        event = Event.objects.select_related("stream").filter(position=position).first()
        if event is None or not _delivers(subscription, partition.number, event):
            raise NotDelivered(f"no event of partition {partition.number} has position {position}")
        now = timezone.now()
        nacks = partition.nacks + 1 if partition.failing_position == position else 1
        consumer = _failed(subscription, event, reason, now)
        parked = nacks >= subscription.max_nacks
        acknowledged = partition.checkpoint
        if parked:
            ParkedEvent.objects.update_or_create(
                consumer=consumer,
                event=event,
                defaults={
                    "error": consumer.last_error,
                    "attempts": nacks,
                    "state": ParkedEvent.State.PARKED,
                    "resolved_at": None,
                    "resolved_by": "",
                },
            )
            partition.checkpoint, partition.failing_position, partition.nacks = position, None, 0
        else:
            partition.checkpoint, partition.failing_position, partition.nacks = position - 1, position, nacks
        if partition.checkpoint > acknowledged:
            _measure_rate(subscription, partition, now, before=acknowledged, after=partition.checkpoint)
            partition.progressed_at = now
        # What followed it goes again too, from the checkpoint: per-stream order holds.
        partition.delivered_up_to = partition.checkpoint
        _save(
            subscription,
            partition,
            [
                "checkpoint",
                "delivered_up_to",
                "failing_position",
                "nacks",
                "progressed_at",
                "rate",
                "rate_window_at",
                "rate_window_checkpoint",
            ],
        )
    return Nacked(partition=partition, parked=parked)


def _repeats_last_nack(subscription: Subscription, partition: SubscriptionPartition, position: int) -> bool:
    """Whether a nack of `position` repeats the lease's last nack: nothing was delivered since (a nack
    sends its event, and what followed it, to the next fetch), and that nack left its event failing at
    the checkpoint, or parked and passed by it."""
    if partition.delivered_up_to != partition.checkpoint:
        return False
    if partition.failing_position == position:
        return partition.checkpoint == position - 1
    return (
        partition.checkpoint == position
        and ParkedEvent.objects.filter(
            consumer=subscription.consumer, event_id=position, state=ParkedEvent.State.PARKED
        ).exists()
    )


def _nack_redelivered(
    subscription: Subscription,
    partition: SubscriptionPartition,
    redelivered: list[ParkedEvent],
    position: int,
    reason: str,
    request: HttpRequest | None,
) -> Nacked:
    """A redelivered parked event failed again: parked again (one attempt more); the lease's redelivered
    events before it were handled, those after it go again. The checkpoint does not move."""
    failed = next(p for p in redelivered if p.event_id == position)
    redelivery.resolve([p for p in redelivered if p.event_id < position], request=request)
    redelivery.deliver_again([p for p in redelivered if p.event_id > position])
    consumer = _failed(subscription, failed.event, reason, timezone.now())
    redelivery.park_again(failed, error=consumer.last_error)
    _save(subscription, partition, [])
    return Nacked(partition=partition, parked=True)


def _failed(subscription: Subscription, event: Event, reason: str, now: dt.datetime) -> Consumer:
    """The subscription's last error: this event's, with the reader's reason."""
    consumer = subscription.consumer
    consumer.last_error, consumer.last_error_at = f"{name_event(event)}: {reason}"[:MAX_REASON], now
    consumer.save(update_fields=["last_error", "last_error_at"])
    return consumer


def _measure_rate(
    subscription: Subscription, partition: SubscriptionPartition, now: dt.datetime, *, before: int, after: int
) -> None:
    """The checkpoint moves from `before` to `after`: once a window is over, its events are counted
    (the partition's, that it follows) and the next window starts."""
    if partition.rate_window_at is None:
        partition.rate_window_at, partition.rate_window_checkpoint = now, before
        return
    elapsed = (now - partition.rate_window_at).total_seconds()
    if elapsed < RATE_WINDOW_SECONDS:
        return
    counted = _partition_events(
        subscription, partition.number, after=partition.rate_window_checkpoint, up_to=after
    ).count()
    partition.rate = round(counted / elapsed, 3)
    partition.rate_window_at, partition.rate_window_checkpoint = now, after


def _delivers(subscription: Subscription, number: int, event: Event) -> bool:
    followed = log_filter(subscription)
    return (
        partition_of(event.stream.name, subscription.partitions) == number
        and (not followed.types or event.type in followed.types)
        and (not followed.categories or event.stream.category in followed.categories)
    )


# --- moving checkpoints (the rewind and skip-to-head jobs: recovery/kinds/subscription_moves.py)


@dataclass(frozen=True)
class Move:
    """Where each partition's checkpoint goes: back to `position` (a rewind: what was acknowledged after
    it is delivered again) or forward to it (a skip: what was not delivered is passed over). A partition
    already on the far side stays where it is: a rewind never skips, a skip never re-delivers."""

    position: int
    back: bool

    def of(self, checkpoint: int) -> int:
        return min(checkpoint, self.position) if self.back else max(checkpoint, self.position)


def moved_events(subscription: Subscription, move: Move) -> QuerySet[Event]:
    """The events the move passes over (forward) or hands out again (back), from the checkpoints now."""
    spans = Q()
    for number, checkpoint in subscription.partition_rows.values_list("number", "checkpoint"):
        low, high = sorted((checkpoint, move.of(checkpoint)))
        if low < high:
            spans |= Q(partition=number, position__gt=low, position__lte=high)
    if not spans:
        return Event.objects.none()
    events = selectors.filter_events(Event.objects.all(), log_filter(subscription))
    return events.alias(partition=RawSQL(_PARTITION_SQL, [subscription.partitions])).filter(spans)


def move_checkpoints(*, subscription: Subscription, move: Move, actor: str, job: int) -> dict:
    """Move the checkpoints (audited, with where each was) and let go of the moved partitions' leases, so
    that an acknowledgement under one is refused and the next fetch starts at the new checkpoint. Waits
    for acknowledgements in flight (the partitions are locked), so none lands after the move."""
    with transaction.atomic():
        rows = list(
            SubscriptionPartition.objects.select_for_update()
            .filter(subscription=subscription)
            .order_by("number")
        )
        events = moved_events(subscription, move).count()
        moved: dict[str, dict[str, int]] = {}
        for row in rows:
            target = move.of(row.checkpoint)
            if target == row.checkpoint:
                continue
            moved[str(row.number)] = {"from": row.checkpoint, "to": target}
            SubscriptionPartition.objects.filter(pk=row.pk).update(
                checkpoint=target,
                delivered_up_to=target,
                lease=None,
                reader="",
                lease_expires_at=None,
                failing_position=None,
                nacks=0,
                rate_window_at=None,
            )
        name = subscription.consumer.name
        result = {
            "subscription": name,
            "direction": "back" if move.back else "forward",
            "position": move.position,
            "partitions": moved,
            "events": events,
        }
        audit.record(
            subject=f"consumer.{name}",
            type=AuditType.SUBSCRIPTION_MOVED,
            actor=actor,
            data={"consumer": name, "job": job, **result},
        )
    return result
