"""`Client.subscribe`: the loop that reads a subscription for a process, so that each application does
not write its own (and get the lease rules wrong).

One pass: fetch a batch, call the handler for each event in order, then acknowledge the last event
handled. While a batch is handled, a thread of its own (the lease keeper) acknowledges what is handled
so far every third of `lease_seconds`, which renews the lease: a slow handler, or a long batch, keeps
its partition as long as the process lives. A handler that raises gets its event nacked (the events
before it count as handled) and the loop fetches again, which delivers that event again, until the
server parks it at its max_nacks-th nack in a row; one that raises once the loop is stopping abandons
its event instead (what was handled before it is acknowledged).

The server's rule that shapes the rest: a fetch by a reader that holds a partition goes on *after*
what its lease delivered, not from the checkpoint. So this loop never fetches while it holds events it
received and has not settled; after a fetch whose answer may have been lost it goes on under a new
reader id (the lost lease expires, and another fetch gets those events from the checkpoint); and each
call takes a reader id of its own, the given name and a suffix, so that a restarted process never
continues a lease of its previous run.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from replaydesk_client.errors import (
    LeaseLost,
    RateLimited,
    ReplaydeskError,
    ServerError,
    Unavailable,
    Unprocessable,
    Unreachable,
)
from replaydesk_client.models import Batch, Event

if TYPE_CHECKING:
    from replaydesk_client.client import Client

log = logging.getLogger("replaydesk_client.subscribe")

# The longest reason the server keeps for a nack.
MAX_REASON = 2000
# Failures that waiting cures; anything else raised by the server is raised to the caller.
_PASSING = (Unreachable, ServerError, RateLimited, Unavailable)
# Failures of a fetch after which the server may have leased events to this reader without our knowing.
_ANSWER_LOST = (Unreachable, ServerError, Unavailable)


class Subscriber:
    def __init__(
        self,
        client: Client,
        name: str,
        handler: Callable[[Event], Any],
        *,
        reader: str | None,
        max: int,
        wait: float,
        stop: threading.Event | None,
        backoff: float,
        max_backoff: float,
    ):
        self.client = client
        self.name = name
        self.handler = handler
        self.base_reader = reader or f"{socket.gethostname()}:{os.getpid()}"
        self.reader = _suffixed(self.base_reader)
        self.max = max
        self.wait = wait
        self.stop = stop or threading.Event()
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.failures = 0

    def run(self) -> None:
        with _stopped_by_signals(self.stop):
            settings = self._settings()
            if settings is None:
                return
            self.renew_every = settings["lease_seconds"] / 3
            log.info("reading subscription %s as %s", self.name, self.reader)
            while not self.stop.is_set():
                batch = self._fetch()
                if batch is not None and batch.events:
                    self._handle(batch)

    def _settings(self) -> dict[str, Any] | None:
        """The subscription's status (for its lease_seconds), waiting for a server that is not up yet;
        None when stopped first. NotFound and the like are raised: waiting does not cure them."""
        while not self.stop.is_set():
            try:
                return self.client.subscription(self.name)
            except _PASSING as exc:
                self._pause(f"reading subscription {self.name}", exc)
        return None

    def _fetch(self) -> Batch | None:
        try:
            batch = self.client.fetch(self.name, self.reader, max=self.max, wait=self.wait)
        except _PASSING as exc:
            if isinstance(exc, _ANSWER_LOST):
                self.reader = _suffixed(self.base_reader)
            self._pause(f"fetch from {self.name}", exc)
            return None
        self.failures = 0
        if not batch.events and (batch.delivered_up_to or 0) > (batch.checkpoint or 0):
            # The server says this reader holds events it never received: go on under another id, so
            # that the lease expires and they are delivered again rather than passed over.
            log.warning("%s: lease %s holds events this reader did not get", self.name, batch.lease)
            self.reader = _suffixed(self.base_reader)
        return batch

    def _handle(self, batch: Batch) -> None:
        """The batch's events in order, until one fails, the lease is lost or the loop is stopped; then
        what was handled is acknowledged, or the failed event nacked."""
        assert batch.lease is not None and batch.checkpoint is not None
        lease = batch.lease
        handled, failed = self._call_handler(batch)
        if failed is not None and not self.stop.is_set():
            event, exc = failed
            where = f"{event.stream}@{event.sequence} (position {event.position})"
            log.warning("handler failed on %s; nacking it", where, exc_info=exc)
            self._settle(lambda: self.client.nack(self.name, lease, event.position, _reason(exc)))
        elif handled is not None:
            # Also when the handler raised once the loop was stopping: that abandons its event (no fault
            # of the event's, so no nack); it goes to the next reader when the lease expires.
            self._settle(lambda: self.client.ack(self.name, lease, handled))

    def _call_handler(self, batch: Batch) -> tuple[int | None, tuple[Event, Exception] | None]:
        """The position of the last event handled, and the event whose handler raised with what it
        raised, under the lease keeper."""
        handled: int | None = None
        with _LeaseKeeper(self, batch) as keeper:
            for event in batch.events:
                if self.stop.is_set() or keeper.lost is not None:
                    break
                try:
                    self.handler(event)
                except Exception as exc:  # whatever the handler raises is a failure of this event
                    return handled, (event, exc)
                handled = keeper.handled = event.position
        return handled, None

    def _settle(self, send: Callable[[], object]) -> None:
        """Send the ack or nack until it is recorded, the lease is lost, or the loop is stopped: not
        before, because a fetch under a lease whose events are not settled would pass over them."""
        while True:
            try:
                send()
                return
            except LeaseLost as lost:
                # Another reader gets these events from the checkpoint: at least once.
                log.warning("lease lost on %s, fetching again: %s", self.name, lost.detail)
                return
            except Unprocessable as refused:
                # A nack tried again after its answer was lost: the first one was recorded.
                log.info("%s: %s", self.name, refused.detail)
                return
            except _PASSING as exc:
                if self.stop.is_set():
                    return  # the lease expires and what it delivered goes to the next reader
                self._pause(f"acknowledgement to {self.name}", exc)

    def _pause(self, what: str, exc: ReplaydeskError) -> None:
        """Wait before trying again: growing, with full jitter, at least the server's Retry-After; cut
        short by a stop."""
        self.failures += 1
        pause = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (self.failures - 1)))
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            pause = max(pause, retry_after)
        log.warning("%s failed (%s); trying again in %.1f s", what, exc, pause)
        self.stop.wait(pause)


class _LeaseKeeper:
    """Renews the lease while a batch is handled, by acknowledging what is handled so far (at first the
    checkpoint, which renews and changes nothing else), every third of the lease. `lost` is set when
    the server says the lease is gone; the handling loop then stops at the next event."""

    def __init__(self, subscriber: Subscriber, batch: Batch):
        self.subscriber = subscriber
        self.lease = batch.lease
        self.handled: int = batch.checkpoint or 0
        self.lost: LeaseLost | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"replaydesk-lease-{subscriber.name}", daemon=True
        )

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        subscriber = self.subscriber
        while not self._done.wait(subscriber.renew_every):
            try:
                subscriber.client.ack(subscriber.name, self.lease, self.handled)
            except LeaseLost as lost:
                self.lost = lost
                return
            except ReplaydeskError as exc:
                log.warning("renewing the lease on %s failed (%s); trying again", subscriber.name, exc)


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`, in the main thread only (Python runs signal handlers there, and
    nowhere else may install them). The first signal also puts the previous handlers back, so that a
    second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    # None: a handler installed other than from Python, which cannot be put back; the default then.
    previous = {signum: signal.getsignal(signum) or signal.SIG_DFL for signum in signals}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def on_signal(signum: int, frame: object) -> None:
        log.info("%s: stopping after the current event", signal.Signals(signum).name)
        stop.set()
        restore()

    for signum in signals:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        restore()


def _suffixed(reader: str) -> str:
    return f"{reader[:190]}.{uuid.uuid4().hex[:8]}"


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_REASON]
