"""The projection runner: batches, checkpoints, failures (retry, stop, park), pause and resume."""

import json
import threading

import pytest
from django.db import connection, transaction

from core.locks import lock_key
from demo.services import load_demo
from streams import consumers
from streams.consumers import ConsumerError, run_projection
from streams.models import Consumer, Event, ParkedEvent, Stream
from streams.projections import Projection, add, remove
from streams.selectors import head
from streams.services import append_events
from tests.streams.projection_helpers import (
    checkpoint,
    fold_access,
    fold_users,
    projected_access,
    projected_users,
)


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(consumers, "BACKOFF_CAP_SECONDS", 0.0)


class Flaky(Projection, register=False):
    """Records event positions; fails on events whose data says so, until told otherwise."""

    name = "test_flaky"
    categories = ("order",)
    tables = ("CREATE TABLE applied (position bigint PRIMARY KEY)",)
    max_attempts = 3
    failing = True

    def apply(self, cursor, events):
        if Flaky.failing and any(e.data.get("poison") for e in events):
            raise ValueError("cannot apply a poisoned order")
        cursor.execute("INSERT INTO applied SELECT unnest(%s::bigint[])", [[e.position for e in events]])


class ParkingFlaky(Flaky, register=False):
    name = "test_parking"
    on_failure = "park"


class SetFlaky(Flaky, register=False):
    """Flaky in set-based SQL: it reads the batch relation and never sees Event objects."""

    name = "test_set_flaky"
    apply = Projection.apply

    def apply_rows(self, cursor, rows):
        cursor.execute(f"SELECT count(*) FROM {rows} WHERE data ? 'poison'")
        if Flaky.failing and cursor.fetchone()[0]:
            raise ValueError("cannot apply a poisoned order")
        cursor.execute(f"INSERT INTO applied SELECT position FROM {rows}")


@pytest.fixture
def flaky():
    Flaky.failing = True
    for cls in (Flaky, ParkingFlaky, SetFlaky):
        add(cls)
    yield Flaky
    for cls in (Flaky, ParkingFlaky, SetFlaky):
        remove(cls.name)


def applied(schema):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT position FROM {schema}.applied ORDER BY position")
        return [row[0] for row in cursor.fetchall()]


def orders(*data):
    return [
        append_events(stream=f"order-{n}", events=[{"type": "Placed", "data": d}]).last_position
        for n, d in enumerate(data)
    ]


@pytest.mark.django_db
def test_the_demo_projections_equal_a_fold_of_the_log_and_reach_the_head():
    load_demo(users=60)
    for name in ("users_directory", "access"):
        result = run_projection(name, budget_seconds=60)
        assert result.caught_up and result.applied > 0
    assert projected_users() == fold_users()
    assert projected_access() == fold_access()
    assert checkpoint("proj_users_directory") == checkpoint("proj_access") == head()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["test_flaky", "test_set_flaky"])
def test_small_batches_and_a_second_run_apply_each_event_once(flaky, monkeypatch, name):
    monkeypatch.setattr(Flaky, "batch_size", 2)
    positions = orders({}, {}, {}, {}, {})
    assert run_projection(name).applied == 5
    assert run_projection(name).applied == 0
    assert applied(f"proj_{name}") == positions


class BatchColumns(Projection, register=False):
    """Keeps every column of the batch relation as it reads it, and the plan of a read without `stream`."""

    name = "test_batch_columns"
    categories = ("order",)
    tables = (
        """CREATE TABLE seen (position bigint PRIMARY KEY, stream_id bigint, stream text, sequence bigint,
                              event_id uuid, type text, data jsonb, metadata jsonb, actor text,
                              recorded_at timestamptz)""",
    )
    apply = Projection.apply
    plans: list[str] = []

    def apply_rows(self, cursor, rows):
        cursor.execute(
            f"INSERT INTO seen SELECT position, stream_id, stream, sequence, event_id, type, data, metadata,"
            f" actor, recorded_at FROM {rows}"
        )
        cursor.execute(f"EXPLAIN SELECT position, type, data FROM {rows}")
        BatchColumns.plans.append("\n".join(row[0] for row in cursor.fetchall()))


