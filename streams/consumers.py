"""Running consumers: the projection runner, failures and parking, pause and resume.

One runner per projection at a time: every batch is one transaction that first takes a
transaction-scoped advisory lock named after the projection, reads the checkpoint, applies the batch and
moves the checkpoint. A runner that dies mid-batch takes its transaction with it, and the next runner
starts from the same checkpoint, so no event is applied twice and none is lost.

The operator actions (pause, resume, retry or skip a parked event) hold for every kind of consumer;
a retry is done the way the consumer's kind does it (streams/consumer_kinds/).
"""

from __future__ import annotations

import datetime as dt
import random
import time
import traceback
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.http import HttpRequest
from django.utils import timezone

from core.audit import AuditType
from core.locks import lock_key
from streams import audit, batches, consumer_kinds, selectors
from streams.consumer_kinds import ConsumerError, RunResult
from streams.models import Consumer, Event, ParkedEvent
from streams.projections import Projection, create_schema, get_projection, quote, read_checkpoint

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
# A batch reads at most batch_size × this many positions of the log.
WINDOW_FACTOR = 4


@dataclass(frozen=True)
class BatchOutcome:
    applied: int = 0
    caught_up: bool = False
    # Another runner holds the consumer, or it is paused, failed, or waiting to retry.
    idle: bool = False
    retry_in: float | None = None


def ensure_projection(projection: Projection) -> Consumer:
    """The projection's consumer row and schema, created on first use."""
    with transaction.atomic():
        consumer, _ = Consumer.objects.get_or_create(
            name=projection.name, defaults={"kind": Consumer.Kind.PROJECTION}
        )
        create_schema(projection)
    return consumer


def run_projection(name: str, *, budget_seconds: float = 5.0) -> RunResult:
    """Apply batches until caught up, out of time, or unable to go on."""
    projection = get_projection(name)
    if projection is None:
        raise ConsumerError(f"no projection is named {name!r}")
    ensure_projection(projection)
    deadline = time.monotonic() + budget_seconds
    applied = 0
    while True:
        outcome = _projection_batch(projection)
        applied += outcome.applied
        if outcome.caught_up or outcome.idle or outcome.retry_in is not None or time.monotonic() >= deadline:
            return RunResult(applied, outcome.caught_up, outcome.idle, outcome.retry_in)


def _projection_batch(projection: Projection) -> BatchOutcome:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_key("consumer", projection.name)])
        if not cursor.fetchone()[0]:
            return BatchOutcome(idle=True)
        consumer = Consumer.objects.get(name=projection.name)
        now = timezone.now()
        if consumer.state != Consumer.State.RUNNING:
            return BatchOutcome(idle=True)
        if consumer.retry_at is not None and consumer.retry_at > now:
            return BatchOutcome(retry_in=(consumer.retry_at - now).total_seconds())
        position, version = read_checkpoint(projection)
        if version != projection.version:
            _stop(
                consumer,
                f"the schema {projection.schema} holds version {version}, the code is version "
                f"{projection.version}: replay the projection to rebuild it",
            )
            return BatchOutcome(idle=True)
        # A window of positions, not "the next N that match": the read walks the primary key and costs
        # the same however selective the subscription is.
        head = selectors.head()
        # The window starts at the next event there is: holes (rolled-back appends) cost nothing.
        window_end = min(
            head, selectors.next_position(after=position) - 1 + projection.batch_size * WINDOW_FACTOR
        )
        window = selectors.filter_events(
            Event.objects.filter(position__gt=position, position__lte=window_end), projection.log_filter
        )
        batch = batches.read(cursor, projection, window, limit=projection.batch_size)
        if not batch.count:
            if window_end > position:
                _write_checkpoint(cursor, projection, window_end, [])
                _progressed(consumer, now)
            return BatchOutcome(caught_up=window_end == head)
        try:
            with transaction.atomic():
                _apply(cursor, projection, batch)
        except Exception:
            return _isolate_failure(cursor, projection, consumer, batches.events_of(batch, window), now)
        full = batch.count == projection.batch_size
        _write_checkpoint(cursor, projection, batch.last if full else window_end, batch)
        _progressed(consumer, now)
        return BatchOutcome(applied=batch.count, caught_up=not full and window_end == head)


def _apply(cursor: CursorWrapper, projection: Projection, batch: batches.Batch | list[Event]) -> None:
    batches.fold(cursor, projection, batch, schema=projection.schema)


def _write_checkpoint(
    cursor: CursorWrapper, projection: Projection, position: int, batch: batches.Batch | list[Event]
) -> None:
    cursor.execute(f"UPDATE {quote(projection.schema)}.checkpoint SET position = %s", [position])
    batches.record(cursor, projection.schema, batch)


