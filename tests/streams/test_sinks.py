"""HTTP webhook sinks against a real receiver on loopback that fails, hangs, throttles, refuses and
recovers on command: at-least-once delivery applied once, signatures, backoff, the circuit breaker,
the rate limit, parking and the operator's retry, and refused configurations."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from core.locks import lock_key
from streams import consumers, sink_config, sink_pacing, sinks
from streams.consumers import ConsumerError
from streams.models import Consumer, Event, ParkedEvent, Sink
from streams.selectors import head
from streams.services import append_events

SECRET = "test-secret-0123456789abcdef"


class Receiver:
    """A webhook endpoint that records every request, applies each event id once, checks the
    signature, and misbehaves when told to."""

    def __init__(self, secret: str = SECRET):
        self.secret = secret
        self.lock = threading.Lock()
        self.requests: list[dict] = []  # every POST that reached the receiver, in arrival order
        self.applied: dict[str, dict] = {}  # event id -> event, the "effect" (first delivery wins)
        self.duplicates = 0
        self.recover()

    def recover(self) -> None:
        with self.lock:
            self.failing = 0
            self.hanging = 0
            self.hang_seconds = 0.0
            self.throttling = 0
            self.retry_after = "1"
            self.refused_ids: set[str] = set()
            self.refuse_everything = False

    def fail(self, n: int) -> None:
        with self.lock:
            self.failing = n

    def hang(self, n: int, seconds: float) -> None:
        with self.lock:
            self.hanging, self.hang_seconds = n, seconds

    def throttle(self, n: int, retry_after: str = "1") -> None:
        with self.lock:
            self.throttling, self.retry_after = n, retry_after

    def refuse(self, event_id) -> None:
        with self.lock:
            self.refused_ids.add(str(event_id))

    def handle(self, headers, body: bytes) -> tuple[int, dict, bytes, float]:
        """(status, headers, body, seconds to sleep before answering) for one request."""
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(headers.get("X-Replaydesk-Signature", ""), expected)
        payload = json.loads(body)
        ids = [e["id"] for e in payload["events"]]
        with self.lock:
            self.requests.append(
                {"at": time.monotonic(), "ids": ids, "signed": signed, "headers": dict(headers)}
            )
            if not signed:
                return 401, {}, b"bad signature", 0
            if self.failing:
                self.failing -= 1
                return 500, {}, b"receiver is down", 0
            if self.throttling:
                self.throttling -= 1
                return 429, {"Retry-After": self.retry_after}, b"slow down", 0
            if self.refuse_everything or self.refused_ids & set(ids):
                return 400, {}, b"this event is not acceptable", 0
            delay = 0.0
            if self.hanging:
                self.hanging -= 1
                delay = self.hang_seconds
            # Effects happen even when the answer comes too late for the sender: it will send again,
            # and the dedupe on the event id is what keeps the effect single.
            for event in payload["events"]:
                if event["id"] in self.applied:
                    self.duplicates += 1
                else:
                    self.applied[event["id"]] = event
        return 200, {}, b"ok", delay

    @property
    def delivered_ids(self) -> set[str]:
        return {i for r in self.requests for i in r["ids"]}


@pytest.fixture
def receiver():
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 — the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, headers, answer, delay = state.handle(self.headers, body)
            time.sleep(delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _small_backoff(monkeypatch):
    monkeypatch.setattr(consumers, "BACKOFF_CAP_SECONDS", 0.05)


def make_sink(receiver, **settings) -> Sink:
    defaults = {
        "name": "crm_hook",
        "url": receiver.url,
        "secret": SECRET,
        "rate_per_second": 1000,
        "timeout_seconds": 0.5,
        "categories": ["user"],
        "actor": "olivia",
    }
    return sink_config.create_sink(**{**defaults, **settings})


def users(n: int, start: int = 0) -> list[Event]:
    for i in range(start, start + n):
        append_events(stream=f"user-{i}", events=[{"type": "UserCreated", "data": {"n": i}}])
    return list(Event.objects.filter(stream__category="user").order_by("position"))


def drain(name: str = "crm_hook", *, timeout: float = 20.0, until=None) -> list:
    """Run the sink like the task would (again after retry_in) until caught up, or `until()` holds."""
    results = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = sinks.run_sink(name, budget_seconds=2.0)
        results.append(result)
        if until is not None and until():
            return results
        if until is None and result.caught_up:
            return results
        time.sleep(min(result.retry_in or 0.0, 0.5))
    raise AssertionError(f"{name} did not get there in {timeout} s: {results[-3:]}")


def consumer(name: str = "crm_hook") -> Consumer:
    return Consumer.objects.get(name=name)


@pytest.mark.django_db
def test_every_event_is_delivered_signed_in_order_and_the_checkpoint_reaches_the_head(receiver):
    events = users(7)
    append_events(stream="order-1", events=[{"type": "Placed", "data": {}}])
    make_sink(receiver, categories=["user"], batch_size=3)
    drain()
    assert [r["ids"] for r in receiver.requests] == [
        [str(e.event_id) for e in events[i : i + 3]] for i in range(0, 7, 3)
    ]
    assert all(r["signed"] for r in receiver.requests)
    first = receiver.requests[0]
    assert first["headers"]["Idempotency-Key"] == f"{events[0].event_id}..{events[2].event_id}"
    assert first["headers"]["Content-Type"] == "application/json"
    assert abs(int(first["headers"]["X-Replaydesk-Timestamp"]) - time.time()) < 60
    sent = receiver.applied[str(events[0].event_id)]
    assert sent == {
        "id": str(events[0].event_id),
        "stream": "user-0",
        "sequence": 1,
        "position": events[0].position,
        "type": "UserCreated",
        "data": {"n": 0},
        "metadata": events[0].metadata,
        "actor": events[0].actor,
        "recorded_at": events[0].recorded_at.isoformat(),
    }
    assert consumer().position == head()  # the order event and the audit event are passed over
    assert sinks.run_sink("crm_hook").applied == 0


@pytest.mark.django_db
def test_a_batch_stops_at_the_byte_bound_and_the_next_one_goes_on_from_there(receiver, settings):
    settings.REPLAYDESK_READ_MAX_BYTES = 5_000
    for i in range(7):
        append_events(stream=f"user-{i}", events=[{"type": "UserCreated", "data": {"bio": "x" * 2_000}}])
    events = list(Event.objects.filter(stream__category="user").order_by("position"))
    make_sink(receiver, batch_size=100)

    drain()

    # Two events of about 2 KB a batch, not all seven in one: the worker held, and the receiver took, no
    # more than the bound; and no event was passed over where a batch stopped early.
    assert [len(r["ids"]) for r in receiver.requests] == [2, 2, 2, 1]
    assert [i for r in receiver.requests for i in r["ids"]] == [str(e.event_id) for e in events]
    assert consumer().position == head()


@pytest.mark.django_db
def test_a_failing_then_recovering_receiver_gets_every_event_at_least_once_and_applies_each_once(receiver):
    events = users(6)
    make_sink(receiver, batch_size=3, breaker_threshold=100, max_attempts=100)
    receiver.fail(3)
    receiver.hang(1, seconds=1.0)  # longer than the sink's 0.5 s timeout, yet it applies the events
    drain()
    assert receiver.delivered_ids == {str(e.event_id) for e in events}
    assert set(receiver.applied) == {str(e.event_id) for e in events}
    assert receiver.duplicates >= 1  # the hung delivery was applied and sent again: deduped
    assert len(receiver.requests) > 2 + 3 + 1
    assert not ParkedEvent.objects.exists()
    assert consumer().attempts == 0 and consumer().position == head()


@pytest.mark.django_db
def test_a_timeout_is_a_failed_attempt_with_backoff(receiver):
    (event,) = users(1)
    make_sink(receiver)
    receiver.hang(1, seconds=1.5)
    started = time.monotonic()
    result = sinks.run_sink("crm_hook")
    assert time.monotonic() - started < 1.3  # gave up at the timeout, not when the receiver answered
    assert result.retry_in is not None and result.applied == 0
    failed = consumer()
    assert (failed.attempts, failed.failing_position, failed.position) == (1, event.position, 0)
    assert "timed out" in failed.last_error and str(event.event_id) in failed.last_error
    drain()
    assert consumer().position == head()


@pytest.mark.django_db
def test_the_breaker_opens_after_n_failures_stops_calling_and_closes_after_a_good_probe(receiver):
    users(4)
    make_sink(receiver, breaker_threshold=3, breaker_cooldown_seconds=1.0, max_attempts=50)
    receiver.fail(1000)
    drain(until=lambda: Sink.objects.get().breaker_state == Sink.Breaker.OPEN)
    assert len(receiver.requests) == 3
    assert Sink.objects.get().breaker_failures == 3

    result = sinks.run_sink("crm_hook")  # open: no call reaches the receiver
    assert result.retry_in is not None and result.retry_in > 0.5
    assert len(receiver.requests) == 3

    time.sleep(1.05)  # cooled down: one probe, of one event, fails and re-opens the breaker
    sinks.run_sink("crm_hook")
    assert len(receiver.requests) == 4 and len(receiver.requests[-1]["ids"]) == 1
    assert Sink.objects.get().breaker_state == Sink.Breaker.OPEN

    receiver.recover()
    time.sleep(1.05)
    drain()
    sink = Sink.objects.get()
    assert (sink.breaker_state, sink.breaker_failures) == (Sink.Breaker.CLOSED, 0)
    assert len(receiver.applied) == 4
    assert len(receiver.requests[4]["ids"]) == 1  # the probe that closed it
    assert consumer().attempts == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("rate", "batch_size", "events", "span"),
    [(20, 100, 100, 4.0), (10, 3, 21, 2.0)],  # 5 POSTs of 20, 1 s apart; 7 POSTs of 3, 1/3 s apart
)
def test_the_rate_limit_holds_across_runs(receiver, rate, batch_size, events, span):
    users(events)
    make_sink(receiver, rate_per_second=rate, batch_size=batch_size)
    receiver.fail(1)  # failed POSTs reach the receiver too: they count against the rate
    started = time.monotonic()
    runs = drain(timeout=15)
    assert len(runs) > 2  # more than one run: the pacing clock carried over between them
    assert len(receiver.applied) == events
    arrivals = [(r["at"], len(r["ids"])) for r in receiver.requests]
    assert max(n for _, n in arrivals) <= min(rate, batch_size)
    assert arrivals[-1][0] - arrivals[0][0] >= span - 0.1
    for at, _ in arrivals:  # no 1-second window (less a little scheduling slack) holds more than rate
        assert sum(n for t, n in arrivals if at <= t < at + 0.95) <= rate
    assert time.monotonic() - started < span + 4


@pytest.mark.django_db
def test_a_send_that_leaves_late_still_keeps_every_window_within_the_rate(receiver, monkeypatch):
    """A worker descheduled past its slot (a busy machine) sends late; the sends after it are paced
    from when it was sent, not from the slot it had claimed."""
    users(60)
    make_sink(receiver, rate_per_second=20, batch_size=100)
    receiver.fail(1)
    late = [0.4]  # the first POST leaves 0.4 s after its slot
    sleep = time.sleep

    def oversleep(seconds):
        sleep(seconds + (late.pop() if late else 0.0))

    monkeypatch.setattr(sinks.time, "sleep", oversleep)
    drain(timeout=15)
    assert len(receiver.applied) == 60
    arrivals = [(r["at"], len(r["ids"])) for r in receiver.requests]
    for at, _ in arrivals:
        assert sum(n for t, n in arrivals if at <= t < at + 0.95) <= 20


def test_pacing_counts_events_in_the_window_whatever_the_batch_sizes():
    slot, sent = sink_pacing.pace(sent=[], now=10.0, not_before=0, count=1, window=1.0, limit=20)
    assert slot == 10.0
    slot, sent = sink_pacing.pace(sent=sent, now=10.1, not_before=slot, count=20, window=1.0, limit=20)
    assert slot == 11.0  # the single event must leave the window first
    slot, sent = sink_pacing.pace(sent=sent, now=11.0, not_before=slot, count=20, window=1.0, limit=20)
    assert (slot, sent) == (12.0, [[11.0, 20], [12.0, 20]])
    assert sink_pacing.rate_window(0.5) == (2.0, 1) and sink_pacing.rate_window(2.5) == (1.0, 2)


@pytest.mark.django_db
def test_429_waits_for_retry_after_without_counting_an_attempt(receiver):
    users(2)
    make_sink(receiver, breaker_threshold=1)
    receiver.throttle(1, retry_after="1")
    result = sinks.run_sink("crm_hook")
    assert 0.9 <= result.retry_in <= 1.0
    throttled = consumer()
    assert throttled.attempts == 0 and "HTTP 429" in throttled.last_error
    assert Sink.objects.get().breaker_state == Sink.Breaker.CLOSED
    assert sinks.run_sink("crm_hook").retry_in > 0
    assert len(receiver.requests) == 1  # nothing was sent before the time the receiver named
    time.sleep(1.0)
    drain()
    assert len(receiver.applied) == 2


@pytest.mark.django_db
def test_a_refused_event_is_parked_at_once_and_the_rest_go_on(receiver):
    events = users(5)
    make_sink(receiver, max_attempts=8)
    receiver.refuse(events[2].event_id)
    drain()
    parked = ParkedEvent.objects.get()
    assert (parked.event_id, parked.attempts, parked.state) == (events[2].position, 1, "parked")
    assert "HTTP 400" in parked.error
    assert set(receiver.applied) == {str(e.event_id) for i, e in enumerate(events) if i != 2}
    # the batch was refused, then split: its events went one at a time
    assert [len(r["ids"]) for r in receiver.requests] == [5, 1, 1, 1, 1, 1]
    assert consumer().position == head() and consumer().state == Consumer.State.RUNNING


@pytest.mark.django_db
def test_an_event_failing_alone_at_its_last_attempt_is_parked_and_retried_by_an_operator(receiver):
    events = users(3)
    make_sink(receiver, max_attempts=3, breaker_threshold=100)
    receiver.fail(4)  # the batch, then the first event alone twice (parked), then the second once
    drain()
    parked = ParkedEvent.objects.get()
    assert (parked.event_id, parked.attempts) == (events[0].position, 3)
    assert set(receiver.applied) == {str(e.event_id) for e in events[1:]}

    receiver.refuse(events[0].event_id)
    with pytest.raises(ConsumerError, match="failed again.*HTTP 400"):
        consumers.retry_parked(parked_id=parked.pk, actor="olivia")
    parked.refresh_from_db()
    assert (parked.state, parked.attempts) == ("parked", 4)

    receiver.recover()
    consumers.retry_parked(parked_id=parked.pk, actor="olivia")
    parked.refresh_from_db()
    assert (parked.state, parked.resolved_by) == ("retried", "olivia")
    assert str(events[0].event_id) in receiver.applied
    audit = Event.objects.get(type="ParkedEventRetried")
    assert (audit.stream.name, audit.data["position"]) == ("console-consumer.crm_hook", events[0].position)
    with pytest.raises(ConsumerError, match="retried already"):
        consumers.retry_parked(parked_id=parked.pk, actor="olivia")


@pytest.mark.django_db
def test_an_endpoint_that_refuses_everything_stops_the_sink_instead_of_parking_the_log(receiver):
    users(6)
    make_sink(receiver, breaker_threshold=3)
    receiver.refuse_everything = True
    drain(until=lambda: consumer().state == Consumer.State.FAILED)
    assert ParkedEvent.objects.count() == 2
    stopped = consumer()
    assert "3 events refused in a row" in stopped.last_error and "Check the sink's URL" in stopped.last_error
    assert sinks.run_sink("crm_hook").idle

    receiver.recover()
    consumers.resume_consumer(name="crm_hook", actor="olivia")
    drain()
    assert len(receiver.applied) == 4


@pytest.mark.django_db
def test_a_wrong_secret_is_refused_by_the_receiver(receiver):
    users(1)
    make_sink(receiver)
    sink_config.update_sink(name="crm_hook", secret="another-secret-0123456789", actor="olivia")
    drain()
    assert [r["signed"] for r in receiver.requests] == [False]
    assert "HTTP 401" in ParkedEvent.objects.get().error
    updated = Event.objects.get(type="SinkUpdated")
    assert updated.data["changed"] == ["secret"] and "another" not in json.dumps(updated.data)


@pytest.mark.django_db(transaction=True)
def test_one_deliverer_per_sink_and_a_dead_holder_frees_it(receiver):
    users(2)
    make_sink(receiver)
    held, release = threading.Event(), threading.Event()

    def other_worker():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [lock_key("consumer", "crm_hook")])
        held.set()
        release.wait(10)
        connection.close()  # dies without unlocking, like a killed worker

    thread = threading.Thread(target=other_worker)
    thread.start()
    assert held.wait(10)
    try:
        assert sinks.run_sink("crm_hook").idle
        assert receiver.requests == []
    finally:
        release.set()
        thread.join(10)
    assert drain()[-1].caught_up
    assert len(receiver.applied) == 2
    # the run let go of its own lock: another connection can take it
    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_key("consumer", "crm_hook")])
        assert cursor.fetchone()[0]
    other.close()


BAD_CONFIGS = [
    ({"name": "Crm-Hook"}, "name"),
    ({"name": "x" * 41}, "name"),
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"secret": "short"}, "secret"),
    ({"rate_per_second": 0}, "rate_per_second"),
    ({"rate_per_second": -5}, "rate_per_second"),
    ({"categories": ["user-1"]}, "categories"),
    ({"types": ["1Bad"]}, "types"),
    ({"batch_size": 0}, "batch_size"),
    ({"timeout_seconds": 0}, "timeout_seconds"),
    ({"max_attempts": 0}, "max_attempts"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("config", "field"), BAD_CONFIGS)
def test_a_bad_configuration_is_refused_clearly_and_writes_nothing(receiver, config, field):
    with pytest.raises(sink_config.SinkConfigError) as refused:
        make_sink(receiver, **config)
    assert field in refused.value.errors and str(refused.value).startswith(field)
    assert not Consumer.objects.exists() and not Sink.objects.exists() and not Event.objects.exists()


@pytest.mark.django_db
def test_a_taken_name_and_a_bad_update_are_refused_and_change_nothing(receiver):
    make_sink(receiver)
    with pytest.raises(sink_config.SinkConfigError, match="exists already"):
        make_sink(receiver)
    with pytest.raises(sink_config.SinkConfigError, match="rate_per_second"):
        sink_config.update_sink(name="crm_hook", rate_per_second=0, actor="olivia")
    assert Sink.objects.get().rate_per_second == 1000
    assert list(Event.objects.values_list("type", flat=True)) == ["SinkCreated"]
    created = Event.objects.get()
    assert created.actor == "olivia" and SECRET not in json.dumps(created.data)


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_cli_adds_and_lists_sinks(receiver):
    printed = run(
        "sink", "add", "crm_hook", "--url", receiver.url, "--secret", SECRET,
        "--category", "user", "--category", "group", "--type", "UserCreated", "--rate", "5",
    )  # fmt: skip
    assert "crm_hook" in printed
    sink = Sink.objects.get()
    assert (sink.categories, sink.types, sink.rate_per_second) == (["user", "group"], ["UserCreated"], 5)
    listed = run("sink", "list")
    assert "crm_hook" in listed and receiver.url in listed and SECRET not in listed
    with pytest.raises(CommandError, match="rate_per_second"):
        run("sink", "add", "other", "--url", receiver.url, "--secret", SECRET, "--rate", "0")
    assert Sink.objects.count() == 1