@pytest.mark.django_db
def test_the_batch_relation_holds_each_event_as_the_log_does_and_names_streams_only_when_read():
    add(BatchColumns)
    try:
        append_events(stream="order-1", events=[{"type": "Placed", "data": {"n": 1}}] * 2)
        append_events(stream="user-1", events=[{"type": "Ignored", "data": {}}])
        append_events(
            stream="order-22",
            events=[{"type": "Paid", "data": {"n": 2}, "metadata": {"actor": "shop"}}],
        )
        assert run_projection("test_batch_columns").applied == 3
    finally:
        remove("test_batch_columns")

    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM proj_test_batch_columns.seen ORDER BY position")
        # Django's cursor leaves jsonb as its text.
        seen = [(*row[:6], json.loads(row[6]), json.loads(row[7]), *row[8:]) for row in cursor.fetchall()]
    expected = [
        (
            e.position,
            e.stream_id,
            e.stream.name,
            e.sequence,
            e.event_id,
            e.type,
            e.data,
            e.metadata,
            e.actor,
            e.recorded_at,
        )
        for e in Event.objects.filter(category="order").select_related("stream").order_by("position")
    ]
    assert seen == expected
    # A statement that does not read `stream` does not look the streams up at all.
    assert BatchColumns.plans and all("streams_stream" not in plan for plan in BatchColumns.plans)


@pytest.mark.django_db
def test_each_streams_applied_sequence_is_kept_with_the_checkpoint(flaky):
    append_events(stream="order-1", events=[{"type": "Placed", "data": {}}] * 3)
    append_events(stream="user-1", events=[{"type": "Ignored", "data": {}}])
    run_projection("test_flaky")
    with connection.cursor() as cursor:
        cursor.execute("SELECT stream_id, sequence FROM proj_test_flaky.stream_checkpoint")
        assert cursor.fetchall() == [(Stream.objects.get(name="order-1").id, 3)]
    assert checkpoint("proj_test_flaky") == head()  # the event it does not follow is passed too


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["test_flaky", "test_set_flaky"])
def test_a_failing_event_is_retried_then_the_projection_stops_after_its_last_attempt(flaky, no_backoff, name):
    good, poison, after = orders({}, {"poison": True}, {})
    for attempt in (1, 2):
        result = run_projection(name)
        assert result.retry_in is not None
        consumer = Consumer.objects.get(name=name)
        assert (consumer.attempts, consumer.failing_position) == (attempt, poison)
    assert applied(f"proj_{name}") == [good]  # the events before the poisoned one went through
    run_projection(name)
    consumer = Consumer.objects.get(name=name)
    assert consumer.state == Consumer.State.FAILED
    assert "cannot apply a poisoned order" in consumer.last_error and str(poison) in consumer.last_error
    assert checkpoint(f"proj_{name}") == good
    assert run_projection(name).applied == 0  # failed: nothing runs until an operator acts

    Flaky.failing = False
    consumers.resume_consumer(name=name, actor="olivia")
    run_projection(name)
    assert applied(f"proj_{name}") == [good, poison, after]
    assert Consumer.objects.get(name=name).attempts == 0


@pytest.mark.django_db
def test_a_retry_waits_for_its_backoff(flaky):
    orders({"poison": True})
    first = run_projection("test_flaky")
    assert first.retry_in is not None and 0 <= first.retry_in <= consumers.BACKOFF_BASE_SECONDS * 2
    Consumer.objects.filter(name="test_flaky").update(retry_at="2999-01-01T00:00:00Z")
    assert run_projection("test_flaky").retry_in > 0
    assert Consumer.objects.get(name="test_flaky").attempts == 1  # waiting is not an attempt