def _progressed(consumer: Consumer, now: dt.datetime) -> None:
    consumer.progressed_at = now
    if consumer.attempts or consumer.retry_at or consumer.failing_position:
        consumer.attempts, consumer.retry_at, consumer.failing_position = 0, None, None
    consumer.save(update_fields=["progressed_at", "attempts", "retry_at", "failing_position"])


def _isolate_failure(
    cursor: CursorWrapper, projection: Projection, consumer: Consumer, events: list[Event], now: dt.datetime
) -> BatchOutcome:
    """The batch failed: apply its events one by one to find the first that fails, keep the ones
    before it, and count an attempt against it."""
    applied: list[Event] = []
    for event in events:
        try:
            with transaction.atomic():
                _apply(cursor, projection, [event])
        except Exception as exc:
            if applied:
                _write_checkpoint(cursor, projection, applied[-1].position, applied)
                _progressed(consumer, now)
            return _count_attempt(cursor, projection, consumer, event, exc, now)
        applied.append(event)
    # Each event went through alone: the batch failed only as a whole (rare; e.g. two events of the
    # batch collide in one set-based statement). Keep them applied one by one.
    _write_checkpoint(cursor, projection, applied[-1].position, applied)
    _progressed(consumer, now)
    return BatchOutcome(applied=len(applied))


def _count_attempt(
    cursor: CursorWrapper,
    projection: Projection,
    consumer: Consumer,
    event: Event,
    exc: Exception,
    now: dt.datetime,
) -> BatchOutcome:
    attempts = consumer.attempts + 1 if consumer.failing_position == event.position else 1
    error = describe(exc, event)
    consumer.attempts, consumer.failing_position = attempts, event.position
    consumer.last_error, consumer.last_error_at = error, now
    if attempts < projection.max_attempts:
        delay = backoff(attempts)
        consumer.retry_at = now + dt.timedelta(seconds=delay)
        consumer.save(
            update_fields=["attempts", "failing_position", "last_error", "last_error_at", "retry_at"]
        )
        return BatchOutcome(retry_in=delay)
    if projection.on_failure == "park":
        ParkedEvent.objects.create(consumer=consumer, event=event, error=error, attempts=attempts)
        _write_checkpoint(cursor, projection, event.position, [])
        consumer.attempts, consumer.failing_position, consumer.retry_at = 0, None, None
        consumer.progressed_at = now
        consumer.save(
            update_fields=[
                "attempts",
                "failing_position",
                "retry_at",
                "progressed_at",
                "last_error",
                "last_error_at",
            ]
        )
        return BatchOutcome()
    _stop(consumer, error)
    return BatchOutcome(idle=True)


def _stop(consumer: Consumer, error: str) -> None:
    """Failed for good: nothing more runs until an operator resumes it."""
    consumer.state, consumer.last_error, consumer.last_error_at = Consumer.State.FAILED, error, timezone.now()
    consumer.save(update_fields=["state", "last_error", "last_error_at", "attempts", "failing_position"])


def name_event(event: Event) -> str:
    """An event as an error message names it: its id, type, place in its stream and position."""
    return (
        f"event {event.event_id} ({event.type}, {event.stream.name}@{event.sequence}, "
        f"position {event.position})"
    )


def describe(exc: Exception, event: Event) -> str:
    last = traceback.format_exception_only(exc)[-1].strip()
    return f"{name_event(event)}: {last}"[:2000]


