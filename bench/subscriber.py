"""A subscription's reader in a process of its own, for the lease takeover of section 7: it fetches a
batch over HTTP and acknowledges it, fetches the next, handles half of it, says so on stdout, and waits
to be killed (SIGKILL) with the rest of the batch unacknowledged.

`python -m bench.subscriber BASE_URL SUBSCRIPTION BATCH`, the bearer token in REPLAYDESK_TOKEN. Only
httpx: a reader in another service knows nothing of Django.
"""

from __future__ import annotations

import json
import os
import sys
import time

import httpx


def main(base_url: str, name: str, batch: int) -> None:
    headers = {"Authorization": f"Bearer {os.environ['REPLAYDESK_TOKEN']}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        fetch = f"/api/v1/subscriptions/{name}/fetch"
        first = _post(client, fetch, {"reader": "victim", "max": batch})
        _post(
            client,
            f"/api/v1/subscriptions/{name}/ack",
            {"lease": first["lease"], "position": first["delivered_up_to"]},
        )
        second = _post(client, fetch, {"reader": "victim", "max": batch})
        events = second["events"]
        handled = events[: len(events) // 2]
        report = {
            "lease": second["lease"],
            "lease_expires_at": second["lease_expires_at"],
            "acknowledged": first["delivered_up_to"],
            "unacknowledged": [events[0]["position"], events[-1]["position"]] if events else None,
            "handled": len(handled),
        }
        print(json.dumps(report), flush=True)
        time.sleep(3600)


def _post(client: httpx.Client, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    response.raise_for_status()
    return response.json()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
