"""/healthz says the process serves; /readyz checks PostgreSQL, Redis and a live Celery worker, cached
briefly."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from console import views
from console.celery import app

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """A real Celery worker on the session's Redis. It listens to a queue of its own, so it takes none
    of the tasks other tests enqueue, but it answers pings like any worker."""
    hostname = f"readyz-{uuid.uuid4().hex[:8]}@localhost"
    log = (tmp_path_factory.mktemp("worker") / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "console", "worker"),
            *("--queues", f"readyz-{uuid.uuid4().hex}", "--pool", "solo", "--hostname", hostname),
            *("--without-mingle", "--without-gossip", "--loglevel", "WARNING"),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[hostname], timeout=0.5):
            assert process.poll() is None, f"the worker exited with {process.returncode}; see {log.name}"
            assert time.monotonic() < deadline, f"the worker did not answer pings; see {log.name}"
        yield hostname
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def no_worker(settings):
    """Readiness asked when no worker listens (none runs but the module's, and that one is not started)."""
    settings.READYZ_WORKER_TIMEOUT = 0.3
    if app.control.ping(timeout=0.3):
        pytest.skip("a Celery worker is running on this broker")


@pytest.fixture(autouse=True)
def _fresh_readiness(settings):
    views._ready_cache = None
    yield
    views._ready_cache = None


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_503_naming_the_worker_when_none_answers(client, no_worker):
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert not checks["worker"]["ok"]
    assert "no Celery worker answered" in checks["worker"]["error"]


def test_readyz_is_503_naming_redis_when_redis_is_unreachable(client, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nobody-listens.sock"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] and not body["checks"]["redis"]["ok"]
    assert "error" in body["checks"]["redis"]
    assert "broker (Redis) is unreachable" in body["checks"]["worker"]["error"]


def test_readyz_checks_the_database_redis_and_a_live_worker(client, worker):
    response = client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["worker"]["ok"]


def test_readyz_keeps_its_answer_for_a_few_seconds(client, settings, tmp_path, worker):
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
