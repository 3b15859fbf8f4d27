"""`replaydesk append` and `replaydesk tail`."""

import io
import json
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from streams.models import Event
from streams.services import append_events


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_append_writes_one_event_and_prints_the_result():
    result = json.loads(
        run("append", "user-1", "UserCreated", "--data", '{"user_id": "1"}', "--actor", "ops")
    )
    assert (result["stream"], result["version"]) == ("user-1", 1)
    event = Event.objects.get()
    assert (event.type, event.data, event.actor) == ("UserCreated", {"user_id": "1"}, "ops")


@pytest.mark.django_db
def test_append_reads_a_batch_from_a_file(tmp_path):
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"type": "A", "data": {}}, {"type": "B", "data": {"x": 1}}]))
    assert (
        json.loads(run("append", "order-1", "--batch", str(batch), "--expected-version", "no_stream"))[
            "version"
        ]
        == 2
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["user-1", "UserCreated", "--data", "{oops"], "--data is not valid JSON"),
        (["user-1", "1bad"], "events[0].type"),
        (["user 1", "UserCreated"], "stream"),
        (["user-1"], "give an event TYPE"),
        (["user-1", "UserCreated", "--expected-version", "7"], "is at version 0"),
        (["console-job.1", "JobApproved"], "the console's own audit trail"),
    ],
)
def test_append_refuses_bad_input_clearly_and_writes_nothing(args, message):
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run("append", *args)
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_tail_prints_the_log_after_a_position_with_filters():
    first = append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}])
    append_events(stream="group-1", events=[{"type": "GroupCreated", "data": {}}])
    append_events(stream="user-2", events=[{"type": "UserCreated", "data": {}}])
    lines = [json.loads(line) for line in run("tail").splitlines()]
    assert [e["stream"] for e in lines] == ["user-1", "group-1", "user-2"]
    after = [
        json.loads(line)["stream"] for line in run("tail", "--after", str(first.last_position)).splitlines()
    ]
    assert after == ["group-1", "user-2"]
    users = [json.loads(line)["stream"] for line in run("tail", "--category", "user").splitlines()]
    assert users == ["user-1", "user-2"]


@pytest.mark.django_db(transaction=True)
def test_tail_follow_prints_events_appended_while_it_waits():
    output = io.StringIO()

    def follow():
        call_command("tail", "--follow", "--max-events", "2", stdout=output)
        connection.close()

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.5)
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}])
    append_events(stream="user-1", events=[{"type": "UserNameSet", "data": {}}])
    thread.join(15)
    assert not thread.is_alive()
    assert [json.loads(line)["type"] for line in output.getvalue().splitlines()] == [
        "UserCreated",
        "UserNameSet",
    ]


@pytest.mark.django_db
def test_lag_shows_each_consumer_and_its_lag():
    from streams.consumers import ensure_projection, run_projection
    from streams.projections import get_projection

    ensure_projection(get_projection("users_directory"))
    ensure_projection(get_projection("access"))
    append_events(
        stream="user-1",
        events=[
            {
                "type": "UserCreated",
                "data": {"user_id": "1", "username": "a", "name": "A", "email": "a@x.org"},
            }
        ],
    )
    run_projection("access")
    lines = run("lag").splitlines()
    assert lines[0].split() == [
        "consumer",
        "kind",
        "health",
        "checkpoint",
        "head",
        "lag",
        "lag",
        "s",
        "rate/s",
    ]
    access = next(line.split() for line in lines if line.startswith("access"))
    users = next(line.split() for line in lines if line.startswith("users_directory"))
    assert access[5] == "0" and users[5] == "1"
    as_json = [json.loads(line) for line in run("lag", "--json").splitlines()]
    assert {(s["name"], s["lag_events"]) for s in as_json} == {("access", 0), ("users_directory", 1)}


@pytest.mark.django_db
def test_lag_says_when_there_are_no_consumers():
    assert "No consumers yet" in run("lag")
