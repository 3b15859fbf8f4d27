"""The sources API: admins add sources, everyone who reads sees how they are doing, operators pause and
resume them and decide about their parked events. A DSN is never shown back."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from streams.models import Event, Source, SourceParkedEvent
from tests.conftest import bearer_token, person
from tests.streams.source_helpers import TABLE_OPTIONS, add_table_source, copy_all

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/sources"


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(user)}")
    return client


@pytest.fixture
def admin_api(db):
    return client_for(person("ada", "admin"))


def body(source_db, **overrides) -> dict:
    return {
        "name": "orders_store",
        "kind": "table",
        "dsn": source_db.reader_url,
        "options": TABLE_OPTIONS,
        **overrides,
    }


def test_an_admin_adds_a_source_and_everyone_who_reads_sees_how_it_is_doing(
    source_db, admin_api, support_agent
):
    source_db.append("order-1", 1)
    source_db.append("order-1", 2)

    created = admin_api.post(URL, body(source_db), format="json")

    assert created.status_code == 201, created.content
    assert created["Location"] == f"{URL}/orders_store"
    assert source_db.reader_url not in created.content.decode() and 'dsn"' not in created.content.decode()
    assert created.json()["kind"] == "table" and created.json()["options"]["table"] == "events"
    copy_all()
    seen = client_for(support_agent).get(f"{URL}/orders_store").json()
    assert (seen["events_copied"], seen["lag_events"], seen["health"], seen["state"]) == (
        2,
        0,
        "healthy",
        "running",
    )
    assert seen["position"] == seen["head"]
    assert [s["name"] for s in client_for(support_agent).get(URL).json()["results"]] == ["orders_store"]


def test_only_admins_add_sources(source_db, api, support_agent):
    assert api.post(URL, body(source_db), format="json").status_code == 403
    assert client_for(support_agent).post(URL, body(source_db), format="json").status_code == 403
    assert not Source.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"name": "Bad Name"}, 400, "name"),
        ({"kind": "kafka"}, 400, "kind"),
        ({"options": {**TABLE_OPTIONS, "table": "no such"}}, 422, "options.table"),
        ({"dsn_env": "RD_NOT_SET_ANYWHERE"}, 422, "dsn"),  # both: one or the other
        ({"options": {**TABLE_OPTIONS, "table": "missing_table"}}, 422, "dsn"),
        ({"dsn": "postgresql://reader@10.1.2.3/shop"}, 422, "dsn"),
        ({"unknown": 1}, 400, "unknown"),
    ],
)
def test_bad_sources_are_refused_field_by_field_and_nothing_is_saved(
    source_db, admin_api, overrides, status, field
):
    audited = Event.objects.count()

    response = admin_api.post(URL, body(source_db, **overrides), format="json")

    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"], response.json()
    assert not Source.objects.exists() and Event.objects.count() == audited


def test_a_second_source_of_the_same_name_is_a_conflict(source_db, admin_api):
    assert admin_api.post(URL, body(source_db), format="json").status_code == 201
    assert admin_api.post(URL, body(source_db), format="json").status_code == 409


def test_operators_pause_and_resume_a_source(source_db, api, support_agent):
    add_table_source(source_db)

    assert client_for(support_agent).post(f"{URL}/orders_store/pause").status_code == 403
    paused = api.post(f"{URL}/orders_store/pause")
    assert (paused.status_code, paused.json()["state"], paused.json()["health"]) == (200, "paused", "paused")
    assert api.post(f"{URL}/orders_store/resume").json()["state"] == "running"
    assert api.post(f"{URL}/nope/pause").status_code == 404


def test_a_parked_event_is_retried_once_the_source_is_fixed_or_skipped(source_db, api, support_agent):
    source_db.append("order-1", 1, "not a type!")
    source_db.append("order-2", 1, "not a type either!")
    add_table_source(source_db)
    copy_all()

    listed = client_for(support_agent).get(f"{URL}/orders_store/parked").json()["results"]
    assert [(p["stream"], p["payload"]) for p in listed] == [("order-1", None), ("order-2", None)]
    [first, second] = api.get(f"{URL}/orders_store/parked").json()["results"]
    assert first["payload"]["type"] == "not a type!" and first["reason"].startswith("type:")

    still = api.post(f"{URL}/orders_store/parked/{first['id']}/retry")
    assert still.status_code == 409 and "still in conflict" in still.json()["detail"]
    assert SourceParkedEvent.objects.get(pk=first["id"]).attempts == 2
    source_db.execute("UPDATE events SET event_type = 'OrderPlaced' WHERE stream_name = 'order-1'")
    retried = api.post(f"{URL}/orders_store/parked/{first['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] == "retried"
    assert list(Event.objects.filter(stream__name="order-1").values_list("type", flat=True)) == [
        "OrderPlaced"
    ]

    assert client_for(support_agent).post(f"{URL}/orders_store/parked/{second['id']}/skip").status_code == 403
    assert api.post(f"{URL}/orders_store/parked/{second['id']}/skip").json()["state"] == "skipped"
    assert api.post(f"{URL}/orders_store/parked/{second['id']}/skip").status_code == 409
    assert set(SourceParkedEvent.objects.values_list("state", flat=True)) == {"retried", "skipped"}
    audited = Event.objects.filter(stream__name="console-source.orders_store").values_list("type", flat=True)
    assert {"SourceParkedEventRetried", "SourceParkedEventSkipped"} <= set(audited)


def test_parked_events_are_paged_in_the_sources_order_and_filtered_by_state(source_db, api):
    for n in range(5):
        source_db.append(f"order-{n}", 1, "not a type!")
    add_table_source(source_db)
    copy_all()
    positions = list(SourceParkedEvent.objects.order_by("position").values_list("position", flat=True))

    first = api.get(f"{URL}/orders_store/parked", {"limit": 2}).json()
    assert [p["position"] for p in first["results"]] == positions[:2]
    rest = api.get(f"{URL}/orders_store/parked", {"limit": 2, "cursor": first["next"]}).json()
    assert [p["position"] for p in rest["results"]] == positions[2:4]
    last = api.get(f"{URL}/orders_store/parked", {"limit": 2, "cursor": rest["next"]}).json()
    assert [p["position"] for p in last["results"]] == positions[4:] and last["next"] is None

    skipped = api.get(f"{URL}/orders_store/parked").json()["results"][0]["id"]
    api.post(f"{URL}/orders_store/parked/{skipped}/skip")
    only = api.get(f"{URL}/orders_store/parked", {"state": "skipped"}).json()["results"]
    assert [p["id"] for p in only] == [skipped]
    bad = api.get(f"{URL}/orders_store/parked", {"state": "gone"})
    assert bad.status_code == 400 and "state" in bad.json()["errors"]
