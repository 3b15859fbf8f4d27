"""What a failed delivery to a webhook sink changes: attempts and backoff, the circuit breaker, the
parking lot, and stopping a sink whose endpoint refuses everything.

- A timeout, a connection error, a destination refused at send time (streams/sink_destinations.py),
  5xx, 408, 3xx, or 429 without Retry-After is transient: an attempt is counted on the batch's first
  event and the retry waits `consumers.backoff(attempts)` (full jitter).
  A failed batch is then delivered one event at a time, so that attempts always fall on the event that
  fails; an event that fails alone at its last attempt is parked and the sink goes on.
- 429 with Retry-After waits exactly that long; it counts neither as an attempt nor for the breaker (the
  receiver is up and said when to come back).
- Any other 4xx is permanent for that event: retrying cannot help, so it is parked at its first refusal
  (when delivered alone; a refused batch is split first). If `breaker_threshold` events are refused in a
  row the endpoint refuses everything (a wrong URL, a rotated secret): the sink stops instead of parking
  the log, and says so.
- The circuit breaker opens after `breaker_threshold` failed deliveries in a row: no calls for
  `breaker_cooldown_seconds`, then one probe with a single event; success closes it, failure re-opens it.
  Probes count as attempts, so an event that fails every probe is parked in the end.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models.functions import Greatest
from django.utils import timezone

from streams import consumers
from streams.consumer_kinds import Delivery
from streams.consumers import BatchOutcome, name_event
from streams.models import Consumer, Event, ParkedEvent, Sink
from streams.sink_config import public_url


def failed(
    sink: Sink, consumer: Consumer, events: list[Event], delivery: Delivery, probe: bool
) -> BatchOutcome:
    now = timezone.now()
    first = events[0]
    error = where(events) + delivery.error
    with transaction.atomic():
        consumer.last_error, consumer.last_error_detail, consumer.last_error_at = error, delivery.detail, now
        if delivery.retry_after is not None:
            # The receiver is alive and said when: wait that long, and hold every sender to it.
            consumer.retry_at = now + dt.timedelta(seconds=delivery.retry_after)
            consumer.save(update_fields=[*ERROR_FIELDS, "retry_at"])
            Sink.objects.filter(pk=sink.pk).update(next_send_at=Greatest("next_send_at", consumer.retry_at))
            return BatchOutcome(retry_in=delivery.retry_after)
        if len(events) > 1:
            # Which event is to blame is unknown: go one at a time through this batch's events.
            sink.single_until = events[-1].position
        if delivery.refused:
            return refused(sink, consumer, events, now, probe)
        sink.breaker_failures += 1
        if probe or sink.breaker_failures >= sink.breaker_threshold:
            sink.breaker_state, sink.breaker_opened_at = Sink.Breaker.OPEN, now
        attempts = consumer.attempts + 1 if consumer.failing_position == first.position else 1
        consumer.attempts, consumer.failing_position = attempts, first.position
        parked = len(events) == 1 and attempts >= sink.max_attempts
        if parked:
            park(consumer, first, attempts, now)
            retry_in = None
        else:
            retry_in = consumers.backoff(attempts)
            consumer.retry_at = now + dt.timedelta(seconds=retry_in)
        consumer.save(update_fields=FAILURE_FIELDS)
        sink.save(update_fields=["single_until", "breaker_failures", "breaker_state", "breaker_opened_at"])
    if sink.breaker_state == Sink.Breaker.OPEN:
        retry_in = max(retry_in or 0.0, sink.breaker_cooldown_seconds)
    return BatchOutcome(retry_in=retry_in)


# What a failure says, short for everyone and in detail for operators.
ERROR_FIELDS = ["last_error", "last_error_detail", "last_error_at"]
# What a failed or refused delivery changes on the sink's consumer (parking moves its position).
FAILURE_FIELDS = ["position", "progressed_at", "attempts", "failing_position", "retry_at", *ERROR_FIELDS]


def refused(
    sink: Sink, consumer: Consumer, events: list[Event], now: dt.datetime, probe: bool
) -> BatchOutcome:
    """A 4xx other than 408/429. A batch is split to find the refused event; a single refused event is
    parked at once (no retry can change a refusal), unless refusals keep coming: then the endpoint is
    wrong, not the events, and the sink stops until an operator resumes it."""
    if probe:  # the receiver answered: it is up
        sink.breaker_state, sink.breaker_opened_at, sink.breaker_failures = Sink.Breaker.CLOSED, None, 0
    fields = ["single_until", "breaker_state", "breaker_opened_at", "breaker_failures", "refusals"]
    if len(events) > 1:
        sink.save(update_fields=fields)
        consumer.save(update_fields=ERROR_FIELDS)
        return BatchOutcome()
    sink.refusals += 1
    sink.save(update_fields=fields)
    if sink.refusals >= sink.breaker_threshold:
        consumer.state = Consumer.State.FAILED
        consumer.last_error = (
            f"{sink.refusals} events refused in a row by {public_url(sink.url)}; the last: "
            f"{consumer.last_error}. Check the sink's URL and secret, then resume it."
        )[:4000]
        consumer.save(update_fields=["state", *ERROR_FIELDS])
        return BatchOutcome(idle=True)
    attempts = consumer.attempts + 1 if consumer.failing_position == events[0].position else 1
    park(consumer, events[0], attempts, now)
    consumer.save(update_fields=FAILURE_FIELDS)
    return BatchOutcome()


def park(consumer: Consumer, event: Event, attempts: int, now: dt.datetime) -> None:
    """Set the event aside with the consumer's last error and move the checkpoint past it (the caller
    saves the consumer)."""
    ParkedEvent.objects.create(
        consumer=consumer,
        event=event,
        error=consumer.last_error,
        error_detail=consumer.last_error_detail,
        attempts=attempts,
    )
    consumer.position, consumer.progressed_at = event.position, now
    consumer.attempts, consumer.failing_position, consumer.retry_at = 0, None, None


def where(events: list[Event]) -> str:
    where = name_event(events[0])
    if len(events) > 1:
        where += f" and {len(events) - 1} more"
    return where + ": "
