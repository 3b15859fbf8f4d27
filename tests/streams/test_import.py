"""import_events: many streams in one COPY, checked like appends, all or nothing."""

import uuid

import pytest

from streams.models import Event, Stream
from streams.selectors import head
from streams.services import ImportBatch, append_events, import_events
from streams.validation import InvalidAppend, WrongExpectedVersion

pytestmark = pytest.mark.django_db


def events(n, type_="Imported"):
    return [{"id": str(uuid.uuid4()), "type": type_, "data": {"n": i}} for i in range(n)]


def test_an_import_writes_every_stream_in_order_with_original_times():
    append_events(stream="user-1", events=events(1))
    result = import_events(
        batches=[
            ImportBatch(stream="user-1", events=events(2), expected_version=1),
            ImportBatch(stream="user-2", events=[{**events(1)[0], "recorded_at": "2025-03-01T10:00:00Z"}]),
            ImportBatch(stream="user-1", events=events(1), expected_version=3),
        ],
        actor="migration",
    )
    assert (result.events, result.streams, result.last_position) == (4, 2, head())
    assert Stream.objects.get(name="user-1").version == 4
    user_1 = list(
        Event.objects.filter(stream__name="user-1").order_by("position").values_list("sequence", flat=True)
    )
    assert user_1 == [1, 2, 3, 4]
    imported = Event.objects.get(stream__name="user-2")
    assert imported.recorded_at.isoformat() == "2025-03-01T10:00:00+00:00"
    assert imported.actor == "migration" and imported.metadata["actor"] == "migration"


def test_a_wrong_expected_version_anywhere_writes_nothing():
    append_events(stream="user-1", events=events(1))
    with pytest.raises(WrongExpectedVersion):
        import_events(
            batches=[
                ImportBatch(stream="user-2", events=events(3)),
                ImportBatch(stream="user-1", events=events(1), expected_version="no_stream"),
            ]
        )
    assert Event.objects.count() == 1 and not Stream.objects.filter(name="user-2").exists()


def test_bad_events_are_named_by_batch_and_nothing_is_written():
    with pytest.raises(InvalidAppend) as refused:
        import_events(
            batches=[
                ImportBatch(stream="ok-1", events=events(1)),
                ImportBatch(stream="bad name", events=[{"type": "1x", "data": {}}]),
            ]
        )
    assert set(refused.value.errors) == {"batches[1].stream", "batches[1].events[0].type"}
    assert not Event.objects.exists()


def test_an_import_only_adds_new_events():
    recorded = events(1)
    append_events(stream="user-1", events=recorded)
    with pytest.raises(InvalidAppend, match="recorded already"):
        import_events(batches=[ImportBatch(stream="user-2", events=events(2) + recorded)])
    assert Event.objects.count() == 1


def test_an_import_into_the_consoles_audit_category_is_refused_and_writes_nothing():
    with pytest.raises(InvalidAppend) as refused:
        import_events(
            batches=[
                ImportBatch(stream="user-1", events=events(1)),
                ImportBatch(stream="console-job.1", events=events(1, type_="JobApproved")),
            ]
        )
    reason = "the console category is the console's own audit trail"
    assert refused.value.errors["batches[1].stream"] == [reason]
    assert not Event.objects.exists()


def test_an_import_stores_each_event_as_the_same_append_would():
    order_id = uuid.uuid4()
    sent = [
        {"type": "OrderPlaced", "data": {"order_id": order_id, "note": "Zoë", "n": 2**70}, "metadata": {}},
        {"type": "OrderPaid", "data": {"total": 1.5}, "metadata": {"actor": None, "channel": "web"}},
        {"type": "OrderShipped", "data": {}, "metadata": {"actor": "carrier"}},
    ]
    import_events(batches=[ImportBatch(stream="order-1", events=sent)], actor="migration")
    append_events(stream="order-2", events=sent, actor="migration")
    imported, appended = (
        list(Event.objects.filter(stream__name=name).order_by("sequence").values("data", "metadata", "actor"))
        for name in ("order-1", "order-2")
    )
    assert imported == appended
    assert imported[0]["data"] == {"order_id": str(order_id), "note": "Zoë", "n": 2**70}
    assert [e["metadata"] for e in imported] == [
        {"actor": "migration"},
        {"actor": "migration", "channel": "web"},
        {"actor": "carrier"},
    ]
    assert [e["actor"] for e in imported] == ["migration", "migration", "carrier"]
