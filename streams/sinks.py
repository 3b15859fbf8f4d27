"""HTTP webhook sinks: the runner that delivers the log to an endpoint (their configuration is in
streams/sink_config.py).

Delivery is at least once. A batch is POSTed as JSON, signed with HMAC-SHA256 of the raw body, and the
checkpoint (Consumer.position) moves only after the receiver answered 2xx; a worker that dies between the
answer and the checkpoint sends the batch again. Receivers therefore dedupe on each event's `id` (the
per-event idempotency key); the `Idempotency-Key` header (`<first id>..<last id>`) names the whole batch.

One deliverer per sink: a run holds a session-level advisory lock for its whole length, taken and
released outside any transaction, so no transaction stays open across an HTTP call, and a killed worker's
lock dies with its connection.

Failures (see `_failed`):
- A timeout, a connection error, 5xx, 408, 3xx, or 429 without Retry-After is transient: an attempt is
  counted on the batch's first event and the retry waits `consumers.backoff(attempts)` (full jitter).
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

Rate limit: a sliding window, kept in PostgreSQL. Every POST (delivered or not) first claims a send
slot: the earliest time at which its events, added to those sent or claimed in the second before, stay
within `rate` (`Sink.recent_sends` is that log, `Sink.next_send_at` the latest slot; both change in one
short locked transaction, on the database's clock). So no 1-second window ever sees more than `rate`
events, across runs, workers and operator retries, whatever the mix of full batches and single events.
A POST holds at most a second's worth of events. (Below 1 event/s: one event per 1/rate seconds.)
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.db import connection, transaction
from django.db.models.functions import Greatest
from django.http import HttpRequest
from django.utils import timezone

from streams import consumers, selectors
from streams.consumers import BatchOutcome, ConsumerError, RunResult, lock_key
from streams.models import Consumer, Event, ParkedEvent, Sink
from streams.sink_config import public_url

# A Retry-After further away than this is taken as this: a receiver must not park a sink for days.
MAX_RETRY_AFTER_SECONDS = 3600.0
# An operator's retry waits this long at most for the pacing clock before giving up.
RETRY_PACING_WAIT_SECONDS = 10.0
SIGNATURE_HEADER = "X-Replaydesk-Signature"
TIMESTAMP_HEADER = "X-Replaydesk-Timestamp"
USER_AGENT = "replaydesk-sink/1"


# --- the runner


def run_sink(name: str, *, budget_seconds: float = 5.0) -> RunResult:
    """Deliver batches until caught up, out of time, or told to wait (backoff, breaker, rate limit)."""
    if not Sink.objects.filter(consumer__name=name).exists():
        raise ConsumerError(f"no sink is named {name!r}")
    deadline = time.monotonic() + budget_seconds
    if not _lock(name):
        return RunResult(0, caught_up=False, idle=True)
    delivered = 0
    try:
        with httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT}) as client:
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
    finally:
        _unlock(name)


def _lock(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key(name)])
        return cursor.fetchone()[0]


def _unlock(name: str) -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_key(name)])
    except Exception:  # noqa: BLE001 — a broken connection has released the lock already
        connection.close()


@dataclass(frozen=True)
class Delivery:
    ok: bool
    # Permanent: the receiver refused these events (4xx other than 408/429); retrying cannot help.
    refused: bool = False
    retry_after: float | None = None
    error: str = ""


def batch_limit(sink: Sink) -> int:
    """Events per POST: the configured batch size, but never more than a second's worth."""
    return max(1, min(sink.batch_size, math.floor(sink.rate_per_second)))


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
    events = selectors.read_all(
        after_position=position,
        up_to_position=window_end,
        log_filter=selectors.LogFilter(types=tuple(sink.types), categories=tuple(sink.categories)),
        limit=limit,
    )
    if not events:
        if window_end > position:  # events outside the filter are passed over too
            Consumer.objects.filter(pk=consumer.pk).update(position=window_end, progressed_at=now)
        return BatchOutcome(caught_up=window_end == head)
    wait = claim_slot(sink, len(events), max(0.0, deadline - time.monotonic()))
    if wait is None:
        return BatchOutcome(retry_in=_slot_wait(sink))
    time.sleep(wait)
    delivery = deliver(client, sink, events)
    if not delivery.ok:
        return _failed(sink, consumer, events, delivery, probe)
    full = len(events) == limit
    _delivered(sink, consumer, events[-1].position if full else window_end)
    return BatchOutcome(applied=len(events), caught_up=not full and window_end == head)


