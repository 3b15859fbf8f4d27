"""The read side of the API: streams, a stream's events, the global log, one event."""

import uuid

import pytest

from streams.models import Event
from streams.services import append_events
from tests.streams.test_api_append import assert_problem


def add(stream, *types, actor="", **data):
    return append_events(
        stream=stream, events=[{"type": t, "data": dict(data)} for t in types], actor=actor or "loader"
    )


@pytest.fixture
def users_and_groups(db):
    for n in range(1, 6):
        add(f"user-{n}", "UserCreated", "UserNameSet", user_id=str(n))
    add("group-admins", "GroupCreated", group_id="admins")
    add("group-admins", "MemberAdded", group_id="admins", user_id="1")


# --- GET /api/v1/streams


def test_streams_are_listed_by_name_with_version(api, users_and_groups):
    page = api.get("/api/v1/streams").json()
    assert [s["name"] for s in page["results"]] == ["group-admins"] + [f"user-{n}" for n in range(1, 6)]
    assert page["results"][0] | {"created_at": None, "updated_at": None} == {
        "name": "group-admins",
        "category": "group",
        "version": 2,
        "source": None,
        "created_at": None,
        "updated_at": None,
    }
    assert page["next"] is None


def test_streams_filter_by_prefix_and_category(api, users_and_groups):
    by_prefix = api.get("/api/v1/streams", {"prefix": "user-"}).json()["results"]
    assert len(by_prefix) == 5
    by_category = api.get("/api/v1/streams", {"category": "group"}).json()["results"]
    assert [s["name"] for s in by_category] == ["group-admins"]
    assert api.get("/api/v1/streams", {"prefix": "user-1"}).json()["results"][0]["name"] == "user-1"


def test_streams_are_keyset_paged_without_gaps_or_repeats(api, users_and_groups):
    names, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/streams", params).json()
        names += [s["name"] for s in page["results"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert names == ["group-admins"] + [f"user-{n}" for n in range(1, 6)]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"pefix": "u"}, "pefix"),
    ],
)
def test_streams_bad_parameters_are_400(api, db, params, field):
    assert_problem(api.get("/api/v1/streams", params), 400, field)


# --- GET /api/v1/streams/{stream}


def test_stream_detail_has_version_times_and_etag(api, users_and_groups):
    response = api.get("/api/v1/streams/group-admins")
    detail = response.json()
    assert (detail["name"], detail["category"], detail["version"]) == ("group-admins", "group", 2)
    events = Event.objects.filter(stream__name="group-admins").order_by("sequence")
    assert detail["first_recorded_at"].startswith(events[0].recorded_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert detail["last_recorded_at"] >= detail["first_recorded_at"]
    assert response["ETag"] == '"2"'


def test_an_unknown_stream_is_a_problem_404(api, db):
    assert_problem(api.get("/api/v1/streams/user-404"), 404)
    assert_problem(api.get("/api/v1/streams/user-404/events"), 404)


def test_a_bad_stream_name_in_a_read_is_400(api, db):
    assert_problem(api.get("/api/v1/streams/user%20one"), 400, "stream")


# --- GET /api/v1/streams/{stream}/events


@pytest.fixture
def long_stream(db):
    append_events(stream="order-7", events=[{"type": "LineAdded", "data": {"line": n}} for n in range(1, 11)])


def sequences(response):
    return [e["sequence"] for e in response.json()["results"]]


def test_a_stream_reads_forward_from_a_sequence(api, long_stream):
    response = api.get("/api/v1/streams/order-7/events", {"from_sequence": 4, "limit": 3})
    assert sequences(response) == [4, 5, 6]
    assert response.json()["next"] == "7"
    assert response["ETag"] == '"10"'
    event = response.json()["results"][0]
    assert set(event) == {
        "id",
        "stream",
        "sequence",
        "position",
        "type",
        "data",
        "metadata",
        "actor",
        "appended_by",
        "appended_via",
        "recorded_at",
    }
    assert (event["stream"], event["type"], event["data"]) == ("order-7", "LineAdded", {"line": 4})


def test_a_stream_reads_backward_and_pages_to_the_start(api, long_stream):
    seen, cursor = [], None
    while True:
        params = {"direction": "backward", "limit": 4} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/streams/order-7/events", params)
        seen += sequences(page)
        cursor = page.json()["next"]
        if cursor is None:
            break
    assert seen == list(range(10, 0, -1))


def test_a_stream_read_past_the_end_is_empty(api, long_stream):
    page = api.get("/api/v1/streams/order-7/events", {"from_sequence": 11}).json()
    assert page == {"results": [], "next": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"from_sequence": -1}, "from_sequence"),
        ({"from_sequence": "x"}, "from_sequence"),
        ({"limit": 5000}, "limit"),
        ({"after_position": 3}, "after_position"),
    ],
)
def test_a_stream_read_with_bad_parameters_is_400(api, long_stream, params, field):
    assert_problem(api.get("/api/v1/streams/order-7/events", params), 400, field)


