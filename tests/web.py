"""A web server a test started as a process of its own: waiting until it answers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, *, seconds: float = 30) -> None:
    """Return once `url`/healthz answers 200; fail with the server's log if it exits or takes longer."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and server.poll() is None, log.read_text()
        time.sleep(0.1)
