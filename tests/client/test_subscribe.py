"""Subscriptions through replaydesk-client against a real `replaydesk up` (tests/client/conftest.py): the
low-level fetch, ack and nack with their typed refusals, and `subscribe`, the loop an application runs:
every event in per-stream order, acknowledgements that move the checkpoint, nacks and parking, a lease
kept through a slow handler and one lost, and stopping by an Event or by a real SIGTERM."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from replaydesk_client import (
    Client,
    Conflict,
    Event,
    InvalidInput,
    LeaseLost,
    NewEvent,
    NotFound,
    Unprocessable,
)

from tests.client.conftest import SOURCE

pytestmark = pytest.mark.timeout(240)

SUBSCRIBER_PROCESS = Path(__file__).with_name("subscriber_process.py")


@pytest.fixture
def client(server):
    with Client(server.url, server.token) as client:
        yield client


@pytest.fixture
def category() -> str:
    return f"sub{uuid.uuid4().hex[:10]}"


def subscription_of(client: Client, category: str, **settings) -> str:
    name = f"s_{uuid.uuid4().hex[:12]}"
    client.create_subscription(name, categories=[category], **settings)
    return name


def partition_of(stream: str, partitions: int) -> int:
    """The server's rule (the first 32 bits of the md5 of the stream's name), to check checkpoints."""
    return int(hashlib.md5(stream.encode()).hexdigest()[:8], 16) % partitions


def lines(n: int, **data) -> list[NewEvent]:
    return [NewEvent(type="LineAdded", data={"line": i, **data}) for i in range(1, n + 1)]


def eventually(check: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    """Poll the server until `check` holds: what the subscriber did shows there a moment later."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


class Running:
    """`subscribe` in a thread, as a service runs it next to others, recording what its handler saw.
    `fail(event)` decides whether the handler raises for an event; `gate` holds the handler before the
    event at `held_at` until it is set."""

    def __init__(self, server, name: str, **options):
        self.client = Client(server.url, server.token, transport=options.pop("transport", None))
        self.name = name
        self.seen: list[Event] = []
        self.stop = threading.Event()
        self.fail: Callable[[Event], bool] = lambda event: False
        self.held_at: int | None = None
        self.holding = threading.Event()
        self.gate = threading.Event()
        self.raised: BaseException | None = None
        self.options = {"reader": "tests", "wait": 1, **options}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def handle(self, event: Event) -> None:
        self.seen.append(event)
        if event.position == self.held_at:
            self.holding.set()
            assert self.gate.wait(60)
        if self.fail(event):
            raise RuntimeError(f"cannot handle line {event.data.get('line')}")

    def _run(self) -> None:
        try:
            self.client.subscribe(self.name, self.handle, stop=self.stop, **self.options)
        except BaseException as exc:
            self.raised = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.gate.set()
        self.thread.join(60)
        self.client.close()
        assert not self.thread.is_alive(), "subscribe did not return after stop was set"
        if self.raised is not None and exc_info[0] is None:
            raise self.raised

    def positions_seen(self) -> list[int]:
        return [event.position for event in self.seen]


def caught_up(client: Client, name: str) -> dict | None:
    status = client.subscription(name)
    return status if status["lag_events"] == 0 else None


# --- subscribe


def test_subscribe_hands_every_event_in_stream_order_and_its_acks_move_each_partition_to_the_end(
    server, client, category
):
    name = subscription_of(client, category, partitions=3)
    streams = [f"{category}-{n}" for n in range(4)]
    appended = {stream: client.append(stream, lines(5, stream=stream)) for stream in streams}

    with Running(server, name, max=7) as running:
        status = eventually(lambda: caught_up(client, name), what="the subscription caught up")

    by_stream: dict[str, list[int]] = defaultdict(list)
    for event in running.seen:
        by_stream[event.stream].append(event.sequence)
    assert by_stream == {stream: [1, 2, 3, 4, 5] for stream in streams}
    assert sorted(running.positions_seen()) == sorted(p for r in appended.values() for p in r.positions)
    checkpoints = {p["partition"]: p["checkpoint"] for p in status["partition_status"]}
    for stream, result in appended.items():
        assert checkpoints[partition_of(stream, 3)] >= result.position
    assert status["last_error"] == ""


