"""The API's reads served as JSON text written by PostgreSQL (streams/event_json.py) say, once parsed,
exactly what the events as objects rendered by EventOut say: the same keys in the same order, the same
values, masked the same, cut by the byte bound at the same event, with the same `next`."""

from __future__ import annotations

import json

import pytest
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIClient

from streams import event_json, selectors
from streams.api import bounded_results
from streams.masking import mask_value
from streams.models import Event
from streams.services import append_events
from tests.conftest import bearer_token

pytestmark = pytest.mark.django_db

TRICKY = [
    {"text": "é à ü ß 中文 😀 \u2028 \u2029 \x7f", "é": "key not in ASCII"},
    {"quotes": 'say "hi"', "backslash": "a\\b\\\\c", "controls": "line\nnext\ttab\r\x01\x1f\b\f"},
    {"nested": {"a": [1, [2, [3, {"b": None}]]], "empty": {}, "list": []}},
    {"big": 123456789012345678901234567890, "negative": -42, "float": 1.5, "small": 1e-7, "tenth": 0.1},
    {"huge": 1e300, "zero": 0, "minus_zero": -0.0, "exp": 2.5e20},
    {"null": None, "true": True, "false": False, "string_null": "null"},
    {"email": "ann@example.com", "name": "Ann Lee", "keep": "not personal"},
    {"email": None, "name": {"first": "Ann", "last": "Lee"}},
    {"email": 12345, "name": ["Ann", "Lee"]},
    {"email": "ünïcode@example.com", "name": 'O"Brien \\ née'},
]


@pytest.fixture
def tricky(db):
    append_events(
        stream="tricky-1",
        events=[
            {"type": "Noted", "data": data, "metadata": {"ip": "10.0.0.5", "note": "ï\n", "n": n}}
            for n, data in enumerate(TRICKY)
        ],
        actor='svc "quoted" ü',
    )


def as_objects(events: selectors.Events, *, limit: int) -> tuple[list, bool]:
    """The page the way the API wrote it before: Event objects, masked, rendered by DRF."""
    results, more = bounded_results(events, limit=limit)
    return json.loads(JSONRenderer().render(results)), more


def parsed(page: event_json.EventPage) -> tuple[list, str | None]:
    body = json.loads(page.body())
    assert list(body) == ["results", "next"]
    return body["results"], body["next"]


def assert_same_events(served: list, expected: list) -> None:
    assert served == expected
    for one, other in zip(served, expected, strict=True):
        assert list(one) == list(other)
        assert list(one["data"]) == list(other["data"])
        assert list(one["metadata"]) == list(other["metadata"])


def test_a_stream_as_text_is_the_stream_as_objects(tricky, settings):
    stream = selectors.get_stream(name="tricky-1")
    max_bytes = settings.REPLAYDESK_READ_MAX_BYTES
    for direction in ("forward", "backward"):
        events = selectors.read_stream(stream=stream, direction=direction, limit=100, max_bytes=max_bytes)
        expected, more = as_objects(events, limit=100)
        page = event_json.read_stream_json(
            name=stream.name, direction=direction, limit=100, max_bytes=max_bytes
        )
        results, following = parsed(page)
        assert_same_events(results, expected)
        assert not more and following is None


def test_the_log_as_text_is_the_log_as_objects(tricky, settings):
    append_events(stream="other-1", events=[{"type": "Noted", "data": {"email": "bo@example.com"}}])
    max_bytes = settings.REPLAYDESK_READ_MAX_BYTES
    expected, more = as_objects(selectors.read_all(limit=5, max_bytes=max_bytes), limit=5)
    results, following = parsed(event_json.read_all_json(limit=5, max_bytes=max_bytes))
    assert_same_events(results, expected)
    assert more and following == str(expected[-1]["position"])
    rest, _ = parsed(event_json.read_all_json(after_position=int(following), limit=100, max_bytes=max_bytes))
    assert [event["stream"] for event in rest][-1] == "other-1"
    assert len(expected) + len(rest) == len(TRICKY) + 1


def test_the_text_is_ascii_with_non_ascii_escaped_as_the_renderer_escapes_it(tricky, settings):
    stream = selectors.get_stream(name="tricky-1")
    body = event_json.read_stream_json(name=stream.name, max_bytes=settings.REPLAYDESK_READ_MAX_BYTES).body()
    assert body.isascii()
    assert b"\\u00e9" in body and b"\\ud83d\\ude00" in body and b"\\u2028" in body


