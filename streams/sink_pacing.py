"""A webhook sink's rate limit: a sliding window, kept in PostgreSQL.

Every POST (delivered or not) first claims a send slot: the earliest time at which its events, added to
those sent or claimed in the second before, stay within `rate` (`Sink.recent_sends` is that log,
`Sink.next_send_at` the latest slot; both change in one short locked transaction, on the database's
clock). So no 1-second window ever sees more than `rate` events, across runs, workers, resyncs and
operator retries, whatever the mix of full batches and single events. A POST holds at most a second's
worth of events (`batch_limit`). (Below 1 event/s: one event per 1/rate seconds.)
"""

from __future__ import annotations

import json
import math

from django.db import connection, transaction

from streams.models import Sink


def batch_limit(sink: Sink) -> int:
    """Events per POST: the configured batch size, but never more than a second's worth."""
    return max(1, min(sink.batch_size, math.floor(sink.rate_per_second)))


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


def slot_wait(sink: Sink) -> float:
    """Seconds until the latest claimed slot, on the database's clock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT GREATEST(0, extract(epoch FROM next_send_at - clock_timestamp())) FROM streams_sink"
            " WHERE consumer_id = %s",
            [sink.pk],
        )
        return float(cursor.fetchone()[0] or 0)
