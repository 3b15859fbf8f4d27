"""append_events: expected versions, atomic batches, idempotent retries, limits."""

import datetime as dt
import enum
import uuid
from decimal import Decimal

import pytest

from streams.models import Event, Stream
from streams.selectors import read_stream
from streams.services import append_events
from streams.validation import MAX_BATCH, MAX_EVENT_BYTES, InvalidAppend, WrongExpectedVersion

pytestmark = pytest.mark.django_db


def event(type_="UserCreated", **data):
    return {"id": str(uuid.uuid4()), "type": type_, "data": data or {"user_id": "1"}}


def test_first_append_creates_the_stream_with_sequences_from_one():
    result = append_events(
        stream="user-1", events=[event(), event("UserNameSet")], expected_version="no_stream"
    )
    stream = Stream.objects.get(name="user-1")
    assert (stream.version, stream.category) == (2, "user")
    assert (result.version, result.first_sequence) == (2, 1)
    assert [e.sequence for e in read_stream(stream=stream)] == [1, 2]
    assert result.positions == sorted(result.positions)


def test_no_stream_is_refused_when_the_stream_has_events():
    append_events(stream="user-1", events=[event()])
    with pytest.raises(WrongExpectedVersion) as refused:
        append_events(stream="user-1", events=[event()], expected_version="no_stream")
    assert refused.value.current_version == 1
    assert Event.objects.count() == 1


def test_exists_is_refused_for_a_stream_without_events():
    with pytest.raises(WrongExpectedVersion) as refused:
        append_events(stream="user-9", events=[event()], expected_version="exists")
    assert refused.value.current_version == 0
    assert not Stream.objects.exists()


def test_expected_version_n_appends_only_at_that_version():
    append_events(stream="user-1", events=[event(), event()])
    with pytest.raises(WrongExpectedVersion) as refused:
        append_events(stream="user-1", events=[event()], expected_version=1)
    assert refused.value.current_version == 2
    result = append_events(stream="user-1", events=[event()], expected_version=2)
    assert result.version == 3


def test_expected_version_zero_means_no_events_yet():
    assert append_events(stream="user-1", events=[event()], expected_version=0).version == 1
    with pytest.raises(WrongExpectedVersion):
        append_events(stream="user-1", events=[event()], expected_version=0)


def test_any_appends_whatever_the_version():
    append_events(stream="user-1", events=[event()], expected_version="any")
    assert append_events(stream="user-1", events=[event()], expected_version="any").first_sequence == 2


def test_a_batch_is_atomic_when_one_event_is_bad():
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=[event(), {"type": "Ok", "data": "not an object"}])
    assert "events[1].data" in refused.value.errors
    assert not Event.objects.exists() and not Stream.objects.exists()


def test_actor_comes_from_metadata_or_from_the_caller():
    own = {**event(), "metadata": {"actor": "alice"}}
    append_events(stream="user-1", events=[own, event()], actor="api-client")
    assert list(Event.objects.order_by("sequence").values_list("actor", flat=True)) == ["alice", "api-client"]
    assert Event.objects.get(sequence=2).metadata["actor"] == "api-client"


def test_the_callers_actor_fills_a_metadata_actor_left_null_and_keeps_the_rest():
    unnamed = {**event(), "metadata": {"actor": None, "correlation_id": str(uuid.uuid4()), "note": "x"}}
    bare = {**event(), "metadata": {}}  # an actor only from the caller
    append_events(stream="user-1", events=[unnamed, bare], actor="api-client")
    stored = [e.metadata for e in Event.objects.order_by("sequence")]
    assert stored == [{**unnamed["metadata"], "actor": "api-client"}, {"actor": "api-client"}]
    assert list(Event.objects.values_list("actor", flat=True)) == ["api-client", "api-client"]


def test_events_without_ids_are_given_distinct_ones():
    given = uuid.uuid4()
    unnamed = {"type": "UserCreated", "data": {}}
    append_events(stream="user-1", events=[unnamed, {**unnamed, "id": str(given)}, unnamed])
    ids = list(Event.objects.order_by("sequence").values_list("event_id", flat=True))
    assert ids[1] == given and len(set(ids)) == 3 and all(isinstance(i, uuid.UUID) for i in ids)


