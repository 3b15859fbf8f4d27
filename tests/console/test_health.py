"""/healthz says the process serves; /readyz checks PostgreSQL and Redis, cached briefly."""

import pytest

from console import views

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_readiness(settings):
    views._ready_cache = None
    yield
    views._ready_cache = None


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_the_database_and_redis(client):
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(client, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nobody-listens.sock"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] and not body["checks"]["redis"]["ok"]
    assert "error" in body["checks"]["redis"]


def test_readyz_keeps_its_answer_for_a_few_seconds(client, settings, tmp_path):
    settings.READYZ_CACHE_SECONDS = 60
    assert client.get("/readyz").status_code == 200
    settings.REDIS_URL = f"unix://{tmp_path}/nobody-listens.sock"
    assert client.get("/readyz").status_code == 200  # cached
    settings.READYZ_CACHE_SECONDS = 0
    assert client.get("/readyz").status_code == 503


def test_health_endpoints_are_never_cached_by_proxies(client):
    assert "no-cache" in client.get("/readyz")["Cache-Control"]


def test_an_unknown_page_is_a_404_page_in_the_layout(browser_client):
    response = browser_client.get("/no/such/page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Nothing is at <code>/no/such/page/</code>" in page
    assert 'href="/streams/"' in page