def test_a_handler_that_raises_gets_its_event_nacked_and_it_comes_again_with_what_followed(
    server, client, category
):
    name = subscription_of(client, category, max_nacks=3)
    result = client.append(f"{category}-1", lines(4))
    flaky = result.positions[1]
    failures = iter([True, True])

    running = Running(server, name)
    running.fail = lambda event: event.position == flaky and next(failures, False)
    with running:
        status = eventually(lambda: caught_up(client, name), what="the subscription caught up")

    p1, p2, p3, p4 = result.positions
    assert running.positions_seen() == [p1, p2, p2, p2, p3, p4]  # p1 handled before the nacks
    assert f"{category}-1@2, position {flaky}): RuntimeError: cannot handle line 2" in status["last_error"]
    assert client.get(f"/api/v1/consumers/{name}/parked")["results"] == []


def test_an_event_whose_handler_keeps_failing_is_parked_at_max_nacks_and_the_others_go_on(
    server, client, category
):
    name = subscription_of(client, category, max_nacks=2)
    result = client.append(f"{category}-1", lines(3))
    poison = result.positions[1]

    running = Running(server, name)
    running.fail = lambda event: event.position == poison
    with running:
        eventually(lambda: caught_up(client, name), what="the subscription caught up")

    assert running.positions_seen().count(poison) == 2
    assert running.positions_seen()[-1] == result.positions[2]
    (parked,) = client.get(f"/api/v1/consumers/{name}/parked")["results"]
    assert (parked["event"]["position"], parked["attempts"]) == (poison, 2)
    assert "RuntimeError: cannot handle line 2" in parked["error"]


def test_setting_stop_during_a_slow_handler_finishes_that_event_acknowledges_it_and_returns(
    server, client, category
):
    name = subscription_of(client, category)
    result = client.append(f"{category}-1", lines(3))
    first = result.positions[0]

    running = Running(server, name)
    running.held_at = first
    with running:
        assert running.holding.wait(60)
        running.stop.set()
        running.gate.set()
        running.thread.join(60)
        assert not running.thread.is_alive()

    assert running.positions_seen() == [first]  # the rest of the batch is left to the next reader
    (partition,) = client.subscription(name)["partition_status"]
    assert partition["checkpoint"] == first


def test_a_handler_that_raises_once_stop_is_set_abandons_its_event_without_a_nack(server, client, category):
    name = subscription_of(client, category)
    result = client.append(f"{category}-1", lines(2))

    running = Running(server, name)
    running.held_at = result.positions[0]
    running.fail = lambda event: running.stop.is_set()  # gives up, as a handler told to stop does
    with running:
        assert running.holding.wait(60)
        running.stop.set()
        running.gate.set()

    status = client.subscription(name)
    (partition,) = status["partition_status"]
    assert running.positions_seen() == [result.positions[0]]
    assert (partition["checkpoint"], partition["nacks"], status["last_error"]) == (0, 0, "")


def test_setting_stop_while_waiting_for_events_returns(server, client, category):
    name = subscription_of(client, category)
    result = client.append(f"{category}-1", lines(1))

    running = Running(server, name, wait=2)
    with running:
        eventually(lambda: running.seen, what="the event was handled")
        running.stop.set()
        running.thread.join(30)

        assert not running.thread.is_alive()
    assert running.positions_seen() == list(result.positions)


def test_a_handler_slower_than_the_lease_keeps_its_partition_from_another_reader(server, client, category):
    name = subscription_of(client, category, lease_seconds=2)
    result = client.append(f"{category}-1", lines(3))

    running = Running(server, name)
    running.held_at = result.positions[0]
    with running:
        assert running.holding.wait(60)
        # Waits for the partition longer than two leases: it gets it only if the lease was not renewed.
        rival = client.fetch(name, "rival", wait=5)
        running.gate.set()
        eventually(lambda: caught_up(client, name), what="the subscription caught up")

    assert rival.events == () and rival.lease is None
    assert running.positions_seen() == list(result.positions)  # each once: the lease was never lost


class AcksLost(httpx.HTTPTransport):
    """A network on which the subscriber's acknowledgements do not get through while `cut` is set."""

    def __init__(self):
        super().__init__()
        self.cut = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.cut.is_set() and request.url.path.endswith("/ack"):
            raise httpx.ConnectError("the network is down", request=request)
        return super().handle_request(request)


