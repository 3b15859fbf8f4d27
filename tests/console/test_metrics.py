"""/metrics: Prometheus text with the head and each consumer's checkpoint, lag and health, for those
allowed to see it."""

import datetime as dt
import time

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from recovery import services
from recovery.models import Job
from streams import source_services
from streams.consumers import ensure_projection, pause_consumer, run_projection
from streams.projections import Projection, add, remove
from streams.selectors import APPEND_SLOT_LOCK_CLASS, head
from streams.services import append_events
from tests.holding import append_held_open
from tests.streams.source_helpers import (
    add_table_source,
    copy_all,
    source_db,  # noqa: F401 - a source's scratch database
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


class Carts(Projection, register=False):
    name = "test_metrics_carts"
    categories = ("cart",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

    def apply(self, cursor, events):
        pass


@pytest.fixture
def carts():
    add(Carts)
    ensure_projection(Carts())
    yield
    remove(Carts.name)


def samples(response) -> dict:
    text = response.content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_show_head_checkpoint_lag_and_health(browser_client, carts):
    append_events(stream="cart-1", events=[{"type": "Added", "data": {}}] * 2)
    run_projection("test_metrics_carts")
    append_events(stream="cart-2", events=[{"type": "Added", "data": {}}] * 3)
    pause_consumer(name="test_metrics_carts", actor="olivia")

    response = browser_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response)
    consumer = (("consumer", "test_metrics_carts"),)
    assert found[("replaydesk_head_position", ())] == head()
    assert found[("replaydesk_consumer_lag_events", consumer)] == 3
    assert found[("replaydesk_consumer_checkpoint", consumer)] < head()
    assert found[("replaydesk_consumer_lag_seconds", consumer)] >= 0
    health = {
        dict(labels)["health"]: v for (n, labels), v in found.items() if n == "replaydesk_consumer_health"
    }
    assert health == {"healthy": 0, "lagging": 0, "stalled": 0, "failing": 0, "paused": 1, "rebuilding": 0}
    state = {dict(labels)["state"]: v for (n, labels), v in found.items() if n == "replaydesk_consumer_state"}
    assert state == {"running": 0, "paused": 1, "failed": 0}


def test_metrics_need_a_login_or_a_token(anonymous_api, client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"replaydesk_" not in response.content
    assert anonymous_api.get("/metrics", HTTP_AUTHORIZATION="Bearer not-a-token").status_code == 401


def test_an_api_token_may_read_the_metrics(api):
    assert api.get("/metrics").status_code == 200


def test_the_metrics_token_lets_a_scraper_in_without_a_user(client, settings):
    settings.REPLAYDESK_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-you").status_code == 401
    settings.REPLAYDESK_METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_metrics_show_an_append_left_open_and_what_waits_behind_it(browser_client):
    quiet = samples(browser_client.get("/metrics"))
    with append_held_open("cart-1"):
        append_events(stream="cart-2", events=[{"type": "Added", "data": {}}] * 2)
        time.sleep(0.2)
        held = samples(browser_client.get("/metrics"))
    after = samples(browser_client.get("/metrics"))

    assert quiet[("replaydesk_open_appends", ())] == 0
    assert held[("replaydesk_open_appends", ())] == 1
    assert held[("replaydesk_oldest_open_append_seconds", ())] >= 0.2
    assert held[("replaydesk_unsettled_positions", ())] == 3, "the open one, and the two committed after it"
    assert (after[("replaydesk_open_appends", ())], after[("replaydesk_unsettled_positions", ())]) == (0, 0)
    assert after[("replaydesk_head_position", ())] == head() == held[("replaydesk_head_position", ())] + 3


@pytest.mark.django_db(transaction=True)
def test_an_append_open_in_another_database_of_the_server_is_not_counted(browser_client):
    """Advisory locks are per database: another store on the same server holds its own append slots."""
    params = connection.get_connection_params()
    other = {key: params[key] for key in ("user", "password", "host", "port") if params.get(key)}
    with psycopg.connect(dbname="postgres", autocommit=True, **other) as elsewhere:
        elsewhere.execute("SELECT pg_advisory_lock(%s, 0)", [APPEND_SLOT_LOCK_CLASS])
        metrics = samples(browser_client.get("/metrics"))

    assert metrics[("replaydesk_open_appends", ())] == 0


@pytest.mark.django_db(transaction=True)
def test_metrics_show_each_sources_copy_lag_parked_events_and_health(browser_client, source_db):  # noqa: F811
    source_db.append("order-1", 1)
    source_db.append("order-1", 2)
    source_db.append("order-2", 1, "not a type!")
    add_table_source(source_db)
    copy_all()
    source_db.append("order-1", 3)  # not followed yet: the follower does not know of it
    add_table_source(source_db, name="billing_store")
    source_services.set_state(name="billing_store", state="paused", actor="olivia")

    found = samples(browser_client.get("/metrics"))

    orders, billing = (("source", "orders_store"),), (("source", "billing_store"),)
    assert found[("replaydesk_source_events_copied_total", orders)] == 2
    assert found[("replaydesk_source_events_parked", orders)] == 1
    assert found[("replaydesk_source_position", orders)] == found[("replaydesk_source_head", orders)] == 3
    assert found[("replaydesk_source_lag_events", orders)] == 0
    assert found[("replaydesk_source_lag_seconds", orders)] == 0
    # A source the follower never looked at has no head or lag yet, rather than a made-up one.
    assert ("replaydesk_source_lag_events", billing) not in found
    assert found[("replaydesk_source_events_copied_total", billing)] == 0

    def labelled(metric: str, source: str, label: str) -> dict:
        return {
            dict(labels)[label]: value
            for (name, labels), value in found.items()
            if name == metric and dict(labels)["source"] == source
        }

    assert labelled("replaydesk_source_health", "orders_store", "health") == {
        "failing": 0,
        "stalled": 0,
        "lagging": 0,
        "paused": 0,
        "healthy": 1,
    }
    assert labelled("replaydesk_source_health", "billing_store", "health")["paused"] == 1
    assert labelled("replaydesk_source_state", "billing_store", "state") == {
        "running": 0,
        "paused": 1,
        "failed": 0,
    }


def test_metrics_show_jobs_approvals_the_last_drill_and_readiness(browser_client, four_eyes, carts):
    now = timezone.now()

    def job(kind: str, params: dict, **fields) -> None:
        found = services.request_job(kind=kind, params=params, requested_by="someone", reason="a test")
        Job.objects.filter(pk=found.pk).update(**fields)

    job("replay", {"projection": "test_metrics_carts"}, created_at=now - dt.timedelta(hours=2))
    job("replay", {"projection": "test_metrics_carts"}, state=Job.State.FAILED, finished_at=now)
    job(
        "replay",
        {"projection": "test_metrics_carts"},
        state=Job.State.FAILED,
        finished_at=now - dt.timedelta(hours=3),
    )
    job("snapshot", {"projection": "test_metrics_carts"}, state=Job.State.RUNNING, done=25, total=100)
    job("drill", {}, state=Job.State.SUCCEEDED, finished_at=now - dt.timedelta(days=2))
    job("drill", {}, state=Job.State.FAILED, finished_at=now - dt.timedelta(days=1))

    found = samples(browser_client.get("/metrics"))

    assert found[("replaydesk_approvals_waiting", ())] == 1
    assert 7200 <= found[("replaydesk_approval_oldest_wait_seconds", ())] < 7300
    assert found[("replaydesk_jobs", (("kind", "replay"), ("state", "pending_approval")))] == 1
    assert found[("replaydesk_jobs", (("kind", "snapshot"), ("state", "running")))] == 1
    assert found[("replaydesk_jobs_failed_last_hour", (("kind", "replay"),))] == 1  # not the older one
    [(labels, ratio)] = [(dict(k[1]), v) for k, v in found.items() if k[0] == "replaydesk_job_progress_ratio"]
    assert (labels["kind"], labels["target"], ratio) == ("snapshot", "test_metrics_carts", 0.25)
    assert found[("replaydesk_drill_last_passed", ())] == 0  # the latest drill failed
    last = found[("replaydesk_drill_last_finished_timestamp_seconds", ())]
    assert abs(last - (now - dt.timedelta(days=1)).timestamp()) < 1
    # /readyz's checks (a worker may or may not answer here: that one's value is not asserted).
    checks = {dict(k[1])["check"]: v for k, v in found.items() if k[0] == "replaydesk_ready_check"}
    assert checks.keys() == {"database", "redis", "worker"}
    assert (checks["database"], checks["redis"]) == (1, 1)
