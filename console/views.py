"""Health endpoints: /healthz says the process serves; /readyz that it can do its work.

/readyz asks the workers directly: a Celery `ping` broadcast through the broker, answered by the first
worker that hears it. A worker answers from its main process even while its pool is busy, it needs no
code of ours in the worker and no beat, and it proves the whole path a task takes (broker, a worker
consuming). It costs one round trip when a worker is up and READYZ_WORKER_TIMEOUT (1 s) when none is,
which the short cache absorbs.
"""

from __future__ import annotations

import threading
import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found, permission_denied

from console.celery import app
from core.problems import problem_response

_ready_lock = threading.Lock()
_ready_cache: tuple[float, int, dict] | None = None


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    status, checks = ready_checks()
    body = {"status": "ok" if status == 200 else "unavailable", "checks": checks}
    return JsonResponse(body, status=status)


def ready_checks() -> tuple[int, dict]:
    """Checks the database, Redis and a live worker, at most once per READYZ_CACHE_SECONDS per process
    (/readyz and /metrics): the HTTP status they make, and each check."""
    global _ready_cache
    with _ready_lock:
        now = time.monotonic()
        if _ready_cache is None or now - _ready_cache[0] >= settings.READYZ_CACHE_SECONDS:
            checks = {"database": _check_database(), "redis": _check_redis()}
            checks["worker"] = _check_worker(broker_ok=checks["redis"]["ok"])
            status = 200 if all(check["ok"] for check in checks.values()) else 503
            _ready_cache = (now, status, checks)
        _, status, checks = _ready_cache
    return status, checks


def _check_database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means not ready; say which
        connection.close()
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def _check_redis() -> dict:
    started = time.monotonic()
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
    except (redis.RedisError, OSError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def _check_worker(*, broker_ok: bool) -> dict:
    if not broker_ok:
        # Kombu would retry an unreachable broker for a long time; the Redis check has said why.
        return {"ok": False, "error": "not checked: the broker (Redis) is unreachable"}
    timeout = settings.READYZ_WORKER_TIMEOUT
    started = time.monotonic()
    try:
        replies = app.control.ping(timeout=timeout, limit=1)
    except Exception as exc:  # any failure to reach a worker means not ready; say which
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}".strip()[:300]}
    if not replies:
        return {
            "ok": False,
            "error": f"no Celery worker answered a ping within {timeout:g} s; start one "
            "(celery -A console worker), or run replaydesk up, which starts one",
        }
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}


def forbidden(request, exception=None):
    """403: problem+json for the API (DRF answers its own), the page for people, saying which role."""
    if request.path.startswith("/api/"):
        return problem_response(
            status_code=403,
            problem_type="forbidden",
            title="Forbidden",
            detail=str(exception or "not allowed"),
        )
    return permission_denied(request, exception)


def not_found(request, exception=None):
    """404: problem+json for the API, the page for people."""
    if request.path.startswith("/api/"):
        return problem_response(
            status_code=404, problem_type="not-found", title="Not found", detail=f"nothing at {request.path}"
        )
    return page_not_found(request, exception)
