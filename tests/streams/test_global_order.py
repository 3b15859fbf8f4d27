"""No reader ever skips a committed event (docs/architecture.md, The store's guarantees), under real
concurrency."""

import importlib
import multiprocessing
import queue
import threading
import time
import uuid
from collections import defaultdict

import psycopg
import pytest
from django.db import connection, transaction

from streams.selectors import head, read_all
from streams.services import append_events
from tests.holding import append_held_open
from tests.streams import global_order_children as children
from tests.streams.test_projection_crashes import this_database_url

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 8
READERS = 3


def one(type_="Happened"):
    return [{"id": str(uuid.uuid4()), "type": type_, "data": {}}]


def test_a_reader_tailing_the_log_waits_at_an_open_transaction():
    before = append_events(stream="order-0", events=one()).last_position
    finished: list[int] = []

    def later(n):
        append_events(stream=f"order-{n}", events=one())
        finished.append(n)
        connection.close()

    with append_held_open("order-1") as held:
        threads = [threading.Thread(target=later, args=(n,)) for n in (2, 3, 4)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)

        # The later writers do not wait for it: they commit. But while position `held` is open, a
        # reader sees nothing past the last committed position before it.
        for thread in threads:
            thread.join(10)
        assert sorted(finished) == [2, 3, 4]
        assert [e.position for e in read_all(after_position=0)] == [before]
        assert head() == before

    positions = [e.position for e in read_all(after_position=before)]
    assert len(positions) == 4 and positions == sorted(positions)
    assert positions[0] == held[0]


def test_a_transaction_that_appends_twice_holds_readers_below_its_first_position():
    before = append_events(stream="order-0", events=one()).last_position
    first_done, second_done = threading.Event(), threading.Event()
    go_on, finish = threading.Event(), threading.Event()
    held: list[int] = []

    def holder():
        with transaction.atomic():
            held.extend(append_events(stream="order-1", events=one()).positions)
            first_done.set()
            go_on.wait(20)
            held.extend(append_events(stream="order-2", events=one()).positions)
            second_done.set()
            finish.wait(20)
        connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert first_done.wait(10)
    # Another append commits between the open transaction's two appends.
    between = append_events(stream="order-3", events=one()).last_position
    go_on.set()
    assert second_done.wait(10)
    later = append_events(stream="order-4", events=one()).last_position

    # The second append keeps the slot and the floor of the first: readers stay below both.
    assert held[0] < between < held[1] < later
    assert head() == before
    assert [e.position for e in read_all(after_position=0)] == [before]

    finish.set()
    thread.join(20)
    assert [e.position for e in read_all(after_position=before)] == [held[0], between, held[1], later]


def test_appends_beyond_the_number_of_slots_wait_for_one_and_then_commit():
    slots = importlib.import_module("streams.migrations.0006_append_slots")
    before = append_events(stream="order-0", events=one()).last_position
    finished: list[int] = []
    params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
    with psycopg.connect(**params) as occupier:
        # Every slot taken, as by SLOTS appends in flight.
        occupier.execute(
            "SELECT pg_advisory_xact_lock(%s, k) FROM generate_series(0, %s) AS k",
            [slots.SLOT_LOCK_CLASS, slots.SLOTS - 1],
        )

        def late():
            finished.append(append_events(stream="order-1", events=one()).last_position)
            connection.close()

        thread = threading.Thread(target=late)
        thread.start()
        thread.join(1.0)
        assert thread.is_alive() and finished == [], "the append waits for a slot"
        occupier.rollback()
    thread.join(10)
    assert finished and finished[0] > before
    assert [e.position for e in read_all(after_position=before)] == finished


def _result(out):
    """A child's result; when none comes, say which sessions were waiting and on whom, not just Empty."""
    try:
        return out.get(timeout=120)
    except queue.Empty:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid), left(query, 120),
                       now() - xact_start
                  FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
                """
            )
            sessions = cursor.fetchall()
        raise AssertionError(f"a child gave no result in 120 s; sessions: {sessions}") from None


def test_concurrent_writers_with_rollbacks_are_seen_by_every_tailing_reader_exactly_once_in_order():
    context = multiprocessing.get_context("spawn")  # see tests/streams/global_order_children.py
    out = context.Queue()
    writers_done = context.Event()
    database = this_database_url()

    def child(role: str, seed: int):
        return context.Process(target=children.run, args=(database, role, seed, writers_done, out))

    readers = [child("reader", 100 + n) for n in range(READERS)]
    writers = [child("writer", n) for n in range(WRITERS)]
    for process in readers + writers:
        process.start()
    results = [_result(out) for _ in range(WRITERS)]
    assert not [message for kind, message in results if kind == "error"]
    writers_done.set()
    results += [_result(out) for _ in range(READERS)]
    assert not [message for kind, message in results if kind == "error"]
    for process in readers + writers:
        process.join(30)
        assert process.exitcode == 0

    committed = {event_id for kind, ids in results if kind == "writer" for event_id in ids}
    assert len(committed) > WRITERS * children.ROUNDS // 2  # most rounds commit, some roll back
    seen_by_readers = [seen for kind, seen in results if kind == "reader"]
    assert len(seen_by_readers) == READERS
    for seen in seen_by_readers:
        ids = [event_id for _, event_id, _, _ in seen]
        assert len(ids) == len(set(ids)), "a reader saw an event twice"
        assert set(ids) == committed, "a reader missed a committed event or saw a rolled-back one"
        positions = [position for position, _, _, _ in seen]
        assert positions == sorted(positions)
        by_stream: dict[str, list[int]] = defaultdict(list)
        for _, _, stream, sequence in seen:
            by_stream[stream].append(sequence)
        for sequences in by_stream.values():
            assert sequences == list(range(1, len(sequences) + 1)), (
                "per-stream order differs from position order"
            )
