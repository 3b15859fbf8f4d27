"""Consumer kinds: a kind defined in one place is run by the tasks, measured by lag and health, and asked
to retry its parked events, with nothing else changed."""

from __future__ import annotations

from typing import ClassVar

import pytest
from django.db import transaction

from streams import consumer_kinds, consumers, lag, selectors, tasks
from streams.consumer_kinds import ConsumerError, ConsumerKind, RunResult
from streams.models import Consumer, Event, ParkedEvent
from streams.services import append_events

pytestmark = pytest.mark.django_db


class Tally(ConsumerKind, register=False):
    """Counts the `tally-*` events it is handed; its checkpoint is its Consumer row's position."""

    name = "test_tally"
    counted: ClassVar[list[int]] = []
    jammed: ClassVar[bool] = False

    def ensure_consumers(self, *, name: str | None = None) -> None:
        if name in (None, "test_counter"):
            Consumer.objects.get_or_create(name="test_counter", defaults={"kind": self.name})

    def run(self, name: str, *, budget_seconds: float = 5.0) -> RunResult:
        consumer = Consumer.objects.get(name=name)
        head = selectors.head()
        events = selectors.read_all(
            after_position=self.checkpoint(consumer), up_to_position=head, log_filter=self.follows(consumer)
        )
        self.counted.extend(event.position for event in events)
        Consumer.objects.filter(pk=consumer.pk).update(position=head)
        return RunResult(applied=len(events), caught_up=True, idle=False)

    def follows(self, consumer: Consumer) -> selectors.LogFilter:
        return selectors.LogFilter(categories=("tally",))

    def failing(self, consumer: Consumer, *, now) -> bool:
        return self.jammed or super().failing(consumer, now=now)

    def retry_parked(self, *, parked_id: int, actor: str, request=None) -> ParkedEvent:
        with transaction.atomic():
            parked = consumers.parked_for_update(parked_id)
            self.counted.append(parked.event.position)
            consumers.resolve_parked(parked, state=ParkedEvent.State.RETRIED, actor=actor, request=request)
        return parked


@pytest.fixture
def tally():
    consumer_kinds.add(Tally)
    Tally.counted, Tally.jammed = [], False
    yield consumer_kinds.get(Tally.name)
    consumer_kinds.remove(Tally.name)


def append(stream, n=1):
    return append_events(stream=stream, events=[{"type": "Counted", "data": {}}] * n).positions


def status():
    return lag.consumer_status(consumer=Consumer.objects.get(name="test_counter"))


def test_a_registered_kind_is_run_by_the_tasks_and_measured_by_lag(tally):
    assert "test_counter" in tasks.running_consumers()  # its row, made by the kind
    counted = append("tally-1", 2) + append("tally-2")
    append("other-1", 4)
    assert (status().kind, status().lag_events, status().health) == ("test_tally", 3, "healthy")

    tasks.run_consumer("test_counter")
    assert Tally.counted == counted
    assert (status().checkpoint, status().lag_events) == (selectors.head(), 0)

    Tally.jammed = True
    assert status().health == "failing"


def test_a_consumer_declared_in_code_gets_its_row_at_a_run_queued_before_the_first_tick(tally):
    counted = append("tally-1")
    tasks.run_consumer("test_counter")
    assert Tally.counted == counted
    assert Consumer.objects.get(name="test_counter").kind == "test_tally"


def test_a_parked_event_is_retried_by_its_consumers_kind(tally):
    tally.ensure_consumers()
    position = append("tally-1")[0]
    parked = ParkedEvent.objects.create(
        consumer=Consumer.objects.get(name="test_counter"),
        event=Event.objects.get(position=position),
        error="boom",
        attempts=3,
    )
    consumers.retry_parked(parked_id=parked.pk, actor="olivia")
    assert Tally.counted == [position]
    assert ParkedEvent.objects.get(pk=parked.pk).state == ParkedEvent.State.RETRIED


def test_a_consumer_whose_kind_is_not_installed_is_measured_and_never_run():
    Consumer.objects.create(name="test_orphan", kind="test_gone", position=0)
    append("tally-1", 2)
    found = lag.consumer_status(consumer=Consumer.objects.get(name="test_orphan"))
    assert (found.lag_events, found.health) == (2, "healthy")  # it follows everything: never understated
    with pytest.raises(ConsumerError, match="not installed"):
        tasks.run_consumer("test_orphan")
