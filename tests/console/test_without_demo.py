"""The product without the demo app: it migrates, serves and passes its tests that need no demo.

The rest of the suite runs with the demo installed (console/testing.py), so these run the product in
processes of their own with REPLAYDESK_DEMO=0, against a database of their own on the same server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
REPLAYDESK = str(Path(sys.executable).with_name("replaydesk"))

# Tests of the store, the API, the pages and the shell that fold no demo event.
WITHOUT_DEMO = [
    "tests/test_layers.py",
    "tests/streams/test_append.py",
    "tests/streams/test_api_append.py",
    "tests/streams/test_api_read.py",
    "tests/streams/test_import.py",
    "tests/streams/test_pages.py",
    "tests/console/test_health.py",
    "tests/console/test_metrics.py",
    "tests/console/test_login_audit.py",
]


@pytest.fixture
def own_database():
    """An empty database on the session's PostgreSQL server, and the spare Redis database."""
    from console import testing

    name = f"replaydesk_nodemo_{uuid.uuid4().hex[:8]}"
    server = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    admin_url = server._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DATABASE_URL": server._replace(path=f"/{name}").geturl(),
            "REDIS_URL": testing.spare_redis_url(),
            "REPLAYDESK_DEMO": "0",
        }
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)')


def run(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_the_product_migrates_and_has_no_demo_without_it(own_database):
    migrated = run([REPLAYDESK, "migrate", "--verbosity", "0"], own_database, timeout=180)
    assert migrated.returncode == 0, migrated.stderr

    with psycopg.connect(own_database["DATABASE_URL"]) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert "streams_event" in tables and "recovery_job" in tables
    assert not any(table.startswith("demo_") for table in tables)
    # The workers' tick makes every installed projection a consumer: without the demo there is none.
    ticked = run(
        [
            REPLAYDESK,
            "shell",
            "-c",
            "from streams.tasks import running_consumers; print(running_consumers())",
        ],
        own_database,
        timeout=60,
    )
    assert ticked.returncode == 0, ticked.stderr
    assert ticked.stdout.strip().splitlines()[-1] == "[]"


def test_the_tests_that_need_no_demo_pass_without_it(own_database):
    tests = run(
        # In one process: its test database and Redis database are the ones given.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *WITHOUT_DEMO],
        own_database,
        timeout=600,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "error" not in tests.stdout.splitlines()[-1]
