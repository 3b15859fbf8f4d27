"""The consumers API: lag and health, lagging streams, pause and resume, the parking lot."""

import pytest

from streams.consumers import ensure_projection, run_projection
from streams.models import Consumer, Event, ParkedEvent
from streams.projections import Projection, add, remove
from streams.services import append_events

pytestmark = pytest.mark.django_db

FIELDS = {
    "name",
    "kind",
    "state",
    "checkpoint",
    "head",
    "lag_events",
    "lag_exact",
    "lag_seconds",
    "rate",
    "health",
    "last_error",
    "last_error_detail",
    "last_error_at",
    "progressed_at",
    "lag_threshold",
    "stall_seconds",
}


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


class Invoices(Projection, register=False):
    """Refuses events marked bad until told otherwise."""

    name = "test_api_invoices"
    categories = ("invoice",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)
    refuse = True

    def apply(self, cursor, events):
        if Invoices.refuse and any(e.data.get("bad") for e in events):
            raise ValueError("cannot apply a bad invoice")


@pytest.fixture
def invoices():
    Invoices.refuse = True
    add(Invoices)
    ensure_projection(Invoices())
    yield Invoices
    remove(Invoices.name)


def append(stream, n=1, **data):
    return append_events(stream=stream, events=[{"type": "Issued", "data": data}] * n).positions


def park(*positions):
    consumer = Consumer.objects.get(name="test_api_invoices")
    return [
        ParkedEvent.objects.create(
            consumer=consumer, event=Event.objects.get(position=p), error="ValueError: bad", attempts=5
        )
        for p in positions
    ]


def is_problem(response, status):
    return response.status_code == status and response["Content-Type"] == "application/problem+json"


def test_the_list_shows_every_consumer_with_its_lag(api, invoices):
    append("invoice-1", 3)
    run_projection("test_api_invoices")
    append("invoice-2", 2)
    body = api.get("/api/v1/consumers").json()
    assert body["next"] is None
    [item] = [c for c in body["results"] if c["name"] == "test_api_invoices"]
    assert set(item) == FIELDS
    assert (item["kind"], item["state"], item["health"]) == ("projection", "running", "healthy")
    assert item["lag_events"] == 2 and item["lag_exact"] is True and item["head"] > item["checkpoint"]
    assert item["rate"] is None and item["last_error"] == ""


def test_one_consumer(api, invoices):
    append("invoice-1")
    body = api.get("/api/v1/consumers/test_api_invoices").json()
    assert set(body) == FIELDS
    assert (body["name"], body["lag_events"], body["checkpoint"]) == ("test_api_invoices", 1, 0)


def test_an_unknown_consumer_is_a_404_problem(api):
    for response in (
        api.get("/api/v1/consumers/nobody"),
        api.get("/api/v1/consumers/nobody/lagging-streams"),
        api.post("/api/v1/consumers/nobody/pause"),
        api.post("/api/v1/consumers/nobody/resume"),
        api.get("/api/v1/consumers/nobody/parked"),
        api.post("/api/v1/consumers/nobody/parked/1/retry"),
    ):
        assert is_problem(response, 404)
        assert "nobody" in response.json()["detail"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/consumers"),
        ("get", "/api/v1/consumers/test_api_invoices"),
        ("get", "/api/v1/consumers/test_api_invoices/lagging-streams"),
        ("post", "/api/v1/consumers/test_api_invoices/pause"),
        ("post", "/api/v1/consumers/test_api_invoices/resume"),
        ("get", "/api/v1/consumers/test_api_invoices/parked"),
        ("post", "/api/v1/consumers/test_api_invoices/parked/1/retry"),
        ("post", "/api/v1/consumers/test_api_invoices/parked/1/skip"),
    ],
)
def test_every_call_needs_a_token_or_a_session(anonymous_api, invoices, method, path):
    response = getattr(anonymous_api, method)(path)
    assert is_problem(response, 401)
    assert Consumer.objects.get(name="test_api_invoices").state == "running"


def test_lagging_streams_most_behind_first(api, invoices):
    append("invoice-a", 1)
    run_projection("test_api_invoices")
    append("invoice-a", 3)
    append("invoice-b", 1)
    append("user-1", 5)
    body = api.get("/api/v1/consumers/test_api_invoices/lagging-streams").json()
    assert body == {
        "results": [
            {"stream": "invoice-a", "version": 4, "applied_sequence": 1, "lag_events": 3},
            {"stream": "invoice-b", "version": 1, "applied_sequence": 0, "lag_events": 1},
        ],
        "next": None,
    }
    limited = api.get("/api/v1/consumers/test_api_invoices/lagging-streams?limit=1").json()
    assert [s["stream"] for s in limited["results"]] == ["invoice-a"]
    assert is_problem(api.get("/api/v1/consumers/test_api_invoices/lagging-streams?limit=0"), 400)