def test_a_retry_with_the_same_ids_adds_nothing_and_returns_the_original_result():
    batch = [event(), event("UserNameSet")]
    first = append_events(stream="user-1", events=batch, expected_version="no_stream")
    append_events(stream="user-1", events=[event("UserEmailSet")])
    retry = append_events(stream="user-1", events=batch, expected_version="no_stream")
    assert (retry.version, retry.first_sequence, retry.positions) == (2, 1, first.positions)
    assert retry.duplicate and not first.duplicate
    assert Event.objects.count() == 3


def test_a_retry_with_only_some_ids_recorded_is_rejected_and_writes_nothing():
    batch = [event(), event()]
    append_events(stream="user-1", events=batch[:1])
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=batch)
    assert list(refused.value.errors) == ["events[1].id"]
    assert Event.objects.count() == 1


def test_an_id_reused_with_other_data_is_rejected():
    original = event(user_id="1")
    append_events(stream="user-1", events=[original])
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=[{**original, "data": {"user_id": "2"}}])
    assert "different type or data" in refused.value.errors["events[0].id"][0]


def test_an_id_recorded_in_another_stream_is_rejected():
    original = event()
    append_events(stream="user-1", events=[original])
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-2", events=[original])
    assert "user-1" in refused.value.errors["events[0].id"][0]
    assert not Stream.objects.filter(name="user-2").exists()


def test_the_same_id_twice_in_one_batch_is_rejected():
    one = event()
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=[one, one])
    assert "repeats the id of events[0]" in refused.value.errors["events[1].id"][0]


def test_events_without_ids_get_fresh_ones():
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}] * 2)
    assert Event.objects.values("event_id").distinct().count() == 2


@pytest.mark.parametrize(
    ("stream", "field"),
    [("", "stream"), ("user 1", "stream"), ("x" * 201, "stream"), ("user/1", "stream"), ("ü-1", "stream")],
)
def test_bad_stream_names_are_refused(stream, field):
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream=stream, events=[event()])
    assert field in refused.value.errors
    assert not Event.objects.exists()


def test_the_console_category_is_refused_to_everyone_but_the_consoles_own_audit():
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="console-job.1", events=[{"type": "JobApproved", "data": {}}])
    assert refused.value.errors["stream"] == ["the console category is the console's own audit trail"]
    assert not Event.objects.exists()


@pytest.mark.parametrize("type_", ["", "1Created", "_Created", "User Created", "x" * 201, None, 5])
def test_bad_event_types_are_refused(type_):
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=[{"type": type_, "data": {}}])
    assert "events[0].type" in refused.value.errors


def test_a_batch_over_the_limit_is_refused():
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=[{"type": "E", "data": {}}] * (MAX_BATCH + 1))
    assert "at most 1000" in refused.value.errors["events"][0]
    assert not Event.objects.exists()


def test_a_batch_at_the_limit_is_accepted():
    assert append_events(stream="user-1", events=[{"type": "E", "data": {}}] * MAX_BATCH).version == MAX_BATCH


def test_an_event_over_one_mebibyte_is_refused_and_one_just_under_is_accepted():
    overhead = len('{"blob":""}') + len("E") + len("{}")
    with pytest.raises(InvalidAppend) as refused:
        append_events(
            stream="user-1", events=[{"type": "E", "data": {"blob": "x" * (MAX_EVENT_BYTES - overhead + 1)}}]
        )
    assert "1 MiB" in refused.value.errors["events[0]"][0]
    append_events(
        stream="user-1", events=[{"type": "E", "data": {"blob": "x" * (MAX_EVENT_BYTES - overhead)}}]
    )
    assert Event.objects.count() == 1


