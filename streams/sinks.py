"""HTTP webhook sinks: the runner that delivers the log to an endpoint. Their configuration is in
streams/sink_config.py; one POST and what its answer means in streams/sink_delivery.py; the rate limit
in streams/sink_pacing.py; what a failure changes (backoff, breaker, parking) in streams/sink_failures.py.

Delivery is at least once. The checkpoint (Consumer.position) moves only after the receiver answered
2xx; a worker that dies between the answer and the checkpoint sends the batch again, and receivers
dedupe on each event's id.

One deliverer per sink: a run holds a session-level advisory lock for its whole length, taken and
released outside any transaction, so no transaction stays open across an HTTP call, and a killed worker's
lock dies with its connection.
"""

from __future__ import annotations

import datetime as dt
import time

import httpx
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from core.locks import held, lock_key
from streams import consumers, selectors, sink_failures
from streams.consumer_kinds import ConsumerError, RunResult
from streams.consumers import BatchOutcome
from streams.models import Consumer, ParkedEvent, Sink
from streams.sink_delivery import SIGNATURE_HEADER as SIGNATURE_HEADER  # what receivers verify
from streams.sink_delivery import deliver, http_client
from streams.sink_delivery import signature as signature
from streams.sink_pacing import batch_limit, claim_slot, settle, slot_wait

# An operator's retry waits this long at most for the pacing clock before giving up.
RETRY_PACING_WAIT_SECONDS = 10.0


def log_filter(sink: Sink) -> selectors.LogFilter:
    """What the sink follows, as the log is read."""
    return selectors.LogFilter(types=tuple(sink.types), categories=tuple(sink.categories))


# --- the runner


def run_sink(name: str, *, budget_seconds: float = 5.0) -> RunResult:
    """Deliver batches until caught up, out of time, or told to wait (backoff, breaker, rate limit)."""
    if not Sink.objects.filter(consumer__name=name).exists():
        raise ConsumerError(f"no sink is named {name!r}")
    deadline = time.monotonic() + budget_seconds
    with held(lock_key("consumer", name)) as got:
        if not got:
            return RunResult(0, caught_up=False, idle=True)
        delivered = 0
        with http_client() as client:
            while True:
                outcome = _step(client, name, deadline)
                delivered += outcome.applied
                if (
                    outcome.caught_up
                    or outcome.idle
                    or outcome.retry_in is not None
                    or time.monotonic() >= deadline
                ):
                    return RunResult(delivered, outcome.caught_up, outcome.idle, outcome.retry_in)


def _step(client: httpx.Client, name: str, deadline: float) -> BatchOutcome:
    sink = Sink.objects.select_related("consumer").get(consumer__name=name)
    consumer = sink.consumer
    now = timezone.now()
    if consumer.state != Consumer.State.RUNNING:
        return BatchOutcome(idle=True)
    go_at = consumer.retry_at or now
    if sink.breaker_state == Sink.Breaker.OPEN:
        go_at = max(go_at, sink.breaker_opened_at + dt.timedelta(seconds=sink.breaker_cooldown_seconds))
    if go_at > now:
        return BatchOutcome(retry_in=(go_at - now).total_seconds())
    if sink.breaker_state == Sink.Breaker.OPEN:
        Sink.objects.filter(pk=sink.pk).update(breaker_state=Sink.Breaker.HALF_OPEN)
        sink.breaker_state = Sink.Breaker.HALF_OPEN
    # Still half-open from an earlier run means its probe never finished (a killed worker): probe again.
    probe = sink.breaker_state == Sink.Breaker.HALF_OPEN
    position = consumer.position or 0
    single = probe or (sink.single_until is not None and sink.single_until > position)
    limit = 1 if single else batch_limit(sink)
    head = selectors.head()
    # A window of positions, as projections read: the cost does not grow with how selective the filter is.
    window_end = min(head, selectors.next_position(after=position) - 1 + limit * consumers.WINDOW_FACTOR)
    # Bounded in bytes too: a worker holds the batch, and the receiver takes it as one body.
    events = selectors.read_all(
        after_position=position,
        up_to_position=window_end,
        log_filter=log_filter(sink),
        limit=limit,
        max_bytes=settings.REPLAYDESK_READ_MAX_BYTES,
    )
    if not events:
        if window_end > position:  # events outside the filter are passed over too
            Consumer.objects.filter(pk=consumer.pk).update(position=window_end, progressed_at=now)
        return BatchOutcome(caught_up=window_end == head)
    claimed = claim_slot(sink, len(events), max(0.0, deadline - time.monotonic()))
    if claimed is None:
        return BatchOutcome(retry_in=slot_wait(sink))
    slot, wait = claimed
    time.sleep(wait)
    delivery = deliver(client, sink, events)
    settle(sink, slot)
    if not delivery.ok:
        return sink_failures.failed(sink, consumer, events, delivery, probe)
    full = len(events) == limit or events.cut  # more may follow before window_end
    _delivered(sink, consumer, events[-1].position if full else window_end)
    return BatchOutcome(applied=len(events), caught_up=not full and window_end == head)


def _delivered(sink: Sink, consumer: Consumer, checkpoint: int) -> None:
    now = timezone.now()
    with transaction.atomic():
        Consumer.objects.filter(pk=consumer.pk).update(
            position=checkpoint, progressed_at=now, attempts=0, failing_position=None, retry_at=None
        )
        done_single = sink.single_until is not None and checkpoint >= sink.single_until
        Sink.objects.filter(pk=sink.pk).update(
            breaker_state=Sink.Breaker.CLOSED,
            breaker_opened_at=None,
            breaker_failures=0,
            refusals=0,
            single_until=None if done_single else sink.single_until,
        )


# --- operator retry of a parked event


def retry_parked_delivery(*, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
    """Deliver one parked event again, on its own, whatever the breaker says (an operator asked), but
    within the rate limit. On failure nothing changes but its error and attempts, and ConsumerError says
    why. No transaction is open during the POST; two operators retrying at once may both deliver it,
    which the receiver's dedupe by event id absorbs, and the second is told it was retried already."""
    with transaction.atomic():
        parked = consumers.parked_for_update(parked_id)
    sink = Sink.objects.select_related("consumer").get(pk=parked.consumer_id)
    claimed = claim_slot(sink, 1, RETRY_PACING_WAIT_SECONDS)
    if claimed is None:
        raise ConsumerError(
            f"{sink.consumer.name}'s rate limit allows its next delivery in {slot_wait(sink):.0f} s; "
            "retry then"
        )
    slot, wait = claimed
    time.sleep(wait)
    with http_client() as client:
        delivery = deliver(client, sink, [parked.event])
    settle(sink, slot)
    with transaction.atomic():
        parked = consumers.parked_for_update(parked_id)
        if not delivery.ok:
            error = sink_failures.where([parked.event]) + delivery.error
            ParkedEvent.objects.filter(pk=parked.pk).update(
                error=error, error_detail=delivery.detail, attempts=parked.attempts + 1
            )
        else:
            consumers.resolve_parked(parked, state=ParkedEvent.State.RETRIED, actor=actor, request=request)
    if not delivery.ok:
        raise ConsumerError(f"the retry failed again: {error}")
    return parked


def sinks_overview() -> list[Sink]:
    """Every sink with its consumer, by name (for `replaydesk sink list`)."""
    return list(Sink.objects.select_related("consumer").order_by("consumer__name"))
