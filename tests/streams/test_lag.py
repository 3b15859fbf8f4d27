"""Lag and health of consumers: exact counts across holes, age, per-stream lag, rate, health, samples."""

import contextlib
import datetime as dt

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from streams import lag, lag_samples, models
from streams.consumers import ensure_projection, pause_consumer, run_projection
from streams.models import Consumer, Event, LagSample, Stream
from streams.projections import Projection, add, remove
from streams.selectors import head
from streams.services import append_events

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


class Orders(Projection, register=False):
    """Follows the order category and does nothing with it: only its checkpoint matters here."""

    name = "test_lag_orders"
    categories = ("order",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

    def apply(self, cursor, events):
        pass


class Shipments(Projection, register=False):
    name = "test_lag_shipments"
    categories = ("order",)
    types = ("Shipped",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

    def apply(self, cursor, events):
        pass


class Users(Projection, register=False):
    name = "test_lag_users"
    categories = ("user",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

    def apply(self, cursor, events):
        pass


@pytest.fixture
def orders():
    for projection in (Orders, Shipments, Users):
        add(projection)
    consumer = ensure_projection(Orders())
    yield consumer
    for projection in (Orders, Shipments, Users):
        remove(projection.name)


class Rollback(Exception):
    pass


def append(stream, *types):
    return append_events(stream=stream, events=[{"type": t, "data": {}} for t in types or ["Placed"]])


def hole(n=1):
    """Positions taken by an append that rolls back: never committed, never to be counted."""
    with contextlib.suppress(Rollback), transaction.atomic():
        append_events(stream="order-rolled-back", events=[{"type": "Placed", "data": {}}] * n)
        raise Rollback


def status(name="test_lag_orders", **kwargs):
    return lag.consumer_status(consumer=Consumer.objects.get(name=name), **kwargs)


def one_batch(monkeypatch, name="test_lag_orders", cls=Orders):
    """Apply exactly one more event and stop, as a runner out of time would."""
    monkeypatch.setattr(cls, "batch_size", 1)
    before = status(name).lag_events
    for _ in range(1000):  # a batch may pass only positions it does not follow
        run_projection(name, budget_seconds=0)
        if status(name).lag_events < before:
            assert status(name).lag_events == before - 1
            return
    raise AssertionError(f"{name} applied nothing")


def test_lag_is_an_exact_count_of_followed_events_across_holes(orders, monkeypatch):
    append("order-1")
    run_projection("test_lag_orders")
    assert status().lag_events == 0

    append("order-1")
    hole(3)
    append("user-1")  # another category: not its business
    append("order-2")
    hole()
    append("order-1")

    found = status()
    assert found.lag_events == 3
    assert found.head == head() and found.head - found.checkpoint == 8  # what head - checkpoint would say
    one_batch(monkeypatch)
    assert status().lag_events == 2
    run_projection("test_lag_orders")
    found = status()
    assert (found.lag_events, found.checkpoint, found.lag_seconds) == (0, head(), 0.0)


def test_far_behind_the_lag_is_estimated_from_a_window_and_says_so(orders, monkeypatch):
    monkeypatch.setattr(lag, "LAG_WINDOW", 40)
    for n in range(50):  # a quarter of the log is another category's
        append_events(stream=f"order-{n}", events=[{"type": "Placed", "data": {}}] * 3)
        append("user-1")
    found = status()
    assert not found.lag_exact
    assert found.lag_events == round(30 * 200 / 40)  # 30 of the window's 40 positions, over 200
    assert found.lag_seconds > 0

    monkeypatch.setattr(lag, "LAG_WINDOW", 1_000)
    found = status()
    assert (found.lag_events, found.lag_exact) == (150, True)


def test_a_consumer_that_follows_some_types_counts_only_those(orders):
    ensure_projection(Shipments())
    append("order-1", "Placed", "Shipped", "Placed", "Shipped")
    hole()
    append("order-2", "Shipped")
    assert status("test_lag_shipments").lag_events == 3
    assert status("test_lag_orders").lag_events == 5


def test_a_sink_is_measured_from_its_own_position():
    append("order-1", "Placed", "Placed")
    hole(2)
    append("user-1", "Created")
    first = Event.objects.order_by("position").first().position
    sink = Consumer.objects.create(name="test_webhook", kind=Consumer.Kind.SINK, position=first)
    assert lag.checkpoint_of(consumer=sink) == first
    # Without a Sink row saying what it follows, everything after its position counts.
    assert lag.consumer_status(consumer=sink).lag_events == 2
    sink.position = None
    assert lag.checkpoint_of(consumer=sink) == 0


def test_lag_seconds_is_the_age_of_the_oldest_unapplied_event(orders):
    append("order-1")
    run_projection("test_lag_orders")
    now = timezone.now()
    Event.objects.update(recorded_at=now - dt.timedelta(hours=1))  # applied: no longer counts
    newer = append("order-2").positions[0]
    older = append("order-3").positions[0]
    Event.objects.filter(position=older).update(recorded_at=now - dt.timedelta(seconds=120))
    Event.objects.filter(position=newer).update(recorded_at=now - dt.timedelta(seconds=30))
    assert status(now=now).lag_seconds == pytest.approx(120, abs=0.01)
    run_projection("test_lag_orders")
    assert status(now=now).lag_seconds == 0.0


def test_top_lagging_streams_count_what_each_stream_has_left(orders):
    append("order-a", "Placed", "Placed")
    append("order-c")
    run_projection("test_lag_orders")
    append("order-a", "Paid", "Packed")
    hole()
    append("order-b")
    append("order-a", "Shipped")
    append("user-1", "Created", "Renamed", "Renamed", "Renamed")  # more, but not followed

    consumer = Consumer.objects.get(name="test_lag_orders")
    found = lag.top_lagging_streams(consumer=consumer)
    assert found == [
        lag.StreamLag(stream="order-a", version=5, applied_sequence=2, lag_events=3),
        lag.StreamLag(stream="order-b", version=1, applied_sequence=0, lag_events=1),
    ]
    assert lag.top_lagging_streams(consumer=consumer, limit=1) == found[:1]


def test_top_lagging_streams_of_a_type_filtered_consumer_skip_streams_with_nothing_it_follows(orders):
    shipments = ensure_projection(Shipments())
    append("order-a", "Placed", "Shipped")
    append("order-b", "Placed", "Placed")
    assert lag.top_lagging_streams(consumer=shipments) == [
        lag.StreamLag(stream="order-a", version=2, applied_sequence=0, lag_events=1)
    ]


def test_a_stream_shows_each_consumer_that_follows_its_category(orders, monkeypatch):
    ensure_projection(Shipments())
    ensure_projection(Users())
    append("order-a", "Placed", "Placed", "Shipped")
    append("order-b", "Placed")
    one_batch(monkeypatch)  # order-a@1 applied
    hole()
    append("order-a", "Shipped")

    stream = Stream.objects.get(name="order-a")
    found = {c.name: c for c in lag.stream_consumers(stream=stream)}
    assert set(found) == {"test_lag_orders", "test_lag_shipments"}  # not the users projection
    assert (found["test_lag_orders"].applied_sequence, found["test_lag_orders"].lag_events) == (1, 3)
    assert (found["test_lag_shipments"].applied_sequence, found["test_lag_shipments"].lag_events) == (0, 2)

    run_projection("test_lag_orders")
    found = {c.name: c for c in lag.stream_consumers(stream=stream)}
    assert (found["test_lag_orders"].applied_sequence, found["test_lag_orders"].lag_events) == (4, 0)


# --- health


def test_health_goes_healthy_lagging_stalled_healthy(orders, monkeypatch):
    Consumer.objects.filter(name="test_lag_orders").update(lag_threshold=2, stall_seconds=60)
    append("order-1")
    run_projection("test_lag_orders")
    now = timezone.now()
    assert status(now=now).health == "healthy"

    append("order-1", "Placed", "Placed")
    assert status(now=now).health == "healthy"  # behind, but within its threshold
    append("order-2", "Placed", "Placed")
    one_batch(monkeypatch)
    found = status(now=timezone.now())
    assert (found.lag_events, found.health) == (3, "lagging")

    # A minute later nothing has moved, and it has been behind all that time.
    assert status(now=timezone.now() + dt.timedelta(seconds=61)).health == "stalled"

    run_projection("test_lag_orders")
    assert status(now=timezone.now() + dt.timedelta(seconds=61)).health == "healthy"


def test_a_consumer_idle_for_long_is_not_stalled_by_an_event_that_just_arrived(orders):
    run_projection("test_lag_orders")
    Consumer.objects.filter(name="test_lag_orders").update(
        progressed_at=timezone.now() - dt.timedelta(hours=1), stall_seconds=60
    )
    append("order-1")
    Event.objects.update(recorded_at=timezone.now())
    assert status().health == "healthy"
    Event.objects.update(recorded_at=timezone.now() - dt.timedelta(seconds=90))
    assert status().health == "stalled"


def test_a_paused_consumer_is_paused_whatever_its_lag(orders):
    Consumer.objects.filter(name="test_lag_orders").update(lag_threshold=0)
    append("order-1")
    pause_consumer(name="test_lag_orders", actor="olivia")
    assert status().health == "paused"


def test_a_stopped_or_retrying_consumer_is_failing(orders):
    consumer = Consumer.objects.get(name="test_lag_orders")
    now = timezone.now()
    consumer.attempts, consumer.last_error, consumer.last_error_at = 2, "boom", now
    consumer.save()
    assert status(now=now).health == "failing"
    assert status(now=now).last_error == "boom"

    consumer.state, consumer.attempts = Consumer.State.FAILED, 0
    consumer.last_error_at = now - dt.timedelta(days=1)
    consumer.save()
    assert status(now=now).health == "failing"


def test_a_recent_error_is_failing_until_the_consumer_moves_past_it(orders):
    consumer = Consumer.objects.get(name="test_lag_orders")
    now = timezone.now()
    consumer.progressed_at = consumer.last_error_at = now - dt.timedelta(seconds=10)  # e.g. it parked one
    consumer.last_error = "parked"
    consumer.save()
    assert status(now=now).health == "failing"
    recent = dt.timedelta(seconds=settings.REPLAYDESK_ERROR_RECENT_SECONDS)
    assert status(now=now + recent).health == "healthy"

    append("order-1")
    run_projection("test_lag_orders")  # moved on since
    assert status().health == "healthy"


def test_a_sink_with_its_breaker_open_is_failing():
    sink_model = getattr(models, "Sink", None)
    if sink_model is None:
        pytest.skip("no sinks yet")
    consumer = Consumer.objects.create(name="test_webhook", kind=Consumer.Kind.SINK, position=0)
    sink = sink_model.objects.create(
        consumer=consumer, url="https://example.com/hook", secret="s", categories=["order"], rate_per_second=5
    )
    append("order-1")
    append("user-1")
    found = lag.consumer_status(consumer=consumer)
    assert (found.health, found.lag_events) == ("healthy", 1)  # its categories, read from the Sink
    sink.breaker_state = "open"
    sink.save()
    assert lag.consumer_status(consumer=Consumer.objects.get(pk=consumer.pk)).health == "failing"


# --- rate and samples


def caught_up_sample(consumer, sampled_at, checkpoint):
    """A lag sample of a consumer that was at the head, `checkpoint`, when it was taken."""
    LagSample.objects.create(
        consumer=consumer,
        sampled_at=sampled_at,
        head=checkpoint,
        checkpoint=checkpoint,
        lag_events=0,
        lag_seconds=0,
    )


def ten_orders_among_others():
    """Ten followed events, each followed by a hole and an event of another category: one in every
    third position."""
    for n in range(10):
        append(f"order-{n}")
        hole()
        append("user-1")


def test_rate_counts_followed_events_applied_since_the_sample_of_a_minute_ago(orders):
    consumer = Consumer.objects.get(name="test_lag_orders")
    append("order-1")
    run_projection("test_lag_orders")
    assert status().rate is None  # no sample yet: unknown, not zero

    now = timezone.now()
    before = lag.checkpoint_of(consumer=consumer)
    caught_up_sample(consumer, now - dt.timedelta(seconds=50), before)
    caught_up_sample(consumer, now - dt.timedelta(seconds=300), 0)  # too old to be the baseline
    ten_orders_among_others()
    run_projection("test_lag_orders")
    assert status(now=now).rate == pytest.approx(10 / 50)


def test_a_rate_over_more_positions_than_its_window_is_their_density_scaled(orders, monkeypatch):
    monkeypatch.setattr(lag, "RATE_WINDOW_POSITIONS", 8)
    consumer = Consumer.objects.get(name="test_lag_orders")
    append("order-1")
    run_projection("test_lag_orders")
    now = timezone.now()
    before = lag.checkpoint_of(consumer=consumer)
    caught_up_sample(consumer, now - dt.timedelta(seconds=50), before)
    ten_orders_among_others()
    run_projection("test_lag_orders")
    applied = lag.checkpoint_of(consumer=consumer) - before
    assert applied == 30  # the checkpoint passes the events it does not follow, up to the head

    found = status(now=now)
    # 3 followed events in the window's 8 positions, over the 30 since the sample: 11 (of 10) in 50 s.
    assert found.rate == pytest.approx(round(3 * 30 / 8) / 50)
    assert (found.lag_events, found.lag_exact) == (0, True)  # the lag keeps its own, wider window


def test_sample_all_takes_one_sample_per_consumer_and_keeps_seven_days(orders):
    ensure_projection(Users())
    consumer = Consumer.objects.get(name="test_lag_orders")
    now = timezone.now()
    old = LagSample.objects.create(
        consumer=consumer,
        sampled_at=now - dt.timedelta(days=7, seconds=1),
        head=0,
        checkpoint=0,
        lag_events=0,
        lag_seconds=0,
    )
    kept = LagSample.objects.create(
        consumer=consumer,
        sampled_at=now - dt.timedelta(days=6),
        head=0,
        checkpoint=0,
        lag_events=0,
        lag_seconds=0,
    )
    append("order-1", "Placed", "Placed")
    hole()
    Event.objects.update(recorded_at=now - dt.timedelta(seconds=5))

    assert lag_samples.sample_all(now=now) == 2
    taken = LagSample.objects.get(consumer=consumer, sampled_at=now)
    assert (taken.head, taken.checkpoint, taken.lag_events) == (head(), 0, 2)
    assert taken.lag_seconds == pytest.approx(5, abs=0.01)
    assert not LagSample.objects.filter(pk=old.pk).exists()
    assert LagSample.objects.filter(pk=kept.pk).exists()
    assert LagSample.objects.filter(consumer__name="test_lag_users", sampled_at=now).count() == 1

    history = lag_samples.lag_history(
        consumer=consumer, since=now - dt.timedelta(days=7), until=now, max_points=100
    )
    assert [s.pk for s in history.points] == [kept.pk, taken.pk]
    assert (history.samples, history.latest_lag) == (2, 2)


def test_a_status_takes_a_few_queries_whatever_the_log_size(orders, django_assert_max_num_queries):
    append("order-1", *["Placed"] * 50)
    consumer = Consumer.objects.get(name="test_lag_orders")
    with django_assert_max_num_queries(7):
        lag.consumer_status(consumer=consumer)
