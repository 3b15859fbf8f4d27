"""The verify_source job: a source compared with Replaydesk's copy of it, stream by stream, against a real
table source, Message DB and an application of the eventsourcing library. Equal after a follow; damage to
the copy (events deleted or altered in SQL) or to the source is reported as missing, extra or different
with samples; parked events and events not copied yet are not differences; bad parameters are refused
with nothing written; the command line exits 2 when they differ; a source's page offers it."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains

from recovery import runner, services
from recovery.models import Job
from recovery.params import JobParamsError
from streams import source_services
from streams.models import SourceParkedEvent
from tests.conftest import person
from tests.streams.source_helpers import add_table_source, copy_all
from tests.streams.test_source_eventsourcing import add_shop, shop_of  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)


def backfilled(name: str) -> None:
    """A new source's history copied by its backfill job, as on a server."""
    backfill = Job.objects.get(kind="backfill", params__source=name)
    assert runner.run_inline(backfill.pk).state == "succeeded"


def verify(name: str, **params) -> Job:
    with runner.inline():
        job = services.request_job(
            kind="verify_source", params={"source": name, **params}, requested_by="tests", reason="check"
        )
    finished = runner.run_inline(job.pk)
    assert finished.state == "succeeded", finished.error
    return finished


def in_log(sql: str, params=()) -> None:
    """Damage to the copy, done behind the store's back."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def samples(job: Job) -> list[tuple]:
    return sorted(
        (s["what"], s["stream"], s["sequence"], s["position"], tuple(s.get("fields", ())))
        for s in job.result["samples"]
    )


def differing(job: Job) -> dict[str, tuple]:
    return {
        s["stream"]: (s["source_events"], s["copy_events"], s["missing"], s["extra"], s["different"])
        for s in job.result["differing"]
    }


# A table source


@pytest.fixture
def orders(source_db):
    """order-1 with three events, order-2 with two, copied."""
    for stream, versions in (("order-1", 3), ("order-2", 2)):
        for version in range(1, versions + 1):
            source_db.append(stream, version, body={"n": version, "price": 1.5, "tags": ["a", "é"]})
    add_table_source(source_db)
    backfilled("orders_store")
    return source_db


def test_a_followed_table_source_and_its_copy_agree_and_events_not_copied_yet_are_no_difference(orders):
    orders.append("order-2", 3)  # not followed yet

    job = verify("orders_store")

    assert job.target == "source.orders_store"
    r = job.result
    assert r["equal"] is True
    assert (r["streams"], r["source_events"], r["copy_events"]) == (2, 5, 5)
    assert (r["position"], r["beyond"], r["parked"]) == (5, 1, 0)
    assert r["differing"] == [] and r["samples"] == []
    # Progress: the source's events up to its position, then the copy's.
    assert (job.done, job.total) == (10, 10)
    assert job.work == {}


def test_events_deleted_or_altered_in_the_copy_are_missing_or_different_with_samples(orders, settings):
    settings.REPLAYDESK_SOURCE_BATCH = 2  # several batches, and a slice each: what it found is kept
    settings.REPLAYDESK_JOB_SLICE_SECONDS = 0
    in_log(
        "DELETE FROM streams_event WHERE stream_id = (SELECT id FROM streams_stream WHERE name = 'order-1')"
        " AND sequence = 2"
    )
    in_log(
        'UPDATE streams_event SET data = \'{"n": 3, "price": 99}\' WHERE sequence = 3'
        " AND stream_id = (SELECT id FROM streams_stream WHERE name = 'order-1')"
    )
    in_log(
        "UPDATE streams_event SET type = 'Tampered' WHERE sequence = 1"
        " AND stream_id = (SELECT id FROM streams_stream WHERE name = 'order-2')"
    )

    job = verify("orders_store", samples=5)

    r = job.result
    assert r["equal"] is False
    assert (r["source_events"], r["copy_events"]) == (5, 4)
    assert (r["missing"], r["extra"], r["different"], r["streams_differing"]) == (1, 0, 2, 2)
    assert differing(job) == {"order-1": (3, 2, 1, 0, 1), "order-2": (2, 2, 0, 0, 1)}
    # Source positions: order-1's events are 1, 2, 3 in the source, order-2's 4 and 5.
    assert samples(job) == [
        ("different", "order-1", 3, 3, ("data",)),
        ("different", "order-2", 1, 4, ("type",)),
        ("missing", "order-1", 2, 2, ()),
    ]
    assert job.done == 9

    assert len(verify("orders_store", samples=1).result["samples"]) == 1

    # The job's page shows the same.
    client = Client()
    client.force_login(person("olivia", "operator"))
    page = client.get(f"/jobs/{job.pk}/")
    assertContains(page, "orders_store and its copy differ up to its position 5: 2 of 2 streams.")
    assertContains(page, '<tr data-stream="order-1">', count=1)
    assertContains(
        page,
        '<tr class="source-verify-sample" data-what="different"><td data-label="What">different data</td>'
        '<td class="wrap" data-label="Stream">order-1</td><td class="num" data-label="Sequence">3</td>'
        '<td class="num" data-label="Source position">3</td></tr>',
        html=True,
    )
    assertContains(page, '<a href="/sources/orders_store/">orders_store</a>', html=True)


def test_a_slice_that_dies_midway_is_done_again_from_what_the_job_kept(orders, settings, monkeypatch):
    from recovery.kinds import source_verify

    settings.REPLAYDESK_SOURCE_BATCH = 2
    in_log(
        "DELETE FROM streams_event WHERE sequence = 3"
        " AND stream_id = (SELECT id FROM streams_stream WHERE name = 'order-1')"
    )
    calls = []

    def dies_once(*args):
        calls.append(1)
        if len(calls) == 2:  # the copy read in part, nothing of it kept yet
            raise RuntimeError("worker lost")
        return read_copy(*args)

    read_copy = source_verify.read_copy
    monkeypatch.setattr(source_verify, "read_copy", dies_once)

    job = verify("orders_store")

    assert job.failures == 0 and len(calls) > 3
    r = job.result
    assert (r["source_events"], r["copy_events"], r["missing"], r["extra"]) == (5, 4, 1, 0)
    assert samples(job) == [("missing", "order-1", 3, 3, ())]
    assert job.done == 9


def test_a_verify_cancelled_while_it_reads_stops_at_its_next_batch(orders, settings, monkeypatch):
    from recovery.kinds import source_verify

    settings.REPLAYDESK_SOURCE_BATCH = 1
    settings.REPLAYDESK_JOB_SLICE_SECONDS = 60
    read_source = source_verify.read_source
    batches = []

    def then_cancelled(found, *args):
        batches.append(found.source_after)
        if len(batches) == 2:
            job = Job.objects.get(kind="verify_source")
            services.cancel_job(job_id=job.pk, actor="tests")
        return read_source(found, *args)

    monkeypatch.setattr(source_verify, "read_source", then_cancelled)
    with runner.inline():
        job = services.request_job(
            kind="verify_source", params={"source": "orders_store"}, requested_by="tests", reason="check"
        )

    finished = runner.run_inline(job.pk)

    assert finished.state == "cancelled"
    assert batches == [0, 1] and finished.done == 2
    assert finished.result is None or finished.result == {}


def test_a_tampered_source_is_reported_against_its_copy(orders):
    orders.execute('UPDATE events SET body = \'{"n": 1, "forged": true}\' WHERE seq = 1')
    orders.execute("DELETE FROM events WHERE seq = 4")  # order-2's first event
    orders.execute("UPDATE events SET event_type = 'Renamed' WHERE seq = 5")

    job = verify("orders_store")

    r = job.result
    assert r["equal"] is False
    assert (r["source_events"], r["copy_events"]) == (4, 5)
    assert differing(job) == {"order-1": (3, 3, 0, 0, 1), "order-2": (1, 2, 0, 1, 1)}
    assert samples(job) == [
        ("different", "order-1", 1, 1, ("data",)),
        ("different", "order-2", 2, 5, ("type",)),
        ("extra", "order-2", 1, 4, ()),
    ]


def test_parked_events_are_counted_as_parked_not_as_differences(source_db):
    source_db.append("order-1", 1)
    source_db.append("order-1", 3)  # a hole: parked
    source_db.append("order-2", 1, "not a type!")  # the log refuses its type: parked
    source_db.append("order-3", 1)
    add_table_source(source_db)
    backfilled("orders_store")
    assert SourceParkedEvent.objects.count() == 2

    r = verify("orders_store").result

    assert (r["equal"], r["parked"], r["source_events"], r["copy_events"]) == (True, 2, 2, 2)

    # Skipped for good, it is still no difference.
    parked = SourceParkedEvent.objects.get(position=3)
    source_services.skip_parked(name="orders_store", parked_id=parked.pk, actor="tests")
    assert verify("orders_store").result["equal"] is True


def test_bad_parameters_are_refused_field_by_field_and_write_nothing(orders, operator):
    jobs = Job.objects.count()
    for params, field, message in (
        ({"source": "nope"}, "source", "no source is named 'nope'"),
        ({}, "source", "name the source"),
        ({"source": "orders_store", "samples": 101}, "samples", "from 0 to 100"),
        ({"source": "orders_store", "samples": -1}, "samples", "from 0 to 100"),
        ({"source": "orders_store", "samples": "ten"}, "samples", "from 0 to 100"),
        ({"source": "orders_store", "shards": 2}, "shards", "takes no 'shards'"),
    ):
        with pytest.raises(JobParamsError) as refused:
            services.request_job(kind="verify_source", params=params, requested_by="tests", reason="check")
        assert message in " ".join(refused.value.errors[field]), refused.value.errors
    assert Job.objects.count() == jobs

    client = Client()
    client.force_login(operator)
    response = client.post(
        "/api/v1/jobs",
        {"kind": "verify_source", "params": {"source": "orders_store", "samples": 500}, "reason": "check"},
        content_type="application/json",
    )
    assert response.status_code in (400, 422)
    assert "samples" in response.json()["errors"]
    assert Job.objects.count() == jobs


def test_the_command_line_says_equal_or_what_differs_and_exits_2(orders):
    out = io.StringIO()
    call_command("source", "verify", "orders_store", "--reason", "nightly", "--inline", stdout=out)
    assert "orders_store and its copy agree up to its position 5: 2 streams, 5 events" in out.getvalue()

    in_log("DELETE FROM streams_event WHERE sequence = 1 AND stream_id IN (SELECT id FROM streams_stream)")
    out = io.StringIO()
    with pytest.raises(CommandError) as differs:
        call_command(
            "source", "verify", "orders_store", "--samples", "1", "--reason", "x", "--inline", stdout=out
        )
    assert differs.value.returncode == 2
    output = out.getvalue()
    assert "orders_store and its copy differ up to its position 5: 2 of 2 streams" in output
    assert "  order-1: 3 in the source, 2 in the copy (1 missing, 0 extra, 0 different)" in output
    assert "  missing in the copy: order-1 sequence 1 (source position 1)" in output

    out = io.StringIO()
    call_command("source", "verify", "orders_store", "--reason", "x", "--dry-run", stdout=out)
    assert "dry run of verify_source source.orders_store (nothing was created)" in out.getvalue()
    assert '"samples": 10' in out.getvalue()

    with pytest.raises(CommandError) as refused:
        call_command("source", "verify", "nope", "--reason", "x", "--inline", stdout=io.StringIO())
    assert "SOURCE: no source is named 'nope'" in str(refused.value)


def test_a_sources_page_offers_verify_to_operators_leading_to_the_form_filled_in(orders, operator):
    operating = Client()
    operating.force_login(operator)
    page = operating.get("/sources/orders_store/")
    form_url = "/jobs/new?kind=verify_source&amp;source=orders_store"
    assertContains(page, f'<a class="button" href="{form_url}">Verify</a>', html=True)

    form = operating.get(form_url.replace("&amp;", "&"))
    assertContains(form, '<option value="orders_store" selected>orders_store</option>', html=True)
    assertContains(form, 'value="verify_source"')
    posted = operating.post(
        "/jobs/new", {"kind": "verify_source", "source": "orders_store", "samples": "3", "reason": "check"}
    )
    assert posted.status_code == 302
    job = Job.objects.get(kind="verify_source")
    assert job.params == {"source": "orders_store", "samples": 3}

    support = Client()
    support.force_login(person("sam", "support"))
    assertNotContains(support.get("/sources/orders_store/"), "kind=verify_source")


# Message DB


def test_message_db_and_its_copy_agree_and_a_changed_id_or_sequence_is_named(messagedb):
    messagedb.write("account-1", "Opened", {"owner": "ada"})
    messagedb.write("account-1", "Deposited", {"amount": 10.5}, {"schemaVersion": "1"})
    messagedb.write("account-2", "Opened", {"owner": "bob"})
    source_services.add_source(
        name="accounts", kind="messagedb", dsn=messagedb.reader_url, options={}, actor="tests"
    )
    backfilled("accounts")
    messagedb.write("account-2", "Closed", {})  # not followed yet

    r = verify("accounts").result
    assert (r["equal"], r["streams"], r["source_events"], r["beyond"]) == (True, 2, 3, 1)

    in_log(
        "UPDATE streams_event SET id = gen_random_uuid() WHERE sequence = 1"
        " AND stream_id = (SELECT id FROM streams_stream WHERE name = 'account-1')"
    )
    in_log(
        "UPDATE streams_event SET sequence = 7 WHERE sequence = 1"
        " AND stream_id = (SELECT id FROM streams_stream WHERE name = 'account-2')"
    )
    job = verify("accounts")

    assert job.result["equal"] is False
    assert samples(job) == [
        ("different", "account-1", 1, 1, ("id",)),
        ("different", "account-2", 1, 3, ("sequence",)),
    ]
    assert job.result["extra"] == 0  # the moved event is the same event, not one more


# The eventsourcing library


def test_an_eventsourcing_application_and_its_copy_agree_until_the_copy_loses_an_event(source_db, shop_of):  # noqa: F811
    shop = shop_of()
    order = shop.place("ada", "12.50")
    order.add_line("tea", 2)
    shop.save(order)
    shop.place("bob", "3")
    add_shop(source_db)
    backfilled("shop")
    copy_all("shop")

    r = verify("shop").result
    assert (r["equal"], r["streams"], r["source_events"], r["copy_events"]) == (True, 2, 3, 3)

    in_log(
        "DELETE FROM streams_event WHERE sequence = 2 AND stream_id = (SELECT id FROM streams_stream"
        " WHERE name = %s)",
        [f"order-{order.id}"],
    )
    job = verify("shop")
    assert job.result["equal"] is False
    assert samples(job) == [("missing", f"order-{order.id}", 2, 2, ())]