def test_a_lost_lease_goes_to_another_reader_and_the_subscriber_fetches_again(server, client, category):
    name = subscription_of(client, category, lease_seconds=2)
    result = client.append(f"{category}-1", lines(2))
    network = AcksLost()
    network.cut.set()

    running = Running(server, name, transport=network)
    running.held_at = result.positions[0]
    with running:
        assert running.holding.wait(60)
        # Its renewals do not arrive: the lease expires and another reader takes the partition.
        rival = client.fetch(name, "rival", wait=10)
        client.ack(name, rival.lease, rival.positions[-1])
        network.cut.clear()
        running.gate.set()
        status = eventually(lambda: caught_up(client, name), what="the rival's ack")
        later = client.append(f"{category}-1", lines(1))
        eventually(lambda: later.position in running.positions_seen(), what="the subscriber went on")

    assert rival.positions == result.positions  # delivered again: at least once
    assert running.positions_seen()[0] == result.positions[0]
    assert status["partition_status"][0]["checkpoint"] >= result.position
    assert running.raised is None


class FetchAnswerLost(httpx.HTTPTransport):
    """A network that loses the answer to the first fetch that delivered events, after the server
    leased them to the reader."""

    def __init__(self):
        super().__init__()
        self.lost: list[dict] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if not self.lost and request.url.path.endswith("/fetch"):
            response.read()
            if response.json()["events"]:
                self.lost.append(response.json())
                raise httpx.ReadError("the connection dropped before the answer arrived", request=request)
        return response


def test_events_of_a_fetch_whose_answer_was_lost_come_again_and_none_is_passed_over(server, client, category):
    name = subscription_of(client, category, lease_seconds=1)
    first = client.append(f"{category}-1", lines(2))
    network = FetchAnswerLost()

    with Running(server, name, transport=network) as running:
        eventually(lambda: running.seen, what="the first events handled")
        later = client.append(f"{category}-1", lines(1))
        eventually(lambda: caught_up(client, name), what="the subscription caught up")

    assert [event["position"] for event in network.lost[0]["events"]] == list(first.positions)
    assert running.positions_seen() == [*first.positions, later.position]


