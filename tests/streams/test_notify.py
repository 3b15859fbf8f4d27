"""Appends wake the log's followers (streams/wakeups.py): a NOTIFY after commit when the log was quiet,
and during a burst the followers keep up by following the head themselves."""

import threading
import time

import psycopg
import pytest
from django.db import connection, transaction

from streams.selectors import head, read_all
from streams.services import append_events
from streams.wakeups import NOTIFY_CHANNEL, NOTIFY_EVERY_SECONDS, Listener

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw_listener():
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True
    ) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield conn


def quiet():
    """Longer than a process's pause between notifications: the next append notifies."""
    time.sleep(NOTIFY_EVERY_SECONDS * 2)


def test_an_append_to_a_quiet_log_notifies_its_last_position(raw_listener):
    quiet()
    result = append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}] * 3)
    notes = list(raw_listener.notifies(timeout=5, stop_after=1))
    assert [note.payload for note in notes] == [str(result.last_position)]
    assert head() == result.last_position


def test_an_append_in_a_transaction_notifies_when_it_commits(raw_listener):
    quiet()
    with transaction.atomic():
        result = append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}])
        assert list(raw_listener.notifies(timeout=0.3)) == []
    notes = list(raw_listener.notifies(timeout=5, stop_after=1))
    assert [note.payload for note in notes] == [str(result.last_position)]


def test_a_rolled_back_append_notifies_nobody(raw_listener):
    quiet()
    with pytest.raises(RuntimeError), transaction.atomic():
        append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}])
        raise RuntimeError("the caller's transaction fails after the append")
    assert list(raw_listener.notifies(timeout=0.5)) == []
    assert head() == 0


def test_a_burst_notifies_a_few_times_and_a_follower_still_sees_its_last_event_at_once(raw_listener):
    quiet()
    listener = Listener()
    seen: list[int] = []
    burst_done = threading.Event()

    def follow():
        # Woken by NOTIFY, or by its own look at the head while the log moves; an hour when idle, so
        # that only those two can bring it the burst's last event.
        position = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            events = read_all(after_position=position, limit=1000)
            seen.extend(event.position for event in events)
            position = seen[-1] if seen else 0
            if burst_done.is_set() and len(seen) == 40:
                return
            listener.wait(idle_seconds=3600)

    follower = threading.Thread(target=follow)
    follower.start()
    appended = []
    started = time.monotonic()
    for n in range(40):
        appended.append(append_events(stream=f"user-{n}", events=[{"type": "UserCreated", "data": {}}]))
        time.sleep(0.005)
    slices = (time.monotonic() - started) / NOTIFY_EVERY_SECONDS  # a busy machine makes the burst longer
    burst_done.set()
    follower.join(25)
    listener.close()
    notifications = list(raw_listener.notifies(timeout=0.2))

    assert seen == [result.last_position for result in appended]
    assert 1 <= len(notifications) <= slices + 1, "a burst sends a notification per slice, not per event"
