"""Read-your-writes: a projection read with `min_position` waits until the projection has applied that
position (bounded by REPLAYDESK_READ_WAIT_SECONDS), and the waiting is capped so it cannot starve the
web tier. A subscription's fetch that waits for events (streams/subscriptions.py) takes the same slots.

A waiting read holds one of the web server's request threads for as long as it waits. Uncapped, a few
dozen waits from one client held every thread, and appends and /healthz queued behind them. So a read
that has to wait first takes a slot, without blocking, from two caps, and is refused with 429 and
Retry-After when either is full:

- per process (REPLAYDESK_READ_WAITS_PER_PROCESS, by default half the web server's threads): the rest
  of a process's threads stay free for everything else;
- per user, across processes (REPLAYDESK_READ_WAITS_PER_USER): one client cannot take every process's
  slots. These slots are entries of a sorted set in Redis scored by when they expire (the longest wait
  and a margin), so a process that dies while waiting leaks nothing for longer than that.

A read whose position is applied already answers at once and takes no slot; one for a position no
event has is refused at once (422).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
import uuid
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Max

from core.problems import Problem, unprocessable
from core.redis import client as redis_client
from streams.models import Event
from streams.projections import Projection, read_checkpoint

POLL_SECONDS = 0.05
RETRY_AFTER_SECONDS = 1
# A user's slot outlives the longest wait by this much before it counts as leaked.
SLOT_MARGIN_SECONDS = 5.0
KEY_PREFIX = "replaydesk:read-waits:"

# Drop the expired slots, then take one if fewer than the cap are held: one atomic step.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def applied(projection: Projection) -> int:
    """The position the projection has applied (0 before it first ran)."""
    found = read_checkpoint(projection)
    return found[0] if found else 0


def wait_until_applied(projection: Projection, position: int, *, user_id: int | str) -> int:
    """The projection's checkpoint once it has applied `position`, or when REPLAYDESK_READ_WAIT_SECONDS
    ran out (then below `position`). A Problem (429) when this process or this user has as many reads
    waiting as the caps allow."""
    reached = applied(projection)
    if reached >= position:
        return reached
    last = Event.objects.aggregate(last=Max("position"))["last"] or 0
    if position > last:
        # An append answers after its commit, so the position it gave is in the log by now: a read that
        # waited for this one would wait for someone else's append, if any ever came.
        raise unprocessable(
            {"min_position": [f"no event has position {position}; the log's last is {last}"]},
        )
    with waiting_slot(user_id):
        deadline = time.monotonic() + settings.REPLAYDESK_READ_WAIT_SECONDS
        while reached < position and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            reached = applied(projection)
    return reached


@contextlib.contextmanager
def waiting_slot(
    user_id: int | str, *, seconds: float | None = None, waiting_for: str = "projections"
) -> Iterator[None]:
    """A slot to wait in for at most `seconds` (REPLAYDESK_READ_WAIT_SECONDS unless given), for
    `waiting_for` (what the 429 names)."""
    seconds = settings.REPLAYDESK_READ_WAIT_SECONDS if seconds is None else seconds
    process = _process_slots(settings.REPLAYDESK_READ_WAITS_PER_PROCESS)
    if not process.acquire(blocking=False):
        raise _too_many(
            f"this server process has {settings.REPLAYDESK_READ_WAITS_PER_PROCESS} reads waiting for "
            f"{waiting_for} already (REPLAYDESK_READ_WAITS_PER_PROCESS)"
        )
    try:
        token = _take_user_slot(user_id, seconds)
        if token is None:
            raise _too_many(
                f"you have {settings.REPLAYDESK_READ_WAITS_PER_USER} reads waiting for {waiting_for} "
                "already (REPLAYDESK_READ_WAITS_PER_USER)"
            )
        try:
            yield
        finally:
            redis_client().zrem(user_key(user_id), token)
    finally:
        process.release()


@functools.cache
def _process_slots(size: int) -> threading.BoundedSemaphore:
    # One semaphore per cap value: the setting is read at each request, so a changed one takes effect.
    return threading.BoundedSemaphore(size)


def user_key(user_id: int | str) -> str:
    return f"{KEY_PREFIX}{user_id}"


def _take_user_slot(user_id: int | str, seconds: float) -> str | None:
    now = time.time()
    hold = seconds + SLOT_MARGIN_SECONDS
    token = uuid.uuid4().hex
    taken = _take_script()(
        keys=[user_key(user_id)],
        args=[now, settings.REPLAYDESK_READ_WAITS_PER_USER, now + hold, token, math.ceil(hold)],
    )
    return token if taken else None


@functools.cache
def _take_script():
    return redis_client().register_script(_TAKE)


def _too_many(reason: str) -> Problem:
    return Problem(
        status_code=429,
        problem_type="too-many-waiting-reads",
        title="Too many waiting reads",
        detail=f"{reason}; retry in {RETRY_AFTER_SECONDS} s, or read without waiting",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