def test_personal_data_is_masked_as_the_objects_mask_it(tricky, support_agent, settings):
    settings.REPLAYDESK_PII_PATHS = ["data.email", "data.name", "metadata.ip", "data.nested.a"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(support_agent)}")
    served = client.get("/api/v1/streams/tricky-1/events").json()["results"]
    stream = selectors.get_stream(name="tricky-1")
    events = selectors.read_stream(stream=stream, max_bytes=settings.REPLAYDESK_READ_MAX_BYTES)
    expected, _ = as_objects(events, limit=100)
    assert_same_events(served, expected)
    assert served[6]["data"] == {
        "email": mask_value("ann@example.com"),
        "name": mask_value("Ann Lee"),
        "keep": "not personal",
    }
    assert served[7]["data"]["email"] is None
    assert served[7]["data"]["name"] == mask_value({"first": "Ann", "last": "Lee"})
    assert served[8]["data"] == {"email": mask_value(12345), "name": mask_value(["Ann", "Lee"])}
    assert served[2]["data"]["nested"]["a"] == mask_value([1, [2, [3, {"b": None}]]])
    assert all(event["metadata"]["ip"] == mask_value("10.0.0.5") for event in served)


def test_times_are_written_as_drf_writes_them_with_and_without_microseconds(tricky, api):
    first, second = Event.objects.filter(stream__name="tricky-1").order_by("sequence")[:2]
    Event.objects.filter(pk=first.pk).update(recorded_at="2026-03-01T10:00:00Z")
    Event.objects.filter(pk=second.pk).update(recorded_at="2026-03-01T10:00:00.000123+01:00")
    served = api.get("/api/v1/streams/tricky-1/events", {"limit": 2}).json()["results"]
    assert [event["recorded_at"] for event in served] == [
        "2026-03-01T10:00:00Z",
        "2026-03-01T09:00:00.000123Z",
    ]


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_the_byte_bound_cuts_at_the_same_event_with_the_same_next(db, api, settings, direction):
    append_events(
        stream="wide-1", events=[{"type": "Noted", "data": {"text": "ü" * 300, "n": n}} for n in range(10)]
    )
    first = api.get("/api/v1/streams/wide-1/events", {"limit": 1}).json()["results"][0]
    one = len(JSONRenderer().render(first))
    settings.REPLAYDESK_READ_MAX_BYTES = event_json.ENVELOPE_BYTES + int(3.5 * one)
    stream = selectors.get_stream(name="wide-1")
    events = selectors.read_stream(
        stream=stream, direction=direction, limit=100, max_bytes=settings.REPLAYDESK_READ_MAX_BYTES
    )
    expected, more = as_objects(events, limit=100)
    response = api.get("/api/v1/streams/wide-1/events", {"direction": direction})
    body = response.json()
    assert_same_events(body["results"], expected)
    assert len(expected) == 3 and more
    assert body["next"] == ("4" if direction == "forward" else "7")
    assert len(response.content) <= settings.REPLAYDESK_READ_MAX_BYTES


def test_an_event_over_the_bound_is_a_page_of_its_own(db, api, settings):
    append_events(stream="wide-1", events=[{"type": "Noted", "data": {"text": "x" * 5000}}] * 3)
    settings.REPLAYDESK_READ_MAX_BYTES = 1000
    body = api.get("/api/v1/events", {"limit": 10}).json()
    assert len(body["results"]) == 1 and body["next"] == str(body["results"][0]["position"])


def test_the_api_response_is_the_page_body_with_its_headers(tricky, api, settings):
    response = api.get("/api/v1/streams/tricky-1/events", {"limit": 3})
    stream = selectors.get_stream(name="tricky-1")
    page = event_json.read_stream_json(
        name=stream.name, limit=3, max_bytes=settings.REPLAYDESK_READ_MAX_BYTES
    )
    assert response.content == page.body()
    assert response["Content-Type"] == "application/json"
    assert response["ETag"] == f'"{len(TRICKY)}"'
    assert response.json()["next"] == "4"


def test_a_filtered_log_as_text_is_the_filtered_log_as_objects(tricky, settings):
    append_events(stream="other-1", events=[{"type": "Noted", "data": {"email": "bo@example.com"}}])
    max_bytes = settings.REPLAYDESK_READ_MAX_BYTES
    log_filter = selectors.LogFilter(types=("Noted",), category="tricky")
    events = selectors.read_all(log_filter=log_filter, limit=4, max_bytes=max_bytes)
    expected, more = as_objects(events, limit=4)
    results, following = parsed(event_json.read_all_json(log_filter=log_filter, limit=4, max_bytes=max_bytes))
    assert_same_events(results, expected)
    assert more and following == str(expected[-1]["position"])
    assert {event["stream"] for event in results} == {"tricky-1"}


def test_an_unknown_stream_is_a_404_whatever_its_query_and_a_known_one_with_a_bad_query_is_a_400(tricky, api):
    unknown = api.get("/api/v1/streams/nobody-1/events", {"limit": 5000})
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no stream is named 'nobody-1'"
    known = api.get("/api/v1/streams/tricky-1/events", {"limit": 5000})
    assert known.status_code == 400 and "limit" in known.json()["errors"]
