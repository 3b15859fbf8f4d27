"""Appends NOTIFY on commit, so that consumers wake at once instead of polling."""

import psycopg
import pytest
from django.db import connection, transaction

from streams.selectors import head
from streams.services import NOTIFY_CHANNEL, append_events

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def listener():
    params = connection.get_connection_params()
    with psycopg.connect(
        **{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True
    ) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield conn


def test_a_committed_append_notifies_its_last_position(listener):
    result = append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}] * 3)
    notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [note.payload for note in notes] == [str(result.last_position)]
    assert head() == result.last_position


def test_a_rolled_back_append_notifies_nobody(listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}])
        raise RuntimeError("the caller's transaction fails after the append")
    assert list(listener.notifies(timeout=0.5)) == []
    assert head() == 0