def test_strings_with_nul_are_refused_before_postgres_sees_them():
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=[{"type": "E", "data": {"name": "a\x00b"}}])
    assert "NUL" in refused.value.errors["events[0]"][0]


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"correlation_id": "nope"}, "events[0].metadata.correlation_id"),
        ({"causation_id": 7}, "events[0].metadata.causation_id"),
        ({"occurred_at": "yesterday"}, "events[0].metadata.occurred_at"),
        ({"actor": ""}, "events[0].metadata.actor"),
        ([], "events[0].metadata"),
    ],
)
def test_bad_metadata_is_refused_with_the_field_named(metadata, field):
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="user-1", events=[{"type": "E", "data": {}, "metadata": metadata}])
    assert field in refused.value.errors


CORRELATION = "3f2b8c1e-0d4a-4b6e-9a51-2f7c9d0e1a23"


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (CORRELATION, True),
        (CORRELATION.upper(), True),
        ("{" + CORRELATION + "}", True),
        (CORRELATION.replace("-", ""), True),
        ("urn:uuid:" + CORRELATION, True),
        (CORRELATION[:-1], False),
        (CORRELATION[:-1] + "g", False),
        (CORRELATION + "0", False),
        (" " + CORRELATION, False),
    ],
)
def test_a_correlation_id_is_any_form_of_a_uuid_and_nothing_else(value, accepted):
    batch = [{"type": "E", "data": {}, "metadata": {"correlation_id": value, "causation_id": value}}]
    if accepted:
        append_events(stream="user-1", events=batch)
        assert Event.objects.get().metadata["correlation_id"] == value
    else:
        with pytest.raises(InvalidAppend) as refused:
            append_events(stream="user-1", events=batch)
        assert set(refused.value.errors) == {
            "events[0].metadata.correlation_id",
            "events[0].metadata.causation_id",
        }


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="bad name", events=[{"type": "1", "data": []}], expected_version=-3)
    assert set(refused.value.errors) == {"stream", "expected_version", "events[0].type", "events[0].data"}


def stored_data(stream: str) -> list:
    return [e.data for e in read_stream(stream=Stream.objects.get(name=stream))]


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_a_number_that_is_not_finite_is_refused_wherever_it_is_and_nothing_is_written(number):
    events = [
        {"type": "E", "data": {"ok": 1}},
        {"type": "E", "data": {"total": {"lines": [1, number]}}},
        {"type": "E", "data": {}, "metadata": {"score": number}},
    ]
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="order-1", events=events)
    assert refused.value.errors == {
        "events[1]": ["numbers must be finite"],
        "events[2]": ["numbers must be finite"],
    }
    assert not Event.objects.exists()


def test_nulls_big_integers_and_any_unicode_are_stored_as_sent():
    data = [
        {"middle_name": None, "note": "null", "tags": [None, "nullable"]},
        {"id": 2**70, "negative": -(2**80), "ratio": 1e16, "tiny": 5e-324},
        {"name": "Zoë 😀", "keys": {"1": "one"}},
        {"nested": [[[{"deep": None}]]]},
    ]
    append_events(stream="order-1", events=[{"type": "E", "data": item} for item in data])
    assert stored_data("order-1") == data


def test_a_uuid_or_an_enum_member_is_stored_as_its_json_and_a_retry_of_it_is_a_retry():
    class Color(enum.Enum):
        RED = "red"

    order_id = uuid.uuid4()
    batch = [{"id": str(uuid.uuid4()), "type": "E", "data": {"order_id": order_id, "color": Color.RED}}]
    first = append_events(stream="order-1", events=batch)
    assert stored_data("order-1") == [{"order_id": str(order_id), "color": "red"}]
    again = append_events(stream="order-1", events=batch)
    assert (again.duplicate, again.positions) == (True, first.positions)


def test_a_value_json_has_no_form_for_is_refused_with_its_type_named_and_nothing_is_written():
    events = [
        {"type": "E", "data": {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}},
        {"type": "E", "data": {"amount": Decimal("1.10")}},
        {"type": "E", "data": {}, "metadata": {"seen": {1, 2}}},
    ]
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="order-1", events=events)
    errors = refused.value.errors
    assert [(where, "JSON values only" in messages[0]) for where, messages in errors.items()] == [
        ("events[0]", True),
        ("events[1]", True),
        ("events[2]", True),
    ]
    assert "datetime" in errors["events[0]"][0]
    assert "Decimal" in errors["events[1]"][0]
    assert not Event.objects.exists()