class ServerAway(httpx.HTTPTransport):
    """The server is away for the first `failures` fetches: refused connections, and a proxy in front
    answering 502."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures
        self.refused: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/fetch") and len(self.refused) < self.failures:
            if len(self.refused) % 2:
                self.refused.append("502")
                return httpx.Response(502, text="<html>Bad Gateway</html>", request=request)
            self.refused.append("refused")
            raise httpx.ConnectError("connection refused", request=request)
        return super().handle_request(request)


def test_while_the_server_is_away_subscribe_backs_off_and_goes_on(server, client, category):
    name = subscription_of(client, category)
    result = client.append(f"{category}-1", lines(3))
    network = ServerAway(failures=10)

    with Running(server, name, transport=network, backoff=0.05, max_backoff=0.2) as running:
        eventually(lambda: caught_up(client, name), what="the subscription caught up")

    assert network.refused.count("refused") == 5 and network.refused.count("502") == 5
    assert running.positions_seen() == list(result.positions)
    assert running.raised is None


def test_subscribe_to_an_unknown_subscription_raises_not_found_and_leaves_the_signal_handlers_as_they_were(
    client,
):
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    with pytest.raises(NotFound):
        client.subscribe("no_such_subscription", print, stop=threading.Event())

    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_subscribe_with_a_bad_reader_raises_invalid_input(client, category):
    name = subscription_of(client, category)

    with pytest.raises(InvalidInput) as refused:
        client.subscribe(name, print, reader="not a reader!", stop=threading.Event())

    assert "reader" in refused.value.errors


# --- the low-level calls


def test_fetch_ack_and_nack_move_the_checkpoint_under_a_lease(client, category):
    name = subscription_of(client, category)
    result = client.append(f"{category}-1", lines(3))

    batch = client.fetch(name, "low-level", max=2)
    acked = client.ack(name, batch.lease, batch.positions[0])
    nacked = client.nack(name, batch.lease, batch.positions[1], "the tax service is down")
    again = client.fetch(name, "low-level", max=10)

    assert batch.positions == result.positions[:2]
    assert (batch.partition, batch.checkpoint, batch.delivered_up_to) == (0, 0, result.positions[1])
    assert [event.data["line"] for event in batch.events] == [1, 2]
    assert acked.checkpoint == result.positions[0] and acked.lease_expires_at > batch.lease_expires_at
    assert (nacked.nacks, nacked.parked) == (1, False)
    assert again.lease == batch.lease and again.positions == result.positions[1:]
    assert "the tax service is down" in client.subscription(name)["last_error"]


def test_a_fetch_waits_for_events_longer_than_the_clients_timeout(server, category):
    with Client(server.url, server.token, timeout=1) as client:
        name = subscription_of(client, category)
        batch = client.fetch(name, "patient", wait=2)

    assert batch.events == () and batch.lease is None


def test_an_ack_under_a_lease_another_reader_took_raises_lease_lost(client, category):
    name = subscription_of(client, category, lease_seconds=1)
    client.append(f"{category}-1", lines(1))
    batch = client.fetch(name, "first")

    taken = client.fetch(name, "second", wait=10)  # gets the partition once the first lease expired
    with pytest.raises(LeaseLost) as lost:
        client.ack(name, batch.lease, batch.positions[0])

    assert taken.positions == batch.positions and taken.lease != batch.lease
    assert lost.value.status == 409 and "fetch again" in lost.value.detail
    assert client.subscription(name)["partition_status"][0]["checkpoint"] == 0


def test_bad_fetches_and_acks_are_refused_by_field_and_change_nothing(client, category):
    name = subscription_of(client, category)
    client.append(f"{category}-1", lines(1))

    with pytest.raises(InvalidInput) as bad_max:
        client.fetch(name, "reader", max=0)
    with pytest.raises(InvalidInput) as bad_reader:
        client.fetch(name, "a reader?")
    batch = client.fetch(name, "reader")
    with pytest.raises(Unprocessable) as beyond:
        client.ack(name, batch.lease, batch.positions[0] + 1000)
    with pytest.raises(InvalidInput) as no_reason:
        client.nack(name, batch.lease, batch.positions[0], " ")
    with pytest.raises(NotFound):
        client.fetch("no_such_subscription", "reader")

    assert list(bad_max.value.errors) == ["max"] and list(bad_reader.value.errors) == ["reader"]
    assert beyond.value.errors and list(no_reason.value.errors) == ["reason"]
    (partition,) = client.subscription(name)["partition_status"]
    assert (partition["checkpoint"], partition["nacks"]) == (0, 0)


def test_create_subscription_refuses_a_bad_name_and_a_taken_one_unless_told_it_may_exist(client, category):
    with pytest.raises(InvalidInput) as bad:
        client.create_subscription("Bad Name", categories=[category])
    name = subscription_of(client, category, partitions=2)
    with pytest.raises(Conflict) as taken:
        client.create_subscription(name, categories=[category])
    existing = client.create_subscription(name, categories=[category], exist_ok=True)
    with pytest.raises(Conflict) as a_projection:  # the demo's, a consumer but no subscription
        client.create_subscription("users_directory", exist_ok=True)

    assert list(bad.value.errors) == ["name"]
    assert not isinstance(taken.value, LeaseLost)
    assert "users_directory" in a_projection.value.detail
    assert existing["name"] == name and existing["partitions"] == 2
    assert "Bad Name" not in {s["name"] for s in client.get("/api/v1/subscriptions")["results"]}


# --- a process of its own, stopped by a real signal


def start_subscriber(server, name: str, *, hold: bool) -> subprocess.Popen:
    args = [sys.executable, str(SUBSCRIBER_PROCESS), server.url, name, "--hold" if hold else "--no-hold"]
    return subprocess.Popen(
        args,
        env={"PYTHONPATH": str(SOURCE / "src"), "REPLAYDESK_TOKEN": server.token, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_while_waiting_for_events_stops_a_subscriber_process_with_exit_code_0(
    server, client, category
):
    name = subscription_of(client, category)
    result = client.append(f"{category}-1", lines(1))

    process = start_subscriber(server, name, hold=False)
    try:
        assert process.stdout.readline().split() == ["handled", str(result.position)]
        eventually(lambda: caught_up(client, name), what="the ack")
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    finally:
        process.kill()

    assert code == 0, process.stderr.read()
    assert "SIGTERM" in process.stderr.read()


def test_sigterm_during_a_handler_lets_it_finish_acknowledges_it_and_exits_0(server, client, category):
    name = subscription_of(client, category)
    result = client.append(f"{category}-1", lines(3))

    process = start_subscriber(server, name, hold=True)
    try:
        assert process.stdout.readline().split() == ["handling", str(result.positions[0])]
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        out = process.stdout.read().split("\n")
    finally:
        process.kill()

    assert code == 0, process.stderr.read()
    assert out[0] == f"handled {result.positions[0]}" and "handling" not in " ".join(out)
    (partition,) = client.subscription(name)["partition_status"]
    assert partition["checkpoint"] == result.positions[0]