def test_pause_and_resume_are_audited_and_a_second_pause_is_a_409(api, invoices):
    response = api.post("/api/v1/consumers/test_api_invoices/pause")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["health"]) == ("paused", "paused")

    again = api.post("/api/v1/consumers/test_api_invoices/pause")
    assert is_problem(again, 409)
    assert again.json()["detail"] == "test_api_invoices is paused already"

    response = api.post("/api/v1/consumers/test_api_invoices/resume")
    assert (response.status_code, response.json()["state"]) == (200, "running")
    assert is_problem(api.post("/api/v1/consumers/test_api_invoices/resume"), 409)

    audit = list(Event.objects.filter(stream__name="console-consumer.test_api_invoices").order_by("position"))
    assert [(e.type, e.actor) for e in audit] == [("ConsumerPaused", "olivia"), ("ConsumerResumed", "olivia")]


def test_parked_events_are_listed_in_log_order_a_page_at_a_time(api, invoices):
    positions = append("invoice-1", 3, bad=True)
    park(*positions)
    first = api.get("/api/v1/consumers/test_api_invoices/parked?limit=2").json()
    assert [p["event"]["position"] for p in first["results"]] == positions[:2]
    assert first["results"][0]["state"] == "parked" and first["results"][0]["error"] == "ValueError: bad"
    assert first["results"][0]["event"]["stream"] == "invoice-1"
    rest = api.get(f"/api/v1/consumers/test_api_invoices/parked?limit=2&cursor={first['next']}").json()
    assert [p["event"]["position"] for p in rest["results"]] == positions[2:]
    assert rest["next"] is None
    assert api.get("/api/v1/consumers/test_api_invoices/parked?state=skipped").json()["results"] == []
    assert is_problem(api.get("/api/v1/consumers/test_api_invoices/parked?state=lost"), 400)


def test_a_parked_event_retried_after_a_fix_is_applied(api, invoices):
    [parked] = park(*append("invoice-1", bad=True))
    failed = api.post(f"/api/v1/consumers/test_api_invoices/parked/{parked.id}/retry")
    assert is_problem(failed, 409)
    assert "cannot apply a bad invoice" in failed.json()["detail"]

    Invoices.refuse = False
    response = api.post(f"/api/v1/consumers/test_api_invoices/parked/{parked.id}/retry")
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["resolved_by"]) == ("retried", "olivia")
    assert is_problem(api.post(f"/api/v1/consumers/test_api_invoices/parked/{parked.id}/retry"), 409)


def test_a_parked_event_can_be_skipped_once(api, invoices):
    [parked] = park(*append("invoice-1", bad=True))
    response = api.post(f"/api/v1/consumers/test_api_invoices/parked/{parked.id}/skip")
    assert (response.status_code, response.json()["state"]) == (200, "skipped")
    assert Event.objects.filter(type="ParkedEventSkipped", actor="olivia").count() == 1
    again = api.post(f"/api/v1/consumers/test_api_invoices/parked/{parked.id}/skip")
    assert is_problem(again, 409) and "skipped already" in again.json()["detail"]


def test_a_parked_event_of_another_consumer_is_not_found_here(api, invoices):
    [parked] = park(*append("invoice-1", bad=True))
    Consumer.objects.create(name="test_other", kind=Consumer.Kind.SINK)
    assert is_problem(api.post(f"/api/v1/consumers/test_other/parked/{parked.id}/skip"), 404)
    assert ParkedEvent.objects.get(pk=parked.pk).state == "parked"


def test_a_stream_lists_its_consumers_applied_sequence_and_lag(api, invoices):
    append("invoice-1", 2)
    run_projection("test_api_invoices")
    append("invoice-1", 3)
    body = api.get("/api/v1/streams/invoice-1").json()
    assert body["consumers"] == [
        {
            "name": "test_api_invoices",
            "kind": "projection",
            "checkpoint": body["consumers"][0]["checkpoint"],
            "applied_sequence": 2,
            "lag_events": 3,
        }
    ]
    append("user-1")
    assert api.get("/api/v1/streams/user-1").json()["consumers"] == []  # not a category it follows
