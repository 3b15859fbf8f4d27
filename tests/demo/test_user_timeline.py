"""The demo's own fold of a user stream: the stream page's timeline reads grants and revokes as such."""

import pytest

from streams.models import Stream
from streams.services import append_events
from streams.timeline import state_as_of, steps

pytestmark = pytest.mark.django_db


def test_a_users_timeline_shows_permissions_held_per_resource_and_what_each_event_changed():
    def emit(event_type, **data):
        append_events(stream="user-7", events=[{"type": event_type, "data": {"user_id": "7", **data}}])

    emit("UserCreated", username="u7", name="Ana", email="ana@example.com")
    emit("PermissionGranted", resource="issueABC", permission="write")
    emit("PermissionGranted", resource="issueXYZ", permission="read")
    emit("PermissionRevoked", resource="issueABC", permission="write")
    stream = Stream.objects.get(name="user-7")

    changes = [[(c.field, c.after) for c in step.changes] for step in steps(stream=stream, masked=False)]
    assert ("permissions.issueABC", ["write"]) in changes[1]
    assert [f for f, _ in changes[2]] == ["permissions.issueXYZ"]  # not "resource: issueABC → issueXYZ"
    assert [f for f, _ in changes[3]] == ["permissions.issueABC"]

    as_of = state_as_of(stream=stream, masked=False, sequence=3)
    assert as_of.fold == "users_directory"
    assert as_of.state["permissions"] == {"issueABC": ["write"], "issueXYZ": ["read"]}
    assert state_as_of(stream=stream, masked=False, sequence=4).state["permissions"] == {"issueXYZ": ["read"]}
    assert state_as_of(stream=stream, masked=True, sequence=1).state["email"] != "ana@example.com"
