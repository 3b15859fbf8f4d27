"""The client is tested as an application uses it: against a real `replaydesk up`, started once for these
tests in a home of its own (its own embedded PostgreSQL and Redis), and imported from its source.

The client is its own package (clients/python) with its own dependencies; it is put on sys.path here
rather than installed with the project, so that the project's install stays one `pip install -e`, and
tests/client/test_package.py checks the wheel that is published."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.console.test_up import REPLAYDESK, Up, clean_up, token_for, up_environment
from tests.ports import free_port

SOURCE = Path(__file__).resolve().parents[2] / "clients" / "python"
sys.path.insert(0, str(SOURCE / "src"))

# Appends are limited to a few a second so that a test can pass the limit; reads that wait for a
# projection give up after a second, so that a test of a 503 is quick. The demo's projections are
# installed (REPLAYDESK_DEMO) without its data, for the waits to have a consumer to wait for.
SERVER_SETTINGS = {
    "REPLAYDESK_DEMO": "1",
    "REPLAYDESK_RATE_APPEND": "5/s",
    "REPLAYDESK_READ_WAIT_SECONDS": "1",
}


APPROVER_PASSWORD = "a long approver password"


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    # A second person, who approves what the admin asks for (a rewind, say).
    approver_token: str = ""
    approver_password: str = ""


@pytest.fixture(scope="package")
def server():
    """One server for the package's tests, stopped after the last of them."""
    home = Path(tempfile.mkdtemp(prefix="rd-client-"))
    env = up_environment(home, **SERVER_SETTINGS)
    run = Up.start(env, "--port", str(free_port()))
    try:
        url = run.wait_ready().rstrip("/")
        subprocess.run(
            [REPLAYDESK, "user", "avery", "--role", "approver"],
            env=env,
            input=APPROVER_PASSWORD,
            text=True,
            capture_output=True,
            timeout=60,
            check=True,
        )
        found = Server(url, token_for(env, "admin"), token_for(env, "avery"), APPROVER_PASSWORD)
        demo_projections_are_consumers(found)
        yield found
        assert run.stop() == 0, run.output
    finally:
        clean_up(run, home)
        shutil.rmtree(home, ignore_errors=True)


def demo_projections_are_consumers(server: Server, timeout: float = 60) -> None:
    """Projections get their consumer rows from the dispatcher and the tick, soon after `up` is ready."""
    headers = {"Authorization": f"Bearer {server.token}"}
    deadline = time.monotonic() + timeout
    while True:
        consumers = httpx.get(f"{server.url}/api/v1/consumers", headers=headers, timeout=10).json()["results"]
        if {"users_directory", "access"} <= {consumer["name"] for consumer in consumers}:
            return
        assert time.monotonic() < deadline, consumers
        time.sleep(0.2)
