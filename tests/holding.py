"""An append left open: a transaction that appends and then waits, in a thread of its own, the way an
application's long transaction holds readers of the global log below its position."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

from streams.services import append_events


@contextmanager
def append_held_open(stream: str, event_type: str = "Happened") -> Iterator[list[int]]:
    """Yields the open append's positions; the transaction commits when the block ends."""
    holding, release = threading.Event(), threading.Event()
    held: list[int] = []

    def holder():
        with transaction.atomic():
            held.extend(append_events(stream=stream, events=[{"type": event_type, "data": {}}]).positions)
            holding.set()
            release.wait(20)
        connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(10), "the append was not made"
        yield held
    finally:
        release.set()
        thread.join(20)
