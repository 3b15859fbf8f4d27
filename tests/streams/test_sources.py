"""Sources: an external event table followed into the log exactly once, with its ids, streams, sequences,
types, data, metadata and times; conflicts parked with their reason; bad configuration refused with a
clear error and nothing saved; streams from a source closed to appends."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from rest_framework.test import APIClient

from core.audit import AuditType
from streams import source_follow, source_kinds
from streams.models import Event, Source, SourceParkedEvent, Stream
from streams.services import ImportBatch, append_events, import_events
from streams.source_kinds import derived_id
from streams.source_services import InvalidSource
from streams.validation import StreamFromSource
from tests.conftest import bearer_token
from tests.streams.source_helpers import (
    TABLE_OPTIONS,
    add_table_source,
    copy_all,
    server_url,
)

pytestmark = pytest.mark.django_db(transaction=True)


def copied(stream: str) -> list[Event]:
    return list(Event.objects.filter(stream__name=stream).order_by("sequence"))


def test_a_table_is_copied_exactly_once_keeping_ids_streams_sequences_types_data_and_times(source_db):
    kept_id = uuid.uuid4()
    when = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
    first = source_db.append("order-1", 1, "OrderPlaced", {"total": 10}, event_id=kept_id, created=when)
    source_db.append("order-1", 2, "OrderPaid", {"amount": 10}, meta=psycopg_json({"actor": "shop"}))
    source_db.append("order-2", 1, "OrderPlaced", {"total": 3})
    source = add_table_source(source_db)

    result = copy_all()

    assert (result.copied, result.parked) == (3, 0)
    placed, paid = copied("order-1")
    assert (placed.event_id, placed.sequence, placed.type, placed.data) == (
        kept_id,
        1,
        "OrderPlaced",
        {"total": 10},
    )
    assert placed.recorded_at == when
    assert placed.metadata["replaydesk_source"] == {"name": "orders_store", "position": first}
    assert (paid.sequence, paid.actor, paid.metadata["actor"]) == (2, "shop", "shop")
    # Without an id column value, the id is derived from the stream and sequence: the same on every copy.
    assert copied("order-2")[0].event_id == derived_id("order-2", 1)
    assert {(e.appended_by, e.appended_via) for e in Event.objects.filter(stream__category="order")} == {
        ("system:source.orders_store", "source")
    }
    # Each copy carries its stream's category, which what follows categories filters on.
    assert set(
        Event.objects.filter(stream__name__in=["order-1", "order-2"]).values_list("category", flat=True)
    ) == {"order"}
    assert set(Stream.objects.filter(category="order").values_list("source__name", flat=True)) == {
        "orders_store"
    }
    source.refresh_from_db()
    assert (source.position, source.events_copied, source.head) == (first + 2, 3, first + 2)

    # Following again copies nothing twice; what the source appends next is copied after it.
    assert copy_all().copied == 0
    source_db.append("order-1", 3, "OrderShipped")
    assert copy_all().copied == 1
    assert [e.sequence for e in copied("order-1")] == [1, 2, 3]


def test_streams_from_a_source_take_no_appends_through_the_api_the_command_line_or_imports(
    source_db, operator
):
    source_db.append("order-1", 1)
    add_table_source(source_db)
    copy_all()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(operator)}")

    for expected in ("any", 1, "exists"):
        response = api.post(
            "/api/v1/streams/order-1/events",
            {"expected_version": expected, "events": [{"type": "Sneaked", "data": {}}]},
            format="json",
        )
        assert response.status_code == 403, response.content
        assert "copied from the source 'orders_store'" in response.json()["detail"]
    with pytest.raises(StreamFromSource):
        append_events(stream="order-1", events=[{"type": "Sneaked", "data": {}}])
    with pytest.raises(StreamFromSource):
        import_events(batches=[ImportBatch(stream="order-1", events=[{"type": "Sneaked", "data": {}}])])
    assert [e.type for e in copied("order-1")] == ["Happened"]


def test_conflicts_are_parked_with_their_reason_and_the_rest_goes_on(source_db):
    taken = uuid.uuid4()
    append_events(stream="invoice-9", events=[{"id": str(taken), "type": "Issued", "data": {}}])
    append_events(stream="order-mine", events=[{"type": "Mine", "data": {}}])
    source_db.append("order-1", 1, event_id=taken)  # its id is in the log with other content
    source_db.append("order-2", 1)
    source_db.append("order-2", 3)  # a hole: sequence 2 is missing in the source
    source_db.append("order-2", 4)  # after a parked event of its stream
    source_db.append("order-mine", 2)  # a stream of Replaydesk's own
    source_db.append("order-3", 1, "not a type!")  # refused as an append would be
    source_db.append("order-4", 1)
    source = add_table_source(source_db)

    result = copy_all()

    assert (result.copied, result.parked) == (2, 5)
    reasons = dict(SourceParkedEvent.objects.values_list("stream", "reason").order_by("position"))
    assert f"its id {taken} is in the log already with other content (invoice-9" in reasons["order-1"]
    parked_order_2 = SourceParkedEvent.objects.filter(stream="order-2").order_by("position")
    assert [p.reason for p in parked_order_2] == [
        "a hole in stream order-2: the log has it up to sequence 1, the source's next is 3",
        "an earlier event of stream order-2 is parked; its order would break",
    ]
    assert "Replaydesk's own" in reasons["order-mine"]
    assert reasons["order-3"].startswith("type:")
    assert [e.sequence for e in copied("order-2")] == [1] and len(copied("order-4")) == 1
    source.refresh_from_db()
    assert source.events_parked == 5 and source.position == source.head


def test_a_paused_source_copies_nothing_until_it_is_resumed(source_db):
    from streams import source_services

    source_db.append("order-1", 1)
    add_table_source(source_db)
    source_services.set_state(name="orders_store", state=Source.State.PAUSED, actor="olivia")

    assert copy_all().copied == 0 and not copied("order-1")

    source_services.set_state(name="orders_store", state=Source.State.RUNNING, actor="olivia")
    assert copy_all().copied == 1
    types = list(
        Event.objects.filter(stream__name="console-source.orders_store").values_list("type", flat=True)
    )
    assert types == [AuditType.SOURCE_ADDED, AuditType.SOURCE_PAUSED, AuditType.SOURCE_RESUMED]


def test_the_dsn_is_kept_encrypted_and_never_in_the_audit_trail(source_db):
    source = add_table_source(source_db)

    assert source.dsn_encrypted and source_db.reader_url not in source.dsn_encrypted
    [added] = Event.objects.filter(stream__name="console-source.orders_store")
    assert "dsn" not in added.data and source_db.role not in str(added.data)


def bad(source_db, **overrides):
    given = {
        "name": "orders_store",
        "kind": "table",
        "dsn": source_db.reader_url,
        "options": dict(TABLE_OPTIONS),
    }
    given.update(overrides)
    from streams.source_services import add_source

    with pytest.raises(InvalidSource) as refused:
        add_source(actor="tests", **given)
    return refused.value.errors


def test_bad_configuration_is_a_clear_error_and_saves_nothing(source_db, monkeypatch):
    audited = Event.objects.count()

    assert "cannot connect" in bad(source_db, dsn=server_url("no_such_database_here"))["dsn"][0]
    assert "no table named nope" in bad(source_db, options={**TABLE_OPTIONS, "table": "nope"})["dsn"][0]
    assert (
        "no column for sequence (revision)"
        in bad(source_db, options={**TABLE_OPTIONS, "sequence": "revision"})["dsn"][0]
    )
    # The team's own role may write there: following needs only SELECT.
    assert "may write to events" in bad(source_db, dsn=source_db.admin_url)["dsn"][0]
    # A private address is refused unless admitted, and said so without the DSN.
    refused = bad(source_db, dsn="postgresql://reader:secret@10.20.30.40:5432/shop")["dsn"][0]
    assert "private address" in refused and "REPLAYDESK_SOURCE_ALLOW" in refused and "secret" not in refused
    assert bad(source_db, options={**TABLE_OPTIONS, "colour": "red"})["options.colour"]
    assert bad(source_db, options={k: v for k, v in TABLE_OPTIONS.items() if k != "type"})["options.type"]
    kinds = ", ".join(kind.name for kind in source_kinds.kinds())
    assert bad(source_db, kind="kafka")["kind"] == [f"'kafka' is not a source kind; use one of {kinds}"]
    assert "table" in kinds
    assert bad(source_db, dsn="", dsn_env="")["dsn"]
    assert "is not set" in bad(source_db, dsn="", dsn_env="RD_NOT_SET_ANYWHERE")["dsn_env"][0]
    assert bad(source_db, name="Orders!")["name"]

    assert not Source.objects.exists() and Event.objects.count() == audited


def test_a_source_reached_through_an_environment_variable(source_db, monkeypatch):
    monkeypatch.setenv("ORDERS_STORE_DSN", source_db.reader_url)
    source_db.append("order-1", 1)

    source = add_table_source_env(source_db)

    assert source.dsn_encrypted == "" and source.dsn_env == "ORDERS_STORE_DSN"
    assert copy_all().copied == 1


def add_table_source_env(source_db):
    from streams.source_services import add_source

    return add_source(
        name="orders_store", kind="table", dsn_env="ORDERS_STORE_DSN", options=TABLE_OPTIONS, actor="t"
    )


def psycopg_json(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def test_a_new_sources_history_is_copied_by_a_backfill_job_with_progress(source_db):
    from recovery.models import Job
    from recovery.runner import run_inline

    source_db.execute(
        "INSERT INTO events (stream_name, version, event_type, body)"
        " SELECT 'order-' || (i % 10), i / 10 + 1, 'Placed', '{}'::jsonb FROM generate_series(0, 2499) AS i"
    )
    add_table_source(source_db)
    job = Job.objects.get(kind="backfill")
    assert (job.state, job.target) == ("queued", "source.orders_store")

    finished = run_inline(job.pk)

    assert finished.state == "succeeded"
    assert (finished.done, finished.total) == (2500, 2500)
    assert finished.result == {
        "source": "orders_store",
        "copied": 2500,
        "parked": 0,
        "position": 2500,
        "from_position": 0,
    }
    assert Event.objects.filter(appended_via="source").count() == 2500
    assert copy_all().copied == 0


def test_a_source_whose_positions_went_back_stops_and_says_so(source_db):
    for version in range(1, 4):
        source_db.append("order-1", version)
    add_table_source(source_db)
    copy_all()
    # Its database restored from a backup taken before the last two events.
    source_db.execute("DELETE FROM events WHERE version > 1")

    result = source_follow.follow(name="orders_store", budget_seconds=5, until_caught_up=True)

    assert "restored from an old backup" in result.error
    source = Source.objects.get()
    assert "below the 3 copied already" in source.last_error
    from streams.source_status import source_status

    assert source_status(source).health == "failing"
