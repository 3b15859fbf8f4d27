"""Readers of a subscription against real PostgreSQL: a subscriber killed with kill -9 mid-batch loses
nothing (its lease expires and another reader goes on), readers racing for partitions never share one,
every event is delivered at least once and acknowledged once, and per-stream order holds."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import defaultdict

import pytest
from django.db import close_old_connections, connection

from core.redis import client as redis_client
from streams import read_waits, subscriptions, wakeups
from streams.models import Event, SubscriptionPartition
from streams.services import append_events
from tests.streams import subscription_children as children
from tests.streams.test_projection_crashes import this_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

STREAMS = 12
ROUNDS = 8


def _append_interleaved() -> dict[int, tuple[str, int]]:
    """ROUNDS events in each of STREAMS streams, appended round by round: streams interleave in the log."""
    for round_ in range(ROUNDS):
        for n in range(STREAMS):
            append_events(stream=f"invoice-{n}", events=[{"type": "Issued", "data": {"round": round_}}])
    return {
        position: (stream, sequence)
        for position, stream, sequence in Event.objects.filter(stream__category="invoice").values_list(
            "position", "stream__name", "sequence"
        )
    }


def _caught_up(subscription, appended: dict[int, tuple[str, int]]) -> bool:
    last = defaultdict(int)
    for position, (stream, _) in appended.items():
        number = subscriptions.partition_of(stream, subscription.partitions)
        last[number] = max(last[number], position)
    checkpoints = dict(subscription.partition_rows.values_list("number", "checkpoint"))
    return all(checkpoints[number] >= position for number, position in last.items())


def _assert_in_stream_order_within_each_lease(handled: list[tuple], partitions: int) -> None:
    """Under one lease a reader gets each stream's events in sequence order, none skipped, all from the
    lease's partition, which is the stream's."""
    by_lease: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for _, lease, partition, _, stream, sequence in handled:
        assert subscriptions.partition_of(stream, partitions) == partition
        by_lease[lease][stream].append(sequence)
    for streams in by_lease.values():
        for sequences in streams.values():
            assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), sequences


def test_a_subscriber_killed_mid_batch_loses_nothing_and_another_reader_takes_its_partition():
    subscription = subscriptions.create_subscription(
        name="billing", categories=["invoice"], partitions=3, lease_seconds=2, actor="tests"
    )
    appended = _append_interleaved()
    context = multiprocessing.get_context("spawn")  # see tests/streams/global_order_children.py
    # The victim gets a queue of its own: killed, it may still hold its queue's write lock.
    victims_out, out, stop = context.Queue(), context.Queue(), context.Event()
    database = this_database_url()
    messages: list[tuple] = []

    def take(timeout: float, source=out) -> tuple | None:
        try:
            message = source.get(timeout=timeout)
        except queue.Empty:
            return None
        assert message[0] != "error", message
        messages.append(message)
        return message

    victim = context.Process(
        target=children.subscriber, args=(database, "billing", "victim", victims_out, stop, 3)
    )
    victim.start()
    while (message := take(60, victims_out)) != ("hanging", "victim"):
        assert message is not None, "the victim never got a batch"
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(30)
    assert victim.exitcode == -signal.SIGKILL

    readers = [
        context.Process(target=children.subscriber, args=(database, "billing", name, out, stop))
        for name in ("reader-a", "reader-b")
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 180
    while not _caught_up(subscription, appended):
        assert time.monotonic() < deadline, "the readers never caught up"
        take(0.5)
    stop.set()
    # A child exits only once what it put on the queue is taken: read until they are gone.
    while any(reader.is_alive() for reader in readers):
        assert time.monotonic() < deadline + 30, "a reader did not stop"
        take(0.5)
    while take(0.5) is not None:
        pass
    assert [reader.exitcode for reader in readers] == [0, 0]

    handled = [message[1:] for message in messages if message[0] == "handled"]
    victims = {position for reader, _, _, position, _, _ in handled if reader == "victim"}
    survivors = {position for reader, _, _, position, _, _ in handled if reader != "victim"}
    acked = [position for message in messages if message[0] == "acked" for position in message[2]]
    assert len(victims) == 3
    assert survivors == set(appended), "every event is handled by a living reader, the victim's again"
    assert sorted(acked) == sorted(appended), "every event is acknowledged, and once"
    assert not [message for message in messages if message[0] == "acked" and message[1] == "victim"]
    _assert_in_stream_order_within_each_lease(handled, subscription.partitions)


def _racing_readers(subscription, count: int, rounds_until, deliveries: list, errors: list) -> None:
    barrier = threading.Barrier(count)

    def read(n: int) -> None:
        try:
            barrier.wait()
            while not rounds_until():
                batch = subscriptions.fetch(
                    subscription=subscription, reader=f"r{n}", max_events=7, wait_seconds=0, user_id=n
                )
                if batch.events:
                    deliveries.append((n, str(batch.lease), batch.partition, list(batch.events)))
                    subscriptions.ack(
                        subscription=subscription, lease=batch.lease, position=batch.delivered_up_to
                    )
        except BaseException as exc:  # noqa: BLE001 — reported by the test
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=read, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
        assert not thread.is_alive()


def test_readers_racing_for_partitions_never_hold_one_at_once_and_get_each_event_once():
    # Leases that never expire here: an event delivered twice could only mean a partition held twice.
    subscription = subscriptions.create_subscription(
        name="billing", categories=["invoice"], partitions=3, lease_seconds=600, actor="tests"
    )
    appended = _append_interleaved()
    deliveries: list[tuple] = []
    errors: list[BaseException] = []

    _racing_readers(subscription, 8, lambda: _caught_up(subscription, appended), deliveries, errors)

    assert not errors, errors
    delivered = [event.position for _, _, _, events in deliveries for event in events]
    assert sorted(delivered) == sorted(appended), "each event delivered once, none missed"
    holders: dict[int, set[str]] = defaultdict(set)
    for n, lease, partition, _ in deliveries:
        holders[partition].add(f"r{n}:{lease}")
    assert all(len(held) == 1 for held in holders.values()), holders
    handled = [
        (f"r{n}", lease, partition, e.position, e.stream.name, e.sequence)
        for n, lease, partition, events in deliveries
        for e in events
    ]
    _assert_in_stream_order_within_each_lease(handled, subscription.partitions)
    assert set(SubscriptionPartition.objects.values_list("checkpoint", "delivered_up_to")) == {
        (cp, cp) for cp in SubscriptionPartition.objects.values_list("checkpoint", flat=True)
    }


def test_a_waiting_fetch_answers_with_the_event_appended_while_it_waits():
    subscription = subscriptions.create_subscription(name="billing", categories=["invoice"], actor="tests")
    slots = read_waits.user_key("waiter")
    redis_client().delete(slots)
    batches: list[subscriptions.Batch] = []

    def wait() -> None:
        try:
            batches.append(
                subscriptions.fetch(
                    subscription=subscription, reader="r", max_events=10, wait_seconds=30, user_id="waiter"
                )
            )
        finally:
            connection.close()

    waiter = threading.Thread(target=wait)
    waiter.start()
    deadline = time.monotonic() + 30
    while not redis_client().zcard(slots):  # it found nothing and is waiting
        assert time.monotonic() < deadline and waiter.is_alive()
        time.sleep(0.01)
    [position] = append_events(stream="invoice-1", events=[{"type": "Issued", "data": {}}]).positions
    waiter.join(60)

    assert [event.position for event in batches[0].events] == [position]
    assert redis_client().zcard(slots) == 0, "its waiting slot is given back"


def test_a_waiting_fetch_looks_at_the_log_when_events_are_appended_not_every_moment(monkeypatch):
    subscription = subscriptions.create_subscription(name="billing", categories=["invoice"], actor="tests")
    looks: list[float] = []
    deliver = subscriptions._deliver

    def counted(*args, **kwargs):
        looks.append(time.monotonic())
        return deliver(*args, **kwargs)

    monkeypatch.setattr(subscriptions, "_deliver", counted)
    redis_client().delete(read_waits.user_key("waiter"))

    quiet = subscriptions.fetch(
        subscription=subscription, reader="r", max_events=10, wait_seconds=3, user_id="waiter"
    )

    assert quiet.events == ()
    # Once at first, then once a LOOK_AGAIN_SECONDS at most while nothing is appended (polling every
    # 100 ms looked 30 times).
    assert 2 <= len(looks) <= 3 / wakeups.LOOK_AGAIN_SECONDS + 2
    # Appends elsewhere wake it: the event appended while it waits is in its batch.
    looks.clear()

    def append_elsewhere() -> None:
        try:
            append_events(stream="invoice-1", events=[{"type": "Issued", "data": {}}])
        finally:
            connection.close()

    timer = threading.Timer(0.5, append_elsewhere)
    timer.start()
    woken = subscriptions.fetch(
        subscription=subscription, reader="r", max_events=10, wait_seconds=30, user_id="waiter"
    )
    timer.join()
    assert [event.stream.name for event in woken.events] == ["invoice-1"]
    assert len(looks) <= 4
