"""Consumers measured together (the dashboard, the consumers page, the API's list, the lag samples) give
the answer each one measured alone gives: checkpoint, lag, whether it is exact, its age, rate, health."""

import datetime as dt

import pytest
from django.utils import timezone

from console import dashboard
from streams import lag, lag_samples, subscription_status, subscriptions
from streams.consumers import ensure_projection, pause_consumer, run_projection
from streams.models import Consumer, Event, LagSample, Sink, Stream, SubscriptionPartition
from streams.projections import Projection, add, remove
from streams.selectors import head
from streams.services import append_events

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


class Orders(Projection, register=False):
    name = "test_together_orders"
    categories = ("order",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)
    batch_size = 7

    def apply(self, cursor, events):
        pass


class Shipments(Projection, register=False):
    name = "test_together_shipments"
    categories = ("order",)
    types = ("Shipped",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)
    batch_size = 3

    def apply(self, cursor, events):
        pass


class Everything(Projection, register=False):
    """Follows the whole log and never runs here: its schema exists only once ensured."""

    name = "test_together_everything"
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

    def apply(self, cursor, events):
        pass


PROJECTIONS = (Orders, Shipments, Everything)


@pytest.fixture
def projections():
    for projection in PROJECTIONS:
        add(projection)
    yield
    for projection in PROJECTIONS:
        remove(projection.name)


def history(orders: int) -> None:
    """Orders placed and shipped, with users between them: a consumer that follows orders skips those."""
    for n in range(orders):
        append_events(
            stream=f"order-{n}",
            events=[{"type": "Placed", "data": {}}, {"type": "Shipped", "data": {}}],
        )
        append_events(stream=f"user-{n}", events=[{"type": "Created", "data": {}}])


def one_at_a_time(now: dt.datetime) -> list[lag.ConsumerStatus]:
    return [lag.consumer_status(consumer=consumer, now=now) for consumer in Consumer.objects.order_by("name")]


def a_minute_of_samples(now: dt.datetime) -> None:
    """A sample of each consumer 40 s ago at a checkpoint behind its own: each has a rate to show."""
    for consumer in Consumer.objects.all():
        then = max(0, lag.checkpoint_of(consumer=consumer) - 12)
        LagSample.objects.create(
            consumer=consumer,
            sampled_at=now - dt.timedelta(seconds=40),
            head=then,
            checkpoint=then,
            lag_events=0,
            lag_seconds=0,
        )


@pytest.fixture
def consumers(projections):
    """Projections at several checkpoints (one ran out of batches, one lags, one is paused), a stalled
    sink that follows orders, a subscription in two partitions at checkpoints of their own, and a
    failing consumer whose kind is not installed here."""
    history(30)
    for projection in (Orders, Shipments, Everything):
        ensure_projection(projection())
    run_projection(Orders.name, budget_seconds=0)
    run_projection(Shipments.name, budget_seconds=0)
    run_projection(Shipments.name, budget_seconds=0)
    history(5)
    sink = Consumer.objects.create(name="test_together_sink", kind=Consumer.Kind.SINK, position=head() - 20)
    Sink.objects.create(
        consumer=sink, url="https://example.com/hook", secret="s", categories=["order"], rate_per_second=5
    )
    subscription = subscriptions.create_subscription(
        name="test_together_subscription", actor="tests", categories=["user"], partitions=2
    )
    SubscriptionPartition.objects.filter(subscription=subscription, number=0).update(checkpoint=head() - 9)
    SubscriptionPartition.objects.filter(subscription=subscription, number=1).update(checkpoint=head() - 40)
    now = timezone.now()
    Consumer.objects.create(
        name="test_together_elsewhere",
        kind="kafka",
        position=head() - 5,
        last_error="the broker went away",
        last_error_at=now - dt.timedelta(seconds=5),
    )
    pause_consumer(name=Everything.name, actor="tests")
    Consumer.objects.filter(pk=sink.pk).update(progressed_at=now - dt.timedelta(minutes=5))
    Consumer.objects.filter(name=Shipments.name).update(lag_threshold=2)
    Event.objects.update(recorded_at=now - dt.timedelta(minutes=3))


