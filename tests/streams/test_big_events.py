"""A log of big events (1 MiB each, the most an event may be) is read without big responses or big
memory: API lists stop at REPLAYDESK_READ_MAX_BYTES and give `next`, pages show big values clipped
with a link to the whole event, and exports stream."""

from __future__ import annotations

import gc
import string
import tracemalloc

import pytest

from streams.services import append_events

MIB = 1024 * 1024
EVENTS = 50
STREAM = "blob-1"
# What a read may add to a process's memory, whatever the log holds.
MEMORY_BOUND = 50 * MIB
# A page of events: its rows and their clipped data, never the events whole.
PAGE_BOUND = 1 * MIB

pytestmark = pytest.mark.django_db


def text(size: int) -> str:
    return (string.ascii_letters * (size // len(string.ascii_letters) + 1))[:size]


def blob(n: int, size: int = MIB - 1000) -> dict:
    return {
        "type": "BlobStored",
        "data": {"n": n, "email": f"user{n}@example.com", "blob": text(size)},
    }


@pytest.fixture
def big_log() -> None:
    for first in range(0, EVENTS, 10):
        append_events(stream=STREAM, events=[blob(n) for n in range(first, first + 10)])


def measured(call):
    """What `call` returns, and the most memory it held at once above where it started."""
    gc.collect()
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, peak


def read_all_pages(api, url: str, params: dict, settings) -> list[dict]:
    """Every page of an API list, following `next`; each response within the byte bound and the memory
    bound."""
    seen: list[dict] = []
    cursor = None
    while True:
        query = {**params, "cursor": cursor} if cursor else params
        response, peak = measured(lambda query=query: api.get(url, query))
        assert response.status_code == 200, response.content[:500]
        assert len(response.content) <= settings.REPLAYDESK_READ_MAX_BYTES
        assert peak < MEMORY_BOUND, f"{peak / MIB:.0f} MiB"
        body = response.json()
        assert body["results"], "every page holds at least one event"
        seen.extend(body["results"])
        cursor = body["next"]
        if cursor is None:
            return seen


def test_the_log_is_read_over_the_api_in_pages_within_the_byte_bound(api, big_log, settings):
    events = read_all_pages(api, "/api/v1/events", {"limit": 1000}, settings)
    assert [event["data"]["n"] for event in events] == list(range(EVENTS))
    assert events[0]["data"]["email"].startswith("•••"), "personal data stays masked"


def test_a_stream_is_read_forward_and_backward_within_the_byte_bound(api, big_log, settings):
    url = f"/api/v1/streams/{STREAM}/events"
    forward = read_all_pages(api, url, {"limit": 1000}, settings)
    assert [event["sequence"] for event in forward] == list(range(1, EVENTS + 1))
    backward = read_all_pages(api, url, {"limit": 1000, "direction": "backward"}, settings)
    assert [event["sequence"] for event in backward] == list(range(EVENTS, 0, -1))


def test_an_audit_search_is_read_within_the_byte_bound(api, big_log, settings):
    events = read_all_pages(api, "/api/v1/audit/search", {"q": STREAM, "limit": 1000}, settings)
    assert [event["data"]["n"] for event in events] == list(range(EVENTS - 1, -1, -1))


def test_an_event_bigger_than_the_bound_is_a_page_of_its_own(api, big_log, settings):
    settings.REPLAYDESK_READ_MAX_BYTES = 100_000
    first = api.get("/api/v1/events", {"limit": 10}).json()
    assert len(first["results"]) == 1 and first["next"] == str(first["results"][0]["position"])


def test_text_that_the_api_escapes_is_measured_as_sent(api, settings):
    # "é" is two bytes as stored and six (\u00e9) as the API writes it.
    append_events(stream="accents-1", events=[{"type": "Noted", "data": {"text": "é" * 100_000}}] * 5)
    settings.REPLAYDESK_READ_MAX_BYTES = 1_000_000
    response = api.get("/api/v1/streams/accents-1/events")
    assert len(response.content) <= 1_000_000
    assert len(response.json()["results"]) == 1 and response.json()["next"] == "2"


PAGES = [
    f"/events/?stream={STREAM}",
    f"/events/?stream={STREAM}&after=0",
    f"/streams/{STREAM}/",
    f"/streams/{STREAM}/?after=0",
    f"/audit/?q={STREAM}",
]


@pytest.mark.parametrize("url", PAGES)
def test_pages_of_big_events_show_them_clipped_with_a_link_to_the_whole_event(browser_client, big_log, url):
    response, peak = measured(lambda: browser_client.get(url))
    assert response.status_code == 200
    assert peak < MEMORY_BOUND, f"{peak / MIB:.0f} MiB"
    page = response.content.decode()
    assert len(response.content) < PAGE_BOUND, f"{len(response.content) / MIB:.1f} MiB"
    assert page.count('class="event') == EVENTS
    assert page.count("Only the start is shown: the data is 1023.1\xa0KB") == EVENTS
    assert 'href="/events/' in page


def test_the_stream_pages_state_clips_big_values(browser_client, big_log):
    response = browser_client.get(f"/streams/{STREAM}/", {"sequence": EVENTS})
    assert response.status_code == 200 and len(response.content) < PAGE_BOUND
    assert "abcdefgh" in response.content.decode() and "…" in response.content.decode()


def test_an_event_s_own_page_shows_it_whole(browser_client, big_log):
    event_id = browser_client.get(f"/api/v1/streams/{STREAM}/events", {"limit": 1}).json()["results"][0]["id"]
    page = browser_client.get(f"/events/{event_id}/").content.decode()
    assert page.count("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") > 10_000


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_of_big_events_streams(browser_client, big_log, fmt):
    def export():
        response = browser_client.get(f"/audit/export.{fmt}", {"q": STREAM})
        total, rows, tail = 0, 0, b""
        for chunk in response.streaming_content:
            total += len(chunk)
            rows += chunk.count(b"BlobStored")
            tail = chunk[-200:]
        return response.status_code, total, rows, tail

    (status, total, rows, tail), peak = measured(export)
    assert status == 200 and rows == EVENTS and total > EVENTS * (MIB - 1000)
    assert peak < MEMORY_BOUND, f"{peak / MIB:.0f} MiB"
    if fmt == "json":
        assert tail.rstrip().endswith(b'"truncated": false}')
