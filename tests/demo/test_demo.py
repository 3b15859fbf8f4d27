import io
import uuid
from collections import defaultdict

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Max, Min

from demo.services import ADMINS, demo_history, load_demo
from streams.models import Event, Stream
from streams.services import append_events

SMALL = 20  # users: enough for every kind of request, quick to load

USER_TYPES = {"UserCreated", "UserNameSet", "UserEmailSet", "PermissionGranted", "PermissionRevoked"}
GROUP_TYPES = {"GroupCreated", "MemberAdded", "MemberRemoved"}


def test_full_demo_is_a_few_thousand_events_in_a_few_hundred_streams(db):
    result = load_demo()

    assert (result.users, result.groups, result.streams) == (300, 30, 330)
    assert 2000 <= result.events <= 5000
    assert result.events_added == result.events == Event.objects.count()
    assert Stream.objects.filter(category="user").count() == 300
    assert Stream.objects.filter(category="group").count() == 30
    assert set(Event.objects.values_list("type", flat=True)) == USER_TYPES | GROUP_TYPES


def test_second_load_adds_nothing(db):
    first = load_demo(users=SMALL)
    events = Event.objects.count()

    second = load_demo(users=SMALL)

    assert first.events_added == events
    assert second.events_added == 0 and second.already_loaded
    assert Event.objects.count() == events
    assert sum(Stream.objects.values_list("version", flat=True)) == events


def test_history_is_the_same_every_time():
    assert list(demo_history(users=SMALL)) == list(demo_history(users=SMALL))


def test_streams_hold_only_their_own_kind_of_event_and_start_with_a_creation(db):
    load_demo(users=SMALL)

    for stream in Stream.objects.all():
        events = list(Event.objects.filter(stream=stream).order_by("sequence"))
        assert [e.sequence for e in events] == list(range(1, stream.version + 1))
        kind, entity_id = stream.name.split("-", 1)
        if kind == "user":
            assert events[0].type == "UserCreated"
            assert events[0].data["username"] and "@" in events[0].data["email"]
            assert {e.type for e in events} <= USER_TYPES
            assert {e.data["user_id"] for e in events} == {entity_id}
        else:
            assert events[0].type == "GroupCreated"
            assert {e.type for e in events} <= GROUP_TYPES
            assert {e.data["group_id"] for e in events} == {entity_id}


def test_every_event_has_an_actor_and_request_metadata(db):
    load_demo(users=SMALL)

    requests = defaultdict(list)
    for event in Event.objects.order_by("position"):
        metadata = event.metadata
        assert metadata["actor"] in ADMINS and event.actor == metadata["actor"]
        assert metadata["occurred_at"].endswith("Z")
        requests[metadata["correlation_id"]].append(event)
    for correlation_id, events in requests.items():
        # One request: one admin, and a chain of causes starting at the request itself.
        assert len({e.actor for e in events}) == 1
        causes = [uuid.UUID(correlation_id), *(e.event_id for e in events[:-1])]
        assert [uuid.UUID(e.metadata["causation_id"]) for e in events] == causes
    assert any(len(events) > 1 for events in requests.values())
    assert any(len({e.stream_id for e in events}) > 1 for events in requests.values())


def test_permissions_are_revoked_only_after_being_granted(db):
    load_demo(users=SMALL)

    granted = set()
    changes = Event.objects.filter(type__in=["PermissionGranted", "PermissionRevoked"])
    for event in changes.order_by("position"):
        key = (event.data["user_id"], event.data["resource"], event.data["permission"])
        if event.type == "PermissionGranted":
            assert key not in granted
            granted.add(key)
        else:
            granted.remove(key)


def test_demo_command_says_what_it_loaded_and_then_that_it_is_there(db):
    first, second = io.StringIO(), io.StringIO()

    call_command("demo", stdout=first)
    call_command("demo", stdout=second)

    count = f"{Event.objects.count():,} events in 330 streams (300 users, 30 groups)"
    assert first.getvalue().startswith(f"Loaded demo data: {count}. (")
    assert second.getvalue().startswith(f"Demo data already loaded: {count}. (")


def test_demo_sizes_to_users_and_events_with_skew_and_weeks_of_history(db):
    call_command("demo", "--users", "200", "--events", "6000", stdout=io.StringIO())

    assert 6000 <= Event.objects.count() < 6100
    assert Stream.objects.filter(category="user").count() == 200
    busiest = Stream.objects.filter(category="user").order_by("-version").values_list("version", flat=True)
    assert busiest[0] > 5 * busiest[100]  # a few hot entities
    times = Event.objects.aggregate(first=Min("recorded_at"), last=Max("recorded_at"))
    assert (times["last"] - times["first"]).days >= 14
    assert Event.objects.filter(type="PermissionGranted", data__permission="admin").exists()
    assert Event.objects.values("actor").distinct().count() >= 3


def test_demo_refuses_sizes_below_one(db):
    with pytest.raises(CommandError, match="at least 1"):
        call_command("demo", "--users", "0", stdout=io.StringIO())


def test_demo_is_refused_where_a_demo_stream_has_other_events_and_nothing_is_loaded(db):
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {"user_id": "1"}}])

    with pytest.raises(CommandError, match="user-1 already has events that are not demo data"):
        call_command("demo", stdout=io.StringIO())

    assert Event.objects.count() == 1
