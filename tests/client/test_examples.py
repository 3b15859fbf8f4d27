"""examples/orders against a real `replaydesk up` (tests/client/conftest.py): the order service appends
orders through the client, the read model consumes a subscription into PostgreSQL tables of its own,
each a process of its own as they are run, and the tables end up saying what the orders came to; when
every event is delivered again (as after a rewind) to tables that lost rows, they are rebuilt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from replaydesk_client import Client, NotFound

from tests.client.conftest import SOURCE
from tests.client.test_subscribe import caught_up, eventually

pytestmark = pytest.mark.timeout(300)

ORDERS = Path(__file__).resolve().parents[2] / "examples" / "orders"


@pytest.fixture
def orders_dsn():
    """The read model's own database, on the session's PostgreSQL."""
    name = f"orders_example_{uuid.uuid4().hex[:8]}"
    url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    admin_url = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def example_env(server) -> dict[str, str]:
    return {
        "PYTHONPATH": str(SOURCE / "src"),
        "REPLAYDESK_URL": server.url,
        "REPLAYDESK_TOKEN": server.token,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }


def start_read_model(server, log: Path, *args: str) -> subprocess.Popen:
    """The read model, its log in a file (a pipe nobody reads would fill up and stop it)."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, str(ORDERS / "read_model.py"), *args],
            env=example_env(server),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    finally:
        process.kill()


def acknowledged_all(client: Client, subscription: str) -> bool:
    """The read model creates its subscription when it starts: until then there is nothing to ask."""
    try:
        return bool(caught_up(client, subscription))
    except NotFound:
        return False


def rewind(server, client: Client, subscription: str) -> dict:
    """A rewind to the start as the README walks through it: the admin asks, avery approves what the
    dry run showed, and `up`'s worker runs it. Its result."""
    body = {"kind": "rewind", "params": {"subscription": subscription, "to_position": 0}, "reason": "rebuild"}
    job = httpx.post(f"{server.url}/api/v1/jobs", json=body, headers=bearer(server.token), timeout=30).json()
    assert job["state"] == "pending_approval", job
    approval = {"params_sha256": job["params_sha256"], "password": server.approver_password}
    approved = httpx.post(
        f"{server.url}/api/v1/jobs/{job['id']}/approve",
        json=approval,
        headers=bearer(server.approver_token),
        timeout=30,
    )
    # Approved, it is queued, and `up`'s worker may have taken it before the answer was written.
    assert approved.json()["state"] in ("queued", "running", "succeeded"), approved.text
    eventually(lambda: client.get(f"/api/v1/jobs/{job['id']}")["state"] == "succeeded", what="the rewind")
    return client.get(f"/api/v1/jobs/{job['id']}")["result"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def read_model_rows(dsn: str, schema: str) -> dict[str, dict]:
    query = f"SELECT stream, order_id, customer, status, lines, total_cents, version FROM {schema}.orders"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query).fetchall()
    columns = ["stream", "order_id", "customer", "status", "lines", "total_cents", "version"]
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows}


def test_the_read_model_follows_the_order_service_and_rebuilds_what_it_lost(server, orders_dsn, tmp_path):
    category = f"order{uuid.uuid4().hex[:8]}"
    schema = f"orders_{uuid.uuid4().hex[:8]}"
    first = f"orders_rm_{uuid.uuid4().hex[:8]}"
    common = ["--dsn", orders_dsn, "--schema", schema, "--category", category]

    logs = tmp_path / "first.log", tmp_path / "second.log"
    read_model = start_read_model(server, logs[0], *common, "--subscription", first)
    service = subprocess.run(
        [sys.executable, str(ORDERS / "service.py"), "--orders", "4", "--category", category, "--seed", "15"],
        env=example_env(server),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert service.returncode == 0, service.stderr
    orders = {order["stream"]: order for order in map(json.loads, service.stdout.splitlines())}
    with Client(server.url, server.token) as client:
        versions = {stream: client.get(f"/api/v1/streams/{stream}")["version"] for stream in orders}
        eventually(lambda: acknowledged_all(client, first), what="every event acknowledged")
        assert stop(read_model) == 0, logs[0].read_text()
        followed = read_model_rows(orders_dsn, schema)

        # The read model loses half its rows (restored from an old backup, say); a rewind of its
        # subscription to the start, approved by a second person, delivers every event again.
        lost = sorted(orders)[::2]
        with psycopg.connect(orders_dsn) as conn:
            conn.execute(f"DELETE FROM {schema}.orders WHERE stream = ANY(%s)", [lost])
        rewound = rewind(server, client, first)
        assert rewound["events"] == sum(versions.values())
        read_model = start_read_model(server, logs[1], *common, "--subscription", first)
        eventually(lambda: acknowledged_all(client, first), what="every event acknowledged again")
        assert stop(read_model) == 0, logs[1].read_text()
        rebuilt = read_model_rows(orders_dsn, schema)

    expected = {stream: {**order, "version": versions[stream]} for stream, order in orders.items()}
    assert {order["status"] for order in orders.values()} >= {"shipped"}
    assert followed == expected
    assert rebuilt == expected
