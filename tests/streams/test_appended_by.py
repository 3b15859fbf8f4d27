"""Every event records who the store authenticated as appending it (appended_by, appended_via), apart
from the actor it claims (metadata.actor): an operator cannot pass their appends off as someone else's."""

import getpass
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection
from pytest_django.asserts import assertContains

from core import principals
from streams.models import Event
from streams.services import ImportBatch, append_events, import_events


def append_as_someone_else(api) -> Event:
    response = api.post(
        "/api/v1/streams/user-9/events",
        {
            "events": [
                {"type": "EmailChanged", "data": {"user_id": "9"}, "metadata": {"actor": "someone-else"}}
            ]
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return Event.objects.get(position=response.json()["positions"][0])


def test_an_operator_appending_in_another_name_is_recorded_as_the_operator(api):
    event = append_as_someone_else(api)

    assert (event.actor, event.metadata["actor"]) == ("someone-else", "someone-else")
    assert (event.appended_by, event.appended_via) == ("user:olivia", "token")
    body = api.get(f"/api/v1/events/{event.event_id}").json()
    assert (body["actor"], body["appended_by"], body["appended_via"]) == (
        "someone-else",
        "user:olivia",
        "token",
    )


def test_an_append_through_a_signed_in_session_says_so(browser_client):
    response = browser_client.post(
        "/api/v1/streams/user-9/events",
        {"events": [{"type": "EmailChanged", "data": {}}]},
        content_type="application/json",
    )

    assert response.status_code == 201
    event = Event.objects.get(stream__name="user-9")
    assert (event.actor, event.appended_by, event.appended_via) == ("olivia", "user:olivia", "session")


def test_nothing_a_request_sends_says_who_appended(api):
    url, event = "/api/v1/streams/user-9/events", {"type": "EmailChanged", "data": {}}
    claims = {"appended_by": "user:avery", "appended_via": "session"}

    in_body = api.post(url, {"events": [event], **claims}, format="json")
    in_event = api.post(url, {"events": [{**event, **claims}]}, format="json")

    assert in_body.status_code == 400 and set(in_body.json()["errors"]) == set(claims)
    assert in_event.status_code == 400
    assert "unknown field(s) appended_by, appended_via" in in_event.json()["errors"]["events[0]"][0]
    assert not Event.objects.exists()

    in_metadata = api.post(url, {"events": [{**event, "metadata": claims}]}, format="json")

    assert in_metadata.status_code == 201
    recorded = Event.objects.get()
    # Kept as what it is: metadata the application sent.
    assert recorded.metadata == {**claims, "actor": "olivia"}
    assert (recorded.appended_by, recorded.appended_via) == ("user:olivia", "token")


def test_the_log_filters_by_the_claimed_actor_or_by_who_appended(api):
    mine = append_as_someone_else(api)
    with principals.acting_as(principals.system("importer")):
        append_events(stream="user-9", events=[{"type": "EmailChanged", "data": {}}], actor="someone-else")

    def found(**params) -> list[str]:
        response = api.get("/api/v1/events", params)
        assert response.status_code == 200, response.json()
        return [event["appended_by"] for event in response.json()["results"]]

    assert found(actor="someone-else") == ["user:olivia", "system:importer"]
    assert found(appended_by="user:olivia") == ["user:olivia"]
    assert found(appended_by="user:olivia", actor="someone-else")[0] == "user:olivia"
    assert found(appended_by="user:someone-else") == []
    assert mine.appended_by == "user:olivia"


def test_a_filter_that_is_no_principal_is_a_clear_400(api):
    response = api.get("/api/v1/events", {"appended_by": "olivia"})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    message = response.json()["errors"]["appended_by"][0]
    assert "user:NAME, cli:NAME, system:NAME or anonymous" in message


def test_audit_search_finds_it_by_either_and_shows_both(api, support_agent, client):
    event = append_as_someone_else(api)
    with principals.acting_as(principals.system("importer")):
        append_events(stream="user-9", events=[{"type": "EmailChanged", "data": {}}], actor="someone-else")
    client.force_login(support_agent)

    def positions(q: str) -> list[int]:
        response = api.get("/api/v1/audit/search", {"q": q})
        assert response.status_code == 200, response.json()
        return [found["position"] for found in response.json()["results"]]

    assert event.position in positions("actor:someone-else")
    assert positions("appended_by:user:olivia") == [event.position]
    # A bare name finds what that user appended in another's name too.
    assert positions("olivia") == [event.position]
    page = client.get("/audit/", {"q": "appended_by:user:olivia"})
    assertContains(
        page,
        'someone-else <span class="appender">appended by <code>user:olivia</code> '
        '<span class="muted">(token)</span></span>',
    )
    export = client.get("/audit/export.json", {"q": "appended_by:user:olivia"})
    [exported] = json.loads(b"".join(export.streaming_content))["results"]
    assert (exported["actor"], exported["appended_by"], exported["appended_via"]) == (
        "someone-else",
        "user:olivia",
        "token",
    )


def test_audit_search_refuses_an_appended_by_term_that_is_no_principal(client, support_agent):
    client.force_login(support_agent)

    page = client.get("/audit/", {"q": "appended_by:olivia"})

    assert page.status_code == 400
    assertContains(page, "user:NAME, cli:NAME, system:NAME or anonymous", status_code=400)


def test_the_event_page_shows_who_appended_and_unknown_for_older_events(api, browser_client):
    event = append_as_someone_else(api)
    older = append_as_someone_else(api)
    # As migration 0007 leaves the events recorded before it.
    Event.objects.filter(position=older.position).update(appended_by=None, appended_via=None)

    page = browser_client.get(f"/events/{event.event_id}/")
    before = browser_client.get(f"/events/{older.event_id}/")

    assertContains(page, "<dt>Appended by</dt>")
    assertContains(page, '<code>user:olivia</code> <span class="muted">(token)</span>')
    assertContains(before, "unknown: recorded before appenders were")
    assert api.get(f"/api/v1/events/{older.event_id}").json()["appended_by"] is None


def test_an_import_records_who_is_acting(db):
    with principals.acting_as(principals.system("migration")):
        result = import_events(
            batches=[
                ImportBatch(
                    stream="user-1", events=[{"type": "UserCreated", "data": {}, "metadata": {"actor": "x"}}]
                ),
                ImportBatch(stream="user-2", events=[{"type": "UserCreated", "data": {}}]),
            ]
        )

    assert result.events == 2
    assert sorted(Event.objects.values_list("actor", "appended_by", "appended_via")) == [
        ("", "system:migration", None),
        ("x", "system:migration", None),
    ]


def test_with_nobody_acting_nothing_is_appended_or_imported(db, monkeypatch):
    monkeypatch.setattr(principals, "_process", None)
    event = {"type": "UserCreated", "data": {}}

    with pytest.raises(principals.NobodyActing):
        append_events(stream="user-1", events=[event])
    with pytest.raises(principals.NobodyActing):
        import_events(batches=[ImportBatch(stream="user-1", events=[event])])

    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_command_line_records_who_runs_it_for_appends_and_the_demo_import():
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"])),
    }
    replaydesk = str(Path(sys.executable).with_name("replaydesk"))

    for argv in (
        ["append", "order-1", "OrderPlaced", "--actor", "ops"],
        ["demo", "--users", "3", "--events", "12"],
    ):
        done = subprocess.run([replaydesk, *argv], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    me = f"cli:{getpass.getuser()}"
    appended = Event.objects.get(stream__name="order-1")
    assert (appended.actor, appended.appended_by, appended.appended_via) == ("ops", me, None)
    imported = Event.objects.exclude(stream__name="order-1")
    assert imported.count() >= 12
    assert set(imported.values_list("appended_by", flat=True)) == {me}


def test_a_retry_keeps_the_first_appender(api):
    event_id = str(uuid.uuid4())
    with principals.acting_as(principals.system("importer")):
        append_events(stream="user-9", events=[{"id": event_id, "type": "EmailChanged", "data": {}}])

    retry = api.post(
        "/api/v1/streams/user-9/events",
        {"events": [{"id": event_id, "type": "EmailChanged", "data": {}}]},
        format="json",
    )

    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert Event.objects.get().appended_by == "system:importer"


def test_tail_filters_by_who_appended_and_refuses_what_is_no_principal(db):
    from django.core.management import CommandError, call_command

    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}], actor="olivia")
    with principals.acting_as(principals.user("olivia", via=principals.TOKEN)):
        append_events(stream="user-2", events=[{"type": "UserCreated", "data": {}}], actor="someone-else")
    out = io.StringIO()

    call_command("tail", "--appended-by", "user:olivia", stdout=out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["stream"], e["actor"], e["appended_by"]) for e in lines] == [
        ("user-2", "someone-else", "user:olivia")
    ]
    with pytest.raises(CommandError, match="--appended-by: names who appended"):
        call_command("tail", "--appended-by", "olivia", stdout=io.StringIO())