def claim_slot(sink: Sink, count: int, within: float) -> float | None:
    """Claim a send slot for `count` events; the seconds until it, or None (nothing claimed) when it
    is further away than `within`. The database's clock is the one every worker agrees on."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT recent_sends, extract(epoch FROM next_send_at), extract(epoch FROM clock_timestamp())"
            " FROM streams_sink WHERE consumer_id = %s FOR UPDATE",
            [sink.pk],
        )
        sent, not_before, now = cursor.fetchone()
        now = float(now)
        window, limit = rate_window(sink.rate_per_second)
        slot, sent = pace(
            sent=json.loads(sent) if isinstance(sent, str) else sent,
            now=now,
            not_before=float(not_before or 0),
            count=count,
            window=window,
            limit=limit,
        )
        if slot - now > within:
            return None
        cursor.execute(
            "UPDATE streams_sink SET recent_sends = %s, next_send_at = to_timestamp(%s)"
            " WHERE consumer_id = %s",
            [json.dumps(sent), slot, sink.pk],
        )
    return slot - now


def rate_window(rate: float) -> tuple[float, int]:
    """(seconds, events): at most `events` in any window of `seconds`."""
    return (1.0, math.floor(rate)) if rate >= 1 else (1 / rate, 1)


def pace(
    *, sent: list[list[float]], now: float, not_before: float, count: int, window: float, limit: int
) -> tuple[float, list[list[float]]]:
    """The earliest time, not before `now` nor `not_before` (slots keep their order), at which `count`
    more events keep every window of `window` seconds within `limit`; and the log of sends
    ([time, events], oldest first) with this one added and those that can no longer matter dropped."""
    slot = max(now, not_before)
    recent = [entry for entry in sent if entry[0] > now - window]
    while True:
        inside = [entry for entry in recent if entry[0] > slot - window]
        if sum(events for _, events in inside) + count <= limit:
            break
        slot = inside[0][0] + window  # when the oldest send in the window leaves it
    return slot, [*recent, [slot, count]]


def _slot_wait(sink: Sink) -> float:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT GREATEST(0, extract(epoch FROM next_send_at - clock_timestamp())) FROM streams_sink"
            " WHERE consumer_id = %s",
            [sink.pk],
        )
        return float(cursor.fetchone()[0] or 0)


def deliver(client: httpx.Client, sink: Sink, events: list[Event]) -> Delivery:
    """One signed POST of `events` to the sink's endpoint (the live runner's and a resync's)."""
    body = json.dumps(
        {"sink": sink.consumer.name, "events": [event_payload(event) for event in events]},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(sink.secret, body),
        TIMESTAMP_HEADER: str(int(time.time())),
        "Idempotency-Key": f"{events[0].event_id}..{events[-1].event_id}",
    }
    try:
        response = client.post(
            sink.url, content=body, headers=headers, timeout=httpx.Timeout(sink.timeout_seconds)
        )
    except httpx.TimeoutException:
        return Delivery(ok=False, error=f"no answer within {sink.timeout_seconds:g} s (timed out)")
    except httpx.HTTPError as exc:
        return Delivery(ok=False, error=f"could not reach {sink.url}: {exc.__class__.__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 300:
        return Delivery(ok=True)
    said = f"HTTP {status} from the receiver"
    if response.text.strip():
        said += f": {response.text.strip()[:300]}"
    if 300 <= status < 400:
        return Delivery(
            ok=False,
            error=f"{said} (redirects to {response.headers.get('location')} "
            "are not followed: point the sink at the final URL)",
        )
    if status == 429:
        return Delivery(ok=False, retry_after=_retry_after(response.headers.get("retry-after")), error=said)
    if 400 <= status < 500 and status != 408:
        return Delivery(ok=False, refused=True, error=said)
    return Delivery(ok=False, error=said)


def event_payload(event: Event) -> dict[str, Any]:
    return {
        "id": str(event.event_id),
        "stream": event.stream.name,
        "sequence": event.sequence,
        "position": event.position,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "actor": event.actor,
        "recorded_at": event.recorded_at.isoformat(),
    }


def signature(secret: str, body: bytes) -> str:
    """The X-Replaydesk-Signature value: receivers compute the same over the raw body and compare."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (it may be a number of seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - timezone.now()).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


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


def _failed(
    sink: Sink, consumer: Consumer, events: list[Event], delivery: Delivery, probe: bool
) -> BatchOutcome:
    now = timezone.now()
    first = events[0]
    error = _where(events) + delivery.error
    with transaction.atomic():
        consumer.last_error, consumer.last_error_at = error, now
        if delivery.retry_after is not None:
            # The receiver is alive and said when: wait that long, and hold every sender to it.
            consumer.retry_at = now + dt.timedelta(seconds=delivery.retry_after)
            consumer.save(update_fields=["last_error", "last_error_at", "retry_at"])
            Sink.objects.filter(pk=sink.pk).update(next_send_at=Greatest("next_send_at", consumer.retry_at))
            return BatchOutcome(retry_in=delivery.retry_after)
        if len(events) > 1:
            # Which event is to blame is unknown: go one at a time through this batch's events.
            sink.single_until = events[-1].position
        if delivery.refused:
            return _refused(sink, consumer, events, now, probe)
        sink.breaker_failures += 1
        if probe or sink.breaker_failures >= sink.breaker_threshold:
            sink.breaker_state, sink.breaker_opened_at = Sink.Breaker.OPEN, now
        attempts = consumer.attempts + 1 if consumer.failing_position == first.position else 1
        consumer.attempts, consumer.failing_position = attempts, first.position
        parked = len(events) == 1 and attempts >= sink.max_attempts
        if parked:
            _park(consumer, first, error, attempts, now)
            retry_in = None
        else:
            retry_in = consumers.backoff(attempts)
            consumer.retry_at = now + dt.timedelta(seconds=retry_in)
        consumer.save(update_fields=_FAILURE_FIELDS)
        sink.save(update_fields=["single_until", "breaker_failures", "breaker_state", "breaker_opened_at"])
    if sink.breaker_state == Sink.Breaker.OPEN:
        retry_in = max(retry_in or 0.0, sink.breaker_cooldown_seconds)
    return BatchOutcome(retry_in=retry_in)


# What a failed or refused delivery changes on the sink's consumer (parking moves its position).
_FAILURE_FIELDS = [
    "position",
    "progressed_at",
    "attempts",
    "failing_position",
    "retry_at",
    "last_error",
    "last_error_at",
]


def _refused(
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
        consumer.save(update_fields=["last_error", "last_error_at"])
        return BatchOutcome()
    sink.refusals += 1
    sink.save(update_fields=fields)
    if sink.refusals >= sink.breaker_threshold:
        consumer.state = Consumer.State.FAILED
        consumer.last_error = (
            f"{sink.refusals} events refused in a row by {public_url(sink.url)}; the last: "
            f"{consumer.last_error}. Check the sink's URL and secret, then resume it."
        )[:4000]
        consumer.save(update_fields=["state", "last_error", "last_error_at"])
        return BatchOutcome(idle=True)
    attempts = consumer.attempts + 1 if consumer.failing_position == events[0].position else 1
    _park(consumer, events[0], consumer.last_error, attempts, now)
    consumer.save(update_fields=_FAILURE_FIELDS)
    return BatchOutcome()


def _park(consumer: Consumer, event: Event, error: str, attempts: int, now: dt.datetime) -> None:
    """Set the event aside and move the checkpoint past it (the caller saves the consumer)."""
    ParkedEvent.objects.create(consumer=consumer, event=event, error=error, attempts=attempts)
    consumer.position, consumer.progressed_at = event.position, now
    consumer.attempts, consumer.failing_position, consumer.retry_at = 0, None, None


def _where(events: list[Event]) -> str:
    first = events[0]
    where = f"event {first.event_id} ({first.type}, {first.stream.name}@{first.sequence}, "
    where += f"position {first.position})"
    if len(events) > 1:
        where += f" and {len(events) - 1} more"
    return where + ": "


# --- operator retry of a parked event


def retry_parked_delivery(*, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
    """Deliver one parked event again, on its own, whatever the breaker says (an operator asked), but
    within the rate limit. On failure nothing changes but its error and attempts, and ConsumerError says
    why. No transaction is open during the POST; two operators retrying at once may both deliver it,
    which the receiver's dedupe by event id absorbs, and the second is told it was retried already."""
    with transaction.atomic():
        parked = consumers._parked(parked_id)
    sink = Sink.objects.select_related("consumer").get(pk=parked.consumer_id)
    wait = claim_slot(sink, 1, RETRY_PACING_WAIT_SECONDS)
    if wait is None:
        raise ConsumerError(
            f"{sink.consumer.name}'s rate limit allows its next delivery in {_slot_wait(sink):.0f} s; "
            "retry then"
        )
    time.sleep(wait)
    with httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT}) as client:
        delivery = deliver(client, sink, [parked.event])
    with transaction.atomic():
        parked = consumers._parked(parked_id)
        if not delivery.ok:
            error = _where([parked.event]) + delivery.error
            ParkedEvent.objects.filter(pk=parked.pk).update(error=error, attempts=parked.attempts + 1)
        else:
            consumers.resolve_parked(parked, state=ParkedEvent.State.RETRIED, actor=actor, request=request)
    if not delivery.ok:
        raise ConsumerError(f"the retry failed again: {error}")
    return parked


def sinks_overview() -> list[Sink]:
    """Every sink with its consumer, by name (for `replaydesk sink list`)."""
    return list(Sink.objects.select_related("consumer").order_by("consumer__name"))
