"""A long append transaction holds a position open while live consumers run on a real worker.

An append holds an append slot to COMMIT, and readers of the global log stop below the lowest position
an open slot may still commit (streams/services.py). Here one appends an event and then sleeps before
committing, while three more appends commit behind it and a projection and a webhook sink are run again
and again: both must wait at the last position before the open one (the later events are committed but
must not be read first, or the open one would be skipped), then go on when it commits, or go past its
hole when it rolls back, with every event in effect exactly once.
"""

import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from streams.consumers import ensure_projection
from streams.models import Consumer, Event
from streams.projections import get_projection
from streams.selectors import head
from streams.services import append_events
from streams.sink_config import create_sink
from streams.tasks import enqueue_consumer
from tests.chaos.helpers import (
    CHAOS,
    LIVE,
    SECRET,
    assert_live_equals_the_log_exactly_once,
    chaos_receiver,
)
from tests.recovery.crash_helpers import History, checkpoint_of

SINK = "chaos_live_hook"
HOLD_SECONDS = 2.0

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]


class RolledBack(Exception):
    pass


class Holder(threading.Thread):
    """Appends one event in a transaction, says which position it took, and commits (or rolls back)
    only when released."""

    def __init__(self, *, commit: bool):
        super().__init__(daemon=True)
        self.commit = commit
        self.holding = threading.Event()
        self.release = threading.Event()
        self.position = None
        self.event_id = str(uuid.uuid4())

    def run(self) -> None:
        event = {"id": self.event_id, "type": "UserNameSet", "data": {"user_id": "1", "name": "Held Open"}}
        try:
            with transaction.atomic():
                self.position = append_events(stream="user-1", events=[event]).last_position
                self.holding.set()
                self.release.wait(30)
                if not self.commit:
                    raise RolledBack
        except RolledBack:
            pass
        finally:
            connection.close()


class Later(threading.Thread):
    """An append after the open one, to another stream."""

    def __init__(self, n: int):
        super().__init__(daemon=True)
        self.n, self.positions = n, []

    def run(self) -> None:
        try:
            event = {
                "type": "PermissionGranted",
                "data": {"user_id": "2", "resource": f"r{self.n}", "permission": "read"},
            }
            self.positions = append_events(stream="user-2", events=[event]).positions
        finally:
            connection.close()


def sink_position() -> int:
    return Consumer.objects.values_list("position", flat=True).get(name=SINK) or 0


def poke_until(predicate, timeout: float) -> None:
    """Queue runs of both consumers, as beat's tick and the dispatcher do, until `predicate()` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the consumers did not get there in time"
        enqueue_consumer(CHAOS)
        enqueue_consumer(SINK)
        time.sleep(0.1)


def followed_up_to(position: int) -> set[str]:
    events = Event.objects.filter(stream__category__in=["user", "group"], position__lte=position)
    return {str(i) for i in events.values_list("event_id", flat=True)}


def caught_up() -> bool:
    return checkpoint_of(LIVE) == head() and sink_position() == head()


@pytest.fixture
def live_receiver():
    running = chaos_receiver()
    yield running
    running.stop()


@pytest.mark.parametrize("commit", [True, False], ids=["commits", "rolls-back"])
def test_consumers_wait_at_an_open_position_and_go_on_when_it_ends(chaos_workers, live_receiver, commit):
    History(seed=41).add(300)
    create_sink(
        name=SINK,
        url=live_receiver.url,
        secret=SECRET,
        rate_per_second=5000,
        categories=["user", "group"],
        actor="olivia",
    )
    ensure_projection(get_projection(CHAOS))
    chaos_workers.worker(0)
    poke_until(caught_up, timeout=30)
    before = head()

    holder = Holder(commit=commit)
    holder.start()
    assert holder.holding.wait(10)
    later = [Later(n) for n in range(3)]
    for thread in later:
        thread.start()
    # The consumers run over and over while the position is open.
    held_until = time.monotonic() + HOLD_SECONDS
    poke_until(lambda: time.monotonic() > held_until, timeout=HOLD_SECONDS + 5)
    waited = {"projection": checkpoint_of(LIVE), "sink": sink_position()}
    received_while_open = set(live_receiver.positions)
    for thread in later:
        thread.join(10)
    committed_behind = Event.objects.filter(position__gt=before + 1).count()
    holder.release.set()
    holder.join(10)
    for thread in later:
        thread.join(10)
    poke_until(caught_up, timeout=30)

    assert holder.position == before + 1, "the open transaction held the next position"
    assert waited == {"projection": before, "sink": before}, (
        "every consumer waited at the last position before the open one"
    )
    assert received_while_open == followed_up_to(before), "and the receiver had exactly what came before"
    assert committed_behind == 3, "the appends behind it did not wait for it: they were committed"
    after = sorted(p for thread in later for p in thread.positions)
    assert len(after) == 3 and after[0] > holder.position, after
    held_recorded = Event.objects.filter(event_id=holder.event_id).exists()
    assert held_recorded == commit
    if not commit:
        assert not Event.objects.filter(position=holder.position).exists(), "a hole where it rolled back"
    # Every consumer went on past the open position, and nothing is lost or doubled.
    assert_live_equals_the_log_exactly_once()
    followed = {
        str(i): p
        for i, p in Event.objects.filter(stream__category__in=["user", "group"]).values_list(
            "event_id", "position"
        )
    }
    assert live_receiver.positions == followed, "the receiver has every event, and only those"
    assert set(live_receiver.effects.values()) == {1}
    arrival = list(live_receiver.positions.values())
    assert arrival == sorted(arrival), "delivered in position order"
    assert (holder.event_id in live_receiver.positions) == commit