# --- GET /api/v1/events


def test_the_global_log_is_in_position_order_after_a_position(api, users_and_groups):
    everything = api.get("/api/v1/events").json()["results"]
    positions = [e["position"] for e in everything]
    assert positions == sorted(positions) and len(positions) == 12
    later = api.get("/api/v1/events", {"after_position": positions[5]}).json()["results"]
    assert [e["position"] for e in later] == positions[6:]


def test_the_global_log_pages_with_next(api, users_and_groups):
    seen, cursor = [], None
    while True:
        params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/events", params).json()
        seen += [e["position"] for e in page["results"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == sorted(Event.objects.values_list("position", flat=True))


def test_the_global_log_filters_by_type_actor_category_and_stream(api, db):
    add("user-1", "UserCreated", actor="alice", user_id="1")
    add("user-2", "UserCreated", "UserEmailSet", actor="bob", user_id="2")
    add("group-ops", "GroupCreated", actor="alice", group_id="ops")

    def types(**params):
        return [(e["stream"], e["type"]) for e in api.get("/api/v1/events", params).json()["results"]]

    assert types(type="UserCreated") == [("user-1", "UserCreated"), ("user-2", "UserCreated")]
    assert types(type="UserEmailSet,GroupCreated") == [
        ("user-2", "UserEmailSet"),
        ("group-ops", "GroupCreated"),
    ]
    assert types(actor="alice") == [("user-1", "UserCreated"), ("group-ops", "GroupCreated")]
    assert types(category="group") == [("group-ops", "GroupCreated")]
    assert types(stream="user-2") == [("user-2", "UserCreated"), ("user-2", "UserEmailSet")]
    assert types(category="user", actor="bob", type="UserEmailSet") == [("user-2", "UserEmailSet")]


def test_the_global_log_filters_by_data_containment(api, db):
    append_events(
        stream="user-1",
        events=[
            {
                "type": "PermissionGranted",
                "data": {"resource": "issueABC", "permission": "write", "level": 2},
            },
            {
                "type": "PermissionGranted",
                "data": {"resource": "issueXYZ", "permission": "write", "level": 3},
            },
            {"type": "Moved", "data": {"to": {"team": "core"}}},
        ],
    )

    def matching(**params):
        return [e["sequence"] for e in api.get("/api/v1/events", params).json()["results"]]

    assert matching(**{"data.resource": "issueABC"}) == [1]
    assert matching(**{"data.permission": "write"}) == [1, 2]
    assert matching(**{"data.permission": "write", "data.resource": "issueXYZ"}) == [2]
    assert matching(**{"data.level": "3"}) == [2]
    assert matching(**{"data.to.team": "core"}) == [3]
    assert matching(**{"data.resource": "nothing"}) == []


def test_the_global_log_filters_by_correlation_id(api, db):
    request_id = str(uuid.uuid4())
    for stream in ("user-1", "user-2", "group-ops"):
        metadata = {"correlation_id": request_id} if stream != "user-2" else {}
        append_events(stream=stream, events=[{"type": "Changed", "data": {}, "metadata": metadata}])
    found = api.get("/api/v1/events", {"correlation_id": request_id}).json()["results"]
    assert [e["stream"] for e in found] == ["user-1", "group-ops"]
    assert_problem(api.get("/api/v1/events", {"correlation_id": "abc"}), 400, "correlation_id")


def test_the_global_log_filters_by_time(api, db):
    add("user-1", "UserCreated")
    first = Event.objects.get()
    add("user-2", "UserCreated")
    second = Event.objects.exclude(pk=first.pk).get()
    Event.objects.filter(pk=first.pk).update(recorded_at="2026-01-01T10:00:00Z")
    Event.objects.filter(pk=second.pk).update(recorded_at="2026-01-02T10:00:00Z")

    def streams(**params):
        return [e["stream"] for e in api.get("/api/v1/events", params).json()["results"]]

    assert streams(recorded_after="2026-01-02") == ["user-2"]
    assert streams(recorded_before="2026-01-01T12:00:00Z") == ["user-1"]
    assert streams(recorded_after="2026-01-01T09:00:00+00:00", recorded_before="2026-01-03") == [
        "user-1",
        "user-2",
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after_position": -5}, "after_position"),
        ({"after_position": "last"}, "after_position"),
        ({"type": "1bad"}, "type"),
        ({"recorded_after": "yesterday"}, "recorded_after"),
        ({"stream": "bad name"}, "stream"),
        ({"data.": "x"}, "data."),
        ({"data..a": "x"}, "data..a"),
        ({"typ": "UserCreated"}, "typ"),
    ],
)
def test_the_global_log_with_bad_parameters_is_400(api, db, params, field):
    assert_problem(api.get("/api/v1/events", params), 400, field)


def test_a_time_range_that_ends_before_it_starts_is_422(api, db):
    params = {"recorded_after": "2026-02-01", "recorded_before": "2026-01-01"}
    assert_problem(api.get("/api/v1/events", params), 422, "recorded_before")


# --- GET /api/v1/events/{id}


def test_one_event_by_id(api, db):
    event_id = uuid.uuid4()
    append_events(
        stream="user-1",
        events=[
            {
                "id": str(event_id),
                "type": "UserCreated",
                "data": {"user_id": "1"},
                "metadata": {"actor": "ann"},
            }
        ],
    )
    event = api.get(f"/api/v1/events/{event_id}").json()
    assert (event["id"], event["stream"], event["sequence"], event["actor"]) == (
        str(event_id),
        "user-1",
        1,
        "ann",
    )
    assert event["metadata"] == {"actor": "ann"}


def test_an_unknown_event_is_404_and_a_bad_id_is_400(api, db):
    assert_problem(api.get(f"/api/v1/events/{uuid.uuid4()}"), 404)
    assert_problem(api.get("/api/v1/events/not-a-uuid"), 400, "id")


@pytest.mark.parametrize(
    "url", ["/api/v1/streams", "/api/v1/streams/user-1", "/api/v1/streams/user-1/events", "/api/v1/events"]
)
def test_reads_need_authentication(anonymous_api, db, url):
    assert_problem(anonymous_api.get(url), 401)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_events_cannot_be_changed_or_deleted(api, db, method):
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}])
    event_id = Event.objects.get().event_id
    assert_problem(getattr(api, method)(f"/api/v1/events/{event_id}"), 405)
    assert_problem(getattr(api, method)("/api/v1/streams/user-1/events"), 405)
    assert Event.objects.count() == 1


def test_an_event_is_written_out_as_its_declared_fields_say(db):
    from django.utils import timezone
    from rest_framework import serializers

    from streams.api import EventOut

    append_events(
        stream="user-7",
        events=[
            {"type": "UserNameSet", "data": {"n": 1.5, "s": "é", "l": [None, True]}, "metadata": {"k": "v"}}
        ],
        actor="svc",
    )
    event = Event.objects.select_related("stream").get()
    event.recorded_at = event.recorded_at.replace(microsecond=123456)
    with timezone.override("Europe/Paris"):
        fast = EventOut(event).data
        # DRF's own path, field by field, from the same declarations.
        generic = serializers.Serializer.to_representation(EventOut(), event)

    assert fast == dict(generic)
    assert list(fast) == [
        "id",
        "stream",
        "sequence",
        "position",
        "type",
        "data",
        "metadata",
        "actor",
        "appended_by",
        "appended_via",
        "recorded_at",
    ]
