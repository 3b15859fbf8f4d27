"""A webhook sink's rate limit: a sliding window, kept in PostgreSQL.

Every POST (delivered or not) first claims a send slot: the earliest time at which its events, added to
those sent or claimed in the second before, stay within `rate` (`Sink.recent_sends` is that log,
`Sink.next_send_at` the latest slot; both change in one short locked transaction, on the database's
clock). When the POST has been answered, its entry moves to that moment (`settle`): a worker that
left late (descheduled, a slow connect) paces those after it from when it really sent, not from the
slot it had claimed. So no 1-second window ever sees more than `rate` events, across runs, workers,
resyncs and operator retries, whatever the mix of full batches and single events. A POST holds at
most a second's worth of events (`batch_limit`). (Below 1 event/s: one event per 1/rate seconds.)
"""

from __future__ import annotations

import json
import math

from django.db import connection, transaction

from streams.models import Sink


def batch_limit(sink: Sink) -> int:
    """Events per POST: the configured batch size, but never more than a second's worth."""
    return max(1, min(sink.batch_size, math.floor(sink.rate_per_second)))


def claim_slot(sink: Sink, count: int, within: float) -> tuple[float, float] | None:
    """Claim a send slot for `count` events: (the slot, the seconds until it), or None (nothing
    claimed) when it is further away than `within`. The database's clock is the one every worker
    agrees on."""
    with transaction.atomic(), connection.cursor() as cursor:
        sent, not_before, now = _locked(cursor, sink)
        window, limit = rate_window(sink.rate_per_second)
        slot, sent = pace(
            sent=sent,
            now=now,
            not_before=not_before,
            count=count,
            window=window,
            limit=limit,
        )
        if slot - now > within:
            return None
        _store(cursor, sink, sent, slot)
    return slot, slot - now


def settle(sink: Sink, slot: float) -> None:
    """The POST claimed at `slot` has been answered: it reached the receiver by now, so count it from
    now (when that is later), and no later send can come closer to it than the window allows."""
    with transaction.atomic(), connection.cursor() as cursor:
        sent, not_before, now = _locked(cursor, sink)
        if now <= slot or not any(at == slot for at, _ in sent):
            return
        sent = sorted([now, events] if at == slot else [at, events] for at, events in sent)
        _store(cursor, sink, sent, max(now, not_before))


def _locked(cursor, sink: Sink) -> tuple[list[list[float]], float, float]:
    """(the log of sends, the latest slot, now), with the sink's row locked until the transaction ends."""
    cursor.execute(
        "SELECT recent_sends, extract(epoch FROM next_send_at), extract(epoch FROM clock_timestamp())"
        " FROM streams_sink WHERE consumer_id = %s FOR UPDATE",
        [sink.pk],
    )
    sent, not_before, now = cursor.fetchone()
    return json.loads(sent) if isinstance(sent, str) else sent, float(not_before or 0), float(now)


def _store(cursor, sink: Sink, sent: list[list[float]], not_before: float) -> None:
    cursor.execute(
        "UPDATE streams_sink SET recent_sends = %s, next_send_at = to_timestamp(%s) WHERE consumer_id = %s",
        [json.dumps(sent), not_before, sink.pk],
    )


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


def slot_wait(sink: Sink) -> float:
    """Seconds until the latest claimed slot, on the database's clock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT GREATEST(0, extract(epoch FROM next_send_at - clock_timestamp())) FROM streams_sink"
            " WHERE consumer_id = %s",
            [sink.pk],
        )
        return float(cursor.fetchone()[0] or 0)
