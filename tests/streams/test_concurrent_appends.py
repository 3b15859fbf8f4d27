"""Guarantees 2 and 3 under real concurrency: compare-and-set per stream, idempotent retries."""

import threading
import uuid

import pytest
from django.db import connection

from streams.models import Event, Stream
from streams.services import append_events
from streams.validation import WrongExpectedVersion

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(count: int, work):
    """Run work(n) in `count` threads released at the same instant; return each result or exception."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def body(n):
        try:
            barrier.wait(10)
            results[n] = work(n)
        except Exception as exc:  # the test inspects what each writer got
            results[n] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_32_writers_with_the_same_expected_version_exactly_one_succeeds():
    append_events(stream="account-1", events=[{"type": "Opened", "data": {}}] * 3)

    results = run_together(
        32,
        lambda n: append_events(
            stream="account-1", events=[{"type": "Deposited", "data": {"writer": n}}], expected_version=3
        ),
    )

    winners = [r for r in results if not isinstance(r, Exception)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and winners[0].version == 4
    assert len(losers) == 31
    assert all(isinstance(r, WrongExpectedVersion) and r.current_version == 4 for r in losers)
    assert Stream.objects.get(name="account-1").version == 4
    assert Event.objects.filter(type="Deposited").count() == 1


def test_32_writers_creating_the_same_stream_exactly_one_succeeds():
    results = run_together(
        32,
        lambda n: append_events(
            stream="account-2", events=[{"type": "Opened", "data": {}}], expected_version="no_stream"
        ),
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, WrongExpectedVersion) for r in results if isinstance(r, Exception))
    assert Event.objects.count() == 1


def test_writers_with_any_all_land_with_contiguous_sequences():
    results = run_together(
        16, lambda n: append_events(stream="account-3", events=[{"type": "Deposited", "data": {}}] * 2)
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert sorted(r.first_sequence for r in results) == list(range(1, 33, 2))
    sequences = list(Event.objects.order_by("position").values_list("sequence", flat=True))
    assert sequences == list(range(1, 33))


def test_concurrent_retries_of_one_batch_record_it_once_and_all_get_the_original_result():
    batch = [{"id": str(uuid.uuid4()), "type": "Deposited", "data": {"n": n}} for n in range(3)]

    results = run_together(12, lambda n: append_events(stream="account-4", events=batch))

    assert not [r for r in results if isinstance(r, Exception)]
    assert {tuple(r.positions) for r in results} == {tuple(results[0].positions)}
    assert sum(not r.duplicate for r in results) == 1
    assert Event.objects.count() == 3
    assert Stream.objects.get(name="account-4").version == 3