def backoff(attempts: int) -> float:
    """Exponential backoff with full jitter: a random wait up to base·2^attempts, capped."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempts))


# --- operator actions (audited)


def pause_consumer(*, name: str, actor: str, request=None) -> Consumer:
    with transaction.atomic():
        consumer = _locked(name)
        if consumer.state == Consumer.State.PAUSED:
            raise ConsumerError(f"{name} is paused already")
        consumer.state = Consumer.State.PAUSED
        consumer.save(update_fields=["state"])
        audit.record(
            subject=f"consumer.{name}",
            type=AuditType.CONSUMER_PAUSED,
            actor=actor,
            data={"consumer": name},
            request=request,
        )
    return consumer


def resume_consumer(*, name: str, actor: str, request=None) -> Consumer:
    """Run a paused consumer again, or a failed one from the event it stopped at (attempts reset)."""
    with transaction.atomic():
        consumer = _locked(name)
        if consumer.state == Consumer.State.RUNNING:
            raise ConsumerError(f"{name} is running already")
        was = consumer.state
        consumer.state = Consumer.State.RUNNING
        consumer.attempts, consumer.retry_at = 0, None
        consumer.save(update_fields=["state", "attempts", "retry_at"])
        audit.record(
            subject=f"consumer.{name}",
            type=AuditType.CONSUMER_RESUMED,
            actor=actor,
            data={"consumer": name, "was": was},
            request=request,
        )
        transaction.on_commit(lambda: _wake(name))
    return consumer


def skip_parked(*, parked_id: int, actor: str, request=None) -> ParkedEvent:
    """Give up on a parked event for good; also on one queued for redelivery (a subscription's), whose
    acknowledgement then resolves nothing."""
    with transaction.atomic():
        parked = parked_for_update(parked_id, states=(ParkedEvent.State.PARKED, ParkedEvent.State.QUEUED))
        resolve_parked(parked, state=ParkedEvent.State.SKIPPED, actor=actor, request=request)
    return parked


def resolve_parked(
    parked: ParkedEvent, *, state: str, actor: str, request=None, details: dict | None = None
) -> None:
    """Mark a parked event retried or skipped, audited (with `details`), in the caller's transaction."""
    parked.state, parked.resolved_at, parked.resolved_by = state, timezone.now(), actor
    parked.save(update_fields=["state", "resolved_at", "resolved_by"])
    audit.record(
        subject=f"consumer.{parked.consumer.name}",
        type=AuditType.PARKED_EVENT_RETRIED
        if state == ParkedEvent.State.RETRIED
        else AuditType.PARKED_EVENT_SKIPPED,
        actor=actor,
        data={**parked_data(parked), **(details or {})},
        request=request,
    )


def retry_parked(*, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
    """Process a parked event again, as its consumer's kind does. On failure nothing changes but its
    error, and ConsumerError says why."""
    kind = ParkedEvent.objects.filter(pk=parked_id).values_list("consumer__kind", flat=True).first()
    if kind is None:
        raise ConsumerError(f"no parked event has id {parked_id}")
    return consumer_kinds.get(kind).retry_parked(parked_id=parked_id, actor=actor, request=request)


def reapply_parked(*, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
    """Apply a parked event of a projection now, in one transaction with the projection's lock."""
    with transaction.atomic(), connection.cursor() as cursor:
        parked = parked_for_update(parked_id)
        consumer = parked.consumer
        projection = get_projection(consumer.name)
        if projection is None:
            raise ConsumerError(f"{consumer.name} has no code to apply events with")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("consumer", consumer.name)])
        try:
            with transaction.atomic():
                _apply(cursor, projection, [parked.event])
        except Exception as exc:
            error = describe(exc, parked.event)
            failed = True
        else:
            failed = False
        if failed:
            ParkedEvent.objects.filter(pk=parked.pk).update(error=error, attempts=parked.attempts + 1)
        else:
            resolve_parked(parked, state=ParkedEvent.State.RETRIED, actor=actor, request=request)
    if failed:
        raise ConsumerError(f"the retry failed again: {error}")
    return parked


def _locked(name: str) -> Consumer:
    consumer = Consumer.objects.select_for_update().filter(name=name).first()
    if consumer is None:
        raise ConsumerError(f"no consumer is named {name!r}")
    return consumer


def parked_for_update(
    parked_id: int, *, states: tuple[str, ...] = (ParkedEvent.State.PARKED,)
) -> ParkedEvent:
    """The parked event, locked (in the caller's transaction), if it is in one of `states` (parked)."""
    parked = (
        ParkedEvent.objects.select_for_update(of=("self",))
        .select_related("consumer", "event", "event__stream")
        .filter(pk=parked_id)
        .first()
    )
    if parked is None:
        raise ConsumerError(f"no parked event has id {parked_id}")
    if parked.state == ParkedEvent.State.QUEUED and parked.state not in states:
        raise ConsumerError(
            f"that event is queued for redelivery already, by {parked.queued_by or 'someone'}: its "
            "partition's next fetch delivers it"
        )
    if parked.state not in states:
        raise ConsumerError(f"that event was {parked.state} already, by {parked.resolved_by or 'someone'}")
    return parked


def parked_data(parked: ParkedEvent) -> dict:
    return {
        "consumer": parked.consumer.name,
        "event_id": str(parked.event.event_id),
        "position": parked.event.position,
        "stream": parked.event.stream.name,
    }


def _wake(name: str) -> None:
    from streams.tasks import enqueue_consumer

    if settings.REPLAYDESK_CONSUMERS_WAKE:
        enqueue_consumer(name)
