"""pytest plugin (loaded with `-p console.testing`): real PostgreSQL and Redis for the suite.

With DATABASE_URL and REDIS_URL set, the tests use those servers. Otherwise the embedded servers are
started in a temporary home before Django reads its settings, and stopped and removed at the end, so
the suite passes on a machine with neither installed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_started = None
_home: Path | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
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


def pytest_unconfigure(config):
    global _started
    if _started is not None:
        _started.stop()
        _started = None
    if _home is not None:
        shutil.rmtree(_home, ignore_errors=True)


def pytest_report_header(config):
    from django.conf import settings

    where = "embedded" if _started is not None else "from the environment"
    return f"replaydesk: PostgreSQL and Redis {where}; database {settings.DATABASES['default']['NAME']}"
