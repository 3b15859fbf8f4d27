"""The demo's downstream search index, fed by a real webhook sink over HTTP."""

import json

import pytest

from demo import search_index
from demo.models import SearchDocument
from streams.models import Consumer
from streams.services import append_events
from streams.sinks import run_sink

pytestmark = pytest.mark.django_db(transaction=True)


def create_user(uid, name):
    event = {
        "type": "UserCreated",
        "data": {"user_id": uid, "username": f"u{uid}", "name": name, "email": f"u{uid}@example.org"},
    }
    append_events(stream=f"user-{uid}", events=[event])


def run_until_caught_up():
    for _ in range(20):
        if run_sink(search_index.SINK_NAME).caught_up:
            return
    raise AssertionError("the sink did not catch up")


def test_the_sink_feeds_the_index_and_a_full_redelivery_takes_effect_once(live_server):
    search_index.ensure_sink(base_url=live_server.url)
    create_user("1", "Ada Lovelace")
    create_user("2", "Alan Turing")
    append_events(
        stream="user-2", events=[{"type": "UserNameSet", "data": {"user_id": "2", "name": "A. M. Turing"}}]
    )
    append_events(stream="group-x", events=[{"type": "GroupCreated", "data": {"group_id": "x", "name": "X"}}])
    run_until_caught_up()
    assert dict(SearchDocument.objects.values_list("user_id", "name")) == {
        "1": "Ada Lovelace",
        "2": "A. M. Turing",
    }

    # The downstream is wrongly changed, then everything is sent again from the start (a resync):
    SearchDocument.objects.filter(user_id="1").update(name="wrong")
    Consumer.objects.filter(name=search_index.SINK_NAME).update(position=0)
    run_until_caught_up()
    # Redelivered events were already taken in, so they change nothing: dedupe by event id.
    assert SearchDocument.objects.get(user_id="1").name == "wrong"


def test_a_delivery_without_the_right_signature_is_refused(client, live_server):
    search_index.ensure_sink(base_url=live_server.url)
    body = json.dumps({"events": []})
    response = client.post(
        search_index.PATH, body, content_type="application/json", HTTP_X_REPLAYDESK_SIGNATURE="sha256=00"
    )
    assert response.status_code == 401


def test_the_sink_follows_the_port_it_is_served_on(live_server):
    search_index.ensure_sink(base_url="http://127.0.0.1:1")
    sink = search_index.ensure_sink(base_url=live_server.url)
    sink.refresh_from_db()
    assert sink.url == live_server.url + search_index.PATH


def test_the_search_page_finds_people_by_name_or_email(browser_client, live_server):
    search_index.ensure_sink(base_url=live_server.url)
    create_user("1", "Grace Hopper")
    run_until_caught_up()
    page = browser_client.get("/demo/search/", {"q": "hopper"}).content.decode()
    assert "Grace Hopper" in page and "u1@example.org" in page
    assert "Nobody matches" in browser_client.get("/demo/search/", {"q": "nobody"}).content.decode()