def test_backoff_is_full_jitter_under_a_cap():
    waits = [consumers.backoff(attempt) for attempt in range(1, 12) for _ in range(20)]
    assert all(0 <= wait <= consumers.BACKOFF_CAP_SECONDS for wait in waits)
    assert max(consumers.backoff(2) for _ in range(200)) <= 4
    assert len({round(wait, 6) for wait in waits}) > 100


@pytest.mark.django_db
def test_a_parking_projection_sets_the_event_aside_and_goes_on(flaky, no_backoff):
    good, poison, after = orders({}, {"poison": True}, {})
    for _ in range(ParkingFlaky.max_attempts):
        run_projection("test_parking")
    run_projection("test_parking")
    assert applied("proj_test_parking") == [good, after]
    parked = ParkedEvent.objects.get()
    assert (parked.event_id, parked.state, parked.attempts) == (poison, "parked", 3)
    assert Consumer.objects.get(name="test_parking").state == Consumer.State.RUNNING


@pytest.mark.django_db
def test_a_parked_event_retried_after_a_fix_is_applied_and_audited(flaky, no_backoff):
    _, poison, _ = orders({}, {"poison": True}, {})
    for _ in range(ParkingFlaky.max_attempts):
        run_projection("test_parking")
    parked = ParkedEvent.objects.get()

    with pytest.raises(ConsumerError, match="failed again"):
        consumers.retry_parked(parked_id=parked.pk, actor="olivia")
    assert ParkedEvent.objects.get().state == "parked"

    Flaky.failing = False
    consumers.retry_parked(parked_id=parked.pk, actor="olivia")
    assert poison in applied("proj_test_parking")
    parked.refresh_from_db()
    assert (parked.state, parked.resolved_by) == ("retried", "olivia")
    audit = Event.objects.get(type="ParkedEventRetried")
    assert (audit.stream.name, audit.actor) == ("console-consumer.test_parking", "olivia")
    assert audit.data["position"] == poison
    with pytest.raises(ConsumerError, match="retried already"):
        consumers.skip_parked(parked_id=parked.pk, actor="olivia")


@pytest.mark.django_db
def test_a_parked_event_can_be_skipped_and_that_is_audited(flaky, no_backoff):
    orders({"poison": True})
    for _ in range(ParkingFlaky.max_attempts):
        run_projection("test_parking")
    parked = consumers.skip_parked(parked_id=ParkedEvent.objects.get().pk, actor="olivia")
    assert parked.state == "skipped"
    assert Event.objects.get(type="ParkedEventSkipped").actor == "olivia"


@pytest.mark.django_db
def test_a_paused_consumer_applies_nothing_until_resumed(flaky):
    run_projection("test_flaky")
    consumers.pause_consumer(name="test_flaky", actor="olivia")
    orders({}, {})
    assert run_projection("test_flaky").applied == 0
    with pytest.raises(ConsumerError, match="paused already"):
        consumers.pause_consumer(name="test_flaky", actor="olivia")
    consumers.resume_consumer(name="test_flaky", actor="olivia")
    assert run_projection("test_flaky").applied == 2
    assert [e.type for e in Event.objects.filter(stream__category="console").order_by("position")] == [
        "ConsumerPaused",
        "ConsumerResumed",
    ]


@pytest.mark.django_db
def test_operator_actions_on_unknown_consumers_are_refused():
    with pytest.raises(ConsumerError, match="no consumer"):
        consumers.pause_consumer(name="nobody", actor="olivia")
    with pytest.raises(ConsumerError, match="no parked event"):
        consumers.skip_parked(parked_id=12345, actor="olivia")


@pytest.mark.django_db(transaction=True)
def test_only_one_runner_works_a_projection_at_a_time(flaky):
    orders({}, {})
    run_projection("test_flaky")  # creates the schema
    orders({}, {})
    holding, release = threading.Event(), threading.Event()

    def other_runner():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("consumer", "test_flaky")])
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_runner)
    thread.start()
    assert holding.wait(10)
    try:
        assert run_projection("test_flaky").idle
        assert len(applied("proj_test_flaky")) == 2
    finally:
        release.set()
        thread.join(10)
    assert run_projection("test_flaky").applied == 2
