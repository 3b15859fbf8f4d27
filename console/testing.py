"""pytest plugin (loaded with `-p console.testing`): real PostgreSQL and Redis for the suite, which runs in
several processes at once (pytest-xdist, `-n auto` in pyproject.toml; `-n 0` runs it in this one).

With DATABASE_URL and REDIS_URL set, the tests use those servers. Otherwise the embedded servers are
started in a temporary home before Django reads its settings, and stopped and removed at the end, so
the suite passes on a machine with neither installed.

The main process decides all that before it starts its workers, which inherit the servers' addresses
(the embedded servers are started once, and by then they answer). Each worker then has a test database
of its own (pytest-django names it test_<name>_gw<n>), a Redis database of its own (the session's number
plus the worker's: rate limits, Celery's queues, trigger keys and the cache are never another worker's)
and a REPLAYDESK_HOME of its own beneath the session's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

# The suite mostly waits (on subprocess servers, Celery workers, Chromium, PostgreSQL), so it gets one
# worker more than the machine has cores: 3 on the 2-core machines it runs on. Not more: a test that
# starts a whole `replaydesk up` (embedded PostgreSQL, gunicorn, Celery) and waits for it under a
# timeout is CPU-bound while it starts, and several at once on 2 cores ran past their timeouts. At most
# 8, which leaves Redis's 16 databases room (each worker one, and the spare) above a REDIS_URL's number.
EXTRA_WORKERS = 1
MAX_WORKERS = 8
# Variables the main process leaves to its workers (and to no one else: a pytest a test starts is a
# session of its own).
_SESSION = "REPLAYDESK_TEST_SESSION"
_EMBEDDED = "REPLAYDESK_TEST_EMBEDDED"
_REDIS = "REPLAYDESK_TEST_REDIS_URL"
REDIS_DATABASES = 16

_started = None
_home: Path | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    worker = xdist_worker()
    if worker is not None:
        _join_session(worker)
        return
    global _started, _home
    want_db = not os.environ.get("DATABASE_URL")
    want_redis = not os.environ.get("REDIS_URL")
    _home = Path(tempfile.mkdtemp(prefix="replaydesk-test-"))
    (_home / "static").mkdir()
    os.environ.setdefault("REPLAYDESK_HOME", str(_home))
    # The test client and the browser speak plain HTTP to a local server.
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("SECURE_COOKIES", "false")
    # Most tests fold the identity demo's events with its projections; tests/console/test_without_demo.py
    # runs the product without it.
    os.environ.setdefault("REPLAYDESK_DEMO", "1")
    # The tests' receivers listen on loopback (tests/receivers.py), which sinks may reach only when
    # admitted; tests of the refusals set the allowlist themselves.
    os.environ.setdefault("REPLAYDESK_SINK_ALLOW", "127.0.0.0/8,::1")
    # And the sources of the tests are databases on the tests' own PostgreSQL.
    os.environ.setdefault("REPLAYDESK_SOURCE_ALLOW", "127.0.0.0/8,::1")
    if want_db or want_redis:
        from console import embedded

        _started = embedded.start(_home, postgres=want_db, redis=want_redis)
        if want_db:
            os.environ["DATABASE_URL"] = _started.database_url
        if want_redis:
            os.environ["REDIS_URL"] = _started.redis_url
    os.environ[_SESSION] = str(os.getpid())
    os.environ[_EMBEDDED] = "1" if _started is not None else ""
    os.environ[_REDIS] = os.environ["REDIS_URL"]


def xdist_worker() -> str | None:
    """This process's xdist worker id ("gw0", "gw1", ...) when it is a worker of this session."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and os.environ.get(_SESSION) == str(os.getppid()):
        return worker
    return None


def _join_session(worker: str) -> None:
    home = Path(os.environ["REPLAYDESK_HOME"]) / worker
    (home / "static").mkdir(parents=True, exist_ok=True)
    os.environ["REPLAYDESK_HOME"] = str(home)
    base = redis_database(os.environ[_REDIS])
    os.environ["REDIS_URL"] = with_redis_database(os.environ[_REDIS], base + int(worker.removeprefix("gw")))


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_auto_num_workers(config):
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return min((os.cpu_count() or 1) + EXTRA_WORKERS, MAX_WORKERS)


def pytest_configure(config):
    if xdist_worker() is not None or os.environ.get(_SESSION) != str(os.getpid()):
        return
    workers = config.getoption("numprocesses", None) or 0
    base = redis_database(os.environ[_REDIS])
    if base + max(workers, 1) >= REDIS_DATABASES:
        raise pytest.UsageError(
            f"REDIS_URL names database {base}: {max(workers, 1)} worker(s) need databases {base} to "
            f"{base + max(workers, 1)} (the last one is the spare, spare_redis_url()), and Redis has "
            f"0 to {REDIS_DATABASES - 1}; name a lower database or run fewer workers (-n)"
        )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """xdist's loadgroup renames each grouped test `<id>@<group>`; a pytest that ignores the rename would
    run a group's tests in several workers at once, so say so rather than let them collide."""
    if xdist_worker() is None or not getattr(config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in items if any(item.iter_markers("xdist_group")) and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist could not group {lost[0]} (and {len(lost) - 1} more) with this pytest; "
            "install the versions pyproject.toml's test extra names"
        )


def pytest_unconfigure(config):
    global _started
    if _started is not None:
        _started.stop()
        _started = None
    if _home is not None:
        shutil.rmtree(_home, ignore_errors=True)


def pytest_report_header(config):
    from django.conf import settings

    where = "embedded" if servers_embedded() else "from the environment"
    return f"replaydesk: PostgreSQL and Redis {where}; database {settings.DATABASES['default']['NAME']}"


def servers_embedded() -> bool:
    """Whether the session started the embedded servers (rather than using DATABASE_URL / REDIS_URL)."""
    return bool(os.environ.get(_EMBEDDED))


def spare_redis_url() -> str:
    """A database on the session's Redis server that no worker uses, for a test that runs a Replaydesk of
    its own against that server. Tests that use it share it, so they are marked
    `xdist_group("spare_redis")`: one worker runs them, one after another."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1) if xdist_worker() else 1
    url = os.environ[_REDIS]
    return with_redis_database(url, redis_database(url) + workers)


def redis_database(url: str) -> int:
    """The database number of a Redis URL: `redis://host:port/N`, or on a socket `unix:///path?db=N`."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return int(dict(parse_qsl(parts.query)).get("db") or 0)
    return int(parts.path.strip("/") or 0)


def with_redis_database(url: str, number: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = {**dict(parse_qsl(parts.query)), "db": str(number)}
        return f"unix://{parts.path}?{urlencode(query)}"  # urlunsplit would drop the empty host's //
    return parts._replace(path=f"/{number}").geturl()
