"""A source is followed by the Celery workers on their own once it is added: its history copied by a
backfill job, then a chain of follower slices that a paused source ends and a resumed one starts again."""

from __future__ import annotations

import time

import pytest

from core.redis import client as redis_client
from recovery.models import Job
from streams import source_services, tasks
from streams.models import Event, Source
from tests.streams.source_helpers import add_table_source
from tests.streams.test_projection_crashes import processes  # noqa: F401 - the fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def wait_for_copies(count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while Event.objects.filter(appended_via="source").count() < count:
        assert time.monotonic() < deadline, f"{count} events not copied within {timeout} s"
        time.sleep(0.05)


def test_an_added_source_is_followed_by_the_workers_until_it_is_paused(source_db, processes):  # noqa: F811
    redis_client().delete(tasks.SOURCE_CHAIN_KEY.format("orders_store"))
    redis_client().delete("recovery")  # jobs queued by earlier tests are not this test's
    processes.worker(1, queues="live,recovery")
    for version in range(1, 4):
        source_db.append("order-1", version)

    add_table_source(source_db)

    wait_for_copies(3)
    backfill = Job.objects.get(kind="backfill")
    deadline = time.monotonic() + 30
    while backfill.state != "succeeded":
        assert time.monotonic() < deadline, backfill.state
        time.sleep(0.05)
        backfill.refresh_from_db()
    assert (backfill.done, backfill.total, backfill.result["copied"]) == (3, 3, 3)
    # What the source appends later is copied without anyone asking.
    source_db.append("order-1", 4)
    wait_for_copies(4)

    source_services.set_state(name="orders_store", state=Source.State.PAUSED, actor="olivia")
    deadline = time.monotonic() + 30
    while redis_client().exists(tasks.SOURCE_CHAIN_KEY.format("orders_store")):  # its chain ends
        assert time.monotonic() < deadline
        time.sleep(0.05)
    source_db.append("order-1", 5)
    source_services.set_state(name="orders_store", state=Source.State.RUNNING, actor="olivia")
    wait_for_copies(5)
    assert list(Event.objects.filter(stream__name="order-1").values_list("sequence", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
    ]
