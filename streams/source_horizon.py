"""Where a source's own order is final: a follower must never pass over an event that commits later with
a lower position. A source's positions are drawn from a sequence when a row is inserted, so
transactions can commit out of position order, and a rolled-back one leaves a hole for ever.

The rule: events up to the first hole after the copied position are copied at once (a row that is
there is committed; the rows before it are all copied). At a hole, a settle round starts: every
position up to the highest one seen then (`through`) was drawn before that read (the sequence only
grows, CACHE 1), so a transaction that may still commit one of them was already running. Once that
transaction has an id, it is below the source's next transaction id (`xmax`) at a read at least
GRACE_SECONDS later (an id is given at the row's insert, microseconds after the position is drawn);
when a later read's horizon (`xmin`, the oldest transaction still in progress) has passed that xmax,
every such transaction has ended, and the holes up to `through` are final: committed rows are there
to be read, and the rest will never be. Copying then goes on past them.

So a hole costs a wait of GRACE_SECONDS and whatever the source's longest transaction running then
takes; rows without holes are copied as soon as they are read. The same rule serves every kind whose
source is a PostgreSQL table (Message DB, a table you name, the eventsourcing library's).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from streams.source_kinds import Read, SourceEvent

GRACE_SECONDS = 0.2


@dataclass(frozen=True)
class Settle:
    """A source's settle state, as its row keeps it."""

    final_through: int = 0
    through: int | None = None
    seen_at: dt.datetime | None = None
    xmax: int | None = None


def copyable(
    events: Sequence[SourceEvent], *, after: int, final_through: int
) -> tuple[list[SourceEvent], bool]:
    """The events that may be copied now, in order, and whether a hole stopped them."""
    taken: list[SourceEvent] = []
    expected = after + 1
    for event in events:
        if event.position > final_through and event.position != expected:
            return taken, True
        taken.append(event)
        expected = event.position + 1
    return taken, False


def advance(settle: Settle, *, read: Read, blocked: bool, now: dt.datetime) -> Settle:
    """The settle state after a read: a round starts at a hole, takes its horizon once GRACE_SECONDS have
    passed, and ends (moving final_through) when the source's horizon has passed it."""
    if settle.through is None:
        if not blocked:
            return settle
        return Settle(final_through=settle.final_through, through=read.top, seen_at=now)
    if settle.xmax is None:
        if (now - settle.seen_at).total_seconds() >= GRACE_SECONDS:
            return Settle(settle.final_through, settle.through, settle.seen_at, read.snapshot.xmax)
        return settle
    if read.snapshot.xmin >= settle.xmax:
        return Settle(final_through=max(settle.final_through, settle.through))
    return settle