def test_consumers_measured_together_give_each_ones_own_answer(consumers):
    now = timezone.now()
    a_minute_of_samples(now)
    alone = one_at_a_time(now)
    assert len({status.checkpoint for status in alone}) >= 5  # several checkpoints, not one
    assert {status.health for status in alone} >= {"paused", "stalled", "lagging", "failing"}
    assert all(status.rate is not None for status in alone)
    assert any(status.rate for status in alone)

    assert lag.consumer_statuses(now=now) == alone
    without_rates = lag.consumer_statuses(now=now, with_rate=False)
    assert without_rates == [
        lag.consumer_status(consumer=c, now=now, with_rate=False) for c in Consumer.objects.order_by("name")
    ]
    assert all(status.rate is None for status in without_rates)


def test_far_behind_together_the_estimates_are_each_ones_own(consumers, monkeypatch):
    monkeypatch.setattr(lag, "LAG_WINDOW", 10)
    now = timezone.now()
    a_minute_of_samples(now)
    alone = one_at_a_time(now)
    assert {status.lag_exact for status in alone} == {True, False}
    assert lag.consumer_statuses(now=now) == alone


def test_a_lag_sample_of_each_consumer_is_what_its_status_says(consumers):
    now = timezone.now()
    alone = {status.name: status for status in one_at_a_time(now)}
    assert lag_samples.sample_all(now=now) == len(alone)
    for sample in LagSample.objects.filter(sampled_at=now).select_related("consumer"):
        status = alone[sample.consumer.name]
        assert (sample.head, sample.checkpoint, sample.lag_events, sample.lag_seconds) == (
            status.head,
            status.checkpoint,
            status.lag_events,
            status.lag_seconds,
        )


def test_the_statements_for_a_list_do_not_grow_with_its_consumers(consumers, django_assert_max_num_queries):
    now = timezone.now()
    a_minute_of_samples(now)
    with django_assert_max_num_queries(9):
        statuses = lag.consumer_statuses(now=now)
    assert len(statuses) == 6


def test_a_streams_consumers_are_each_measured_as_alone_in_statements_that_do_not_grow(
    consumers, django_assert_max_num_queries
):
    stream = Stream.objects.get(name="order-3")
    events = list(Event.objects.filter(stream=stream).values_list("position", "sequence", "type"))

    with django_assert_max_num_queries(5):
        found = lag.stream_consumers(stream=stream)

    expected = []
    for consumer in Consumer.objects.order_by("name"):
        followed = lag.follows(consumer=consumer)
        if not lag.follows_stream(subscription=followed, stream=stream):
            continue
        checkpoint = lag.checkpoint_of(consumer=consumer)
        applied = max((sequence for position, sequence, _ in events if position <= checkpoint), default=0)
        unapplied = sum(
            1
            for _, sequence, type_ in events
            if sequence > applied and (not followed.types or type_ in followed.types)
        )
        expected.append(lag.ConsumerStreamLag(consumer.name, consumer.kind, checkpoint, applied, unapplied))
    assert found == expected
    # The sink and the consumer of a kind not installed here follow it; the subscription follows users.
    assert [status.name for status in found] == [
        "test_together_elsewhere",
        "test_together_everything",
        "test_together_orders",
        "test_together_shipments",
        "test_together_sink",
    ]
    assert len({(status.applied_sequence, status.lag_events) for status in found}) >= 3


def test_the_dashboard_lists_each_consumers_own_status_and_its_trend(consumers):
    now = timezone.now()
    a_minute_of_samples(now)
    listed = dashboard.consumer_list(now=now)
    assert listed.statuses == one_at_a_time(now)
    assert set(listed.trends) == {status.name for status in listed.statuses}


def test_the_dashboards_subscriptions_reuse_the_statuses_it_measured(consumers):
    measured = lag.consumer_statuses()
    (reused,) = subscription_status.subscription_statuses(measured=measured)
    (alone,) = subscription_status.subscription_statuses()
    assert reused.consumer == next(s for s in measured if s.name == "test_together_subscription")
    assert (reused.consumer.lag_events, reused.consumer.checkpoint) == (
        alone.consumer.lag_events,
        alone.consumer.checkpoint,
    )
    assert [(p.partition, p.checkpoint, p.lag_events) for p in reused.partitions] == [
        (p.partition, p.checkpoint, p.lag_events) for p in alone.partitions
    ]
    assert reused.lag_events == alone.lag_events > 0
