"""Section 7: subscriptions over HTTP. One reader's delivery rate through fetch + ack against gunicorn
started as `replaydesk up` starts it, next to the in-process projection runner reading the same events;
and how long a partition waits after its reader is killed with SIGKILL mid-batch, against its lease.

Both readers read the last `subscription_events` events of the log (the demo history), unfiltered: the
subscription's one partition and the projection's checkpoint are both set to the position before them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from bench import server as servers
from bench.context import Context, interleaved
from bench.measure import row
from bench.suite_appends import operator_token

BATCH = 500
LEASE_SECONDS = 2
READER = "bench-reader"
RUNNER = "bench_reader"
HTTP = "replaydesk"
IN_PROCESS = "in-process runner"


def run(ctx: Context) -> None:
    token = operator_token()
    port = servers.free_port()
    argv = servers.up_web_argv(port)
    server = servers.web_server(argv, ctx.env, port)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as client:
            _delivery(ctx, client)
            _takeover(ctx, client, token)
    finally:
        servers.stop_web_server(server)
    served = argv[argv.index("console.wsgi") :]
    bind = served.index("--bind")
    ctx.notes["subscriptions_web_server"] = " ".join(served[:bind] + served[bind + 2 :])


# --- delivery to one reader


def _delivery(ctx: Context, client: httpx.Client) -> None:
    after, head, count = _last_events(ctx.url, ctx.sizes.subscription_events)
    projection = _reader_projection()
    samples = {HTTP: [], IN_PROCESS: []}
    try:
        _read_over_http(client, "bench_warmup", after=max(after, head - 2 * BATCH))  # untimed
        for repetition in range(ctx.sizes.repetitions):
            for system in interleaved(tuple(samples), repetition):
                if system == HTTP:
                    seconds, read = _read_over_http(client, f"bench_delivery_{repetition}", after)
                else:
                    seconds, read = _run_projection(projection, after)
                # Creating and deleting a subscription appends its audit events: a few more to read.
                if not count <= read <= count + 10 * (repetition + 2):
                    raise RuntimeError(f"{system} read {read} events, not the {count} expected")
                samples[system].append(read / seconds)
            ctx.log(f"subscription delivery rep {repetition + 1}: {samples}")
    finally:
        _forget_projection(projection)
    figure = row(
        "subscriptions",
        f"subscription over HTTP, 1 reader, batches of {BATCH}",
        "events/s",
        "higher",
        samples,
        events=count,
        batch=BATCH,
        compared_to=IN_PROCESS,
    )
    ctx.rows.append(figure)


def _last_events(url: str, wanted: int) -> tuple[int, int, int]:
    """(the position before the last `wanted` events of the log, the head, how many events lie between)."""
    with psycopg.connect(url) as conn:
        head = conn.execute("SELECT COALESCE(max(position), 0) FROM streams_event").fetchone()[0]
        found = conn.execute(
            "SELECT position FROM streams_event ORDER BY position DESC OFFSET %s LIMIT 1", [wanted]
        ).fetchone()
        after = found[0] if found else 0
        count = conn.execute(
            "SELECT count(*) FROM streams_event WHERE position > %s AND position <= %s", [after, head]
        ).fetchone()[0]
    return after, head, count


def _subscription(name: str, *, after: int, lease_seconds: int = 30):
    """A subscription of the whole log with one partition, its checkpoint at `after`."""
    from streams import subscriptions
    from streams.models import Consumer, SubscriptionPartition

    subscription = subscriptions.create_subscription(
        name=name, actor="bench", partitions=1, lease_seconds=lease_seconds
    )
    SubscriptionPartition.objects.filter(subscription=subscription).update(
        checkpoint=after, delivered_up_to=after
    )
    Consumer.objects.filter(pk=subscription.pk).update(position=after)
    return subscription


def _delete_subscription(name: str) -> None:
    from streams import subscriptions

    subscriptions.delete_subscription(name=name, actor="bench")


def _read_over_http(client: httpx.Client, name: str, after: int) -> tuple[float, int]:
    """Seconds for one reader to fetch and acknowledge every event after `after` up to the head, and how
    many it got."""
    _subscription(name, after=after)
    head = _head()
    fetch, ack = f"/api/v1/subscriptions/{name}/fetch", f"/api/v1/subscriptions/{name}/ack"
    read = 0
    try:
        started = time.perf_counter()
        while True:
            batch = _post(client, fetch, {"reader": READER, "max": BATCH})
            if not batch["events"]:
                break
            read += len(batch["events"])
            _post(client, ack, {"lease": batch["lease"], "position": batch["delivered_up_to"]})
            if batch["delivered_up_to"] >= head:
                break
        return time.perf_counter() - started, read
    finally:
        _delete_subscription(name)


def _post(client: httpx.Client, path: str, body: dict) -> dict:
    response = client.post(path, json=body)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
    return response.json()


def _reader_projection():
    """A projection that follows the whole log and does nothing with its events: the runner's own cost
    of reading them (as Event objects, as a projection's `apply` gets them, in batches of 500), moving
    its checkpoint and its per-stream checkpoints."""
    from streams import projections

    class BenchReader(projections.Projection, register=False):
        name = RUNNER
        batch_size = BATCH
        tables = ("CREATE TABLE untouched (position bigint PRIMARY KEY)",)  # the contract asks for one

        def apply(self, cursor, events) -> None:
            pass

    projections.add(BenchReader)
    return projections.get_projection(RUNNER)


def _head() -> int:
    from streams import selectors

    return selectors.head()


def _run_projection(projection, after: int) -> tuple[float, int]:
    """Seconds for the runner (streams.consumers.run_projection) to catch up from `after` to the head."""
    from django.db import connection

    from streams import consumers, projections

    _forget_projection(projection)
    consumers.ensure_projection(projection)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {projections.quote(projection.schema)}.checkpoint SET position = %s", [after])
    head = _head()
    started = time.perf_counter()
    result = consumers.run_projection(projection.name, budget_seconds=3600)
    seconds = time.perf_counter() - started
    if not result.caught_up or projections.read_checkpoint(projection)[0] < head:
        raise RuntimeError(f"the runner stopped before the head: {result}")
    return seconds, result.applied


def _forget_projection(projection) -> None:
    from django.db import connection

    from streams import projections
    from streams.models import Consumer

    with connection.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA IF EXISTS {projections.quote(projection.schema)} CASCADE")
    Consumer.objects.filter(name=projection.name).delete()


# --- lease takeover after a reader is killed


def _takeover(ctx: Context, client: httpx.Client, token: str) -> None:
    _, head, _ = _last_events(ctx.url, 0)
    samples = {"replaydesk": [], "after the lease expired": []}
    for repetition in range(ctx.sizes.repetitions):
        name = f"bench_takeover_{repetition}"
        _subscription(name, after=max(0, head - 4 * BATCH), lease_seconds=LEASE_SECONDS)
        try:
            killed_at, victim = _kill_mid_batch(ctx, client, name, token)
            batch = _post(client, f"/api/v1/subscriptions/{name}/fetch", {"reader": "heir", "max": BATCH})
            while not batch["events"]:
                batch = _post(
                    client,
                    f"/api/v1/subscriptions/{name}/fetch",
                    {"reader": "heir", "max": BATCH, "wait": 10 * LEASE_SECONDS},
                )
            received_at, received_wall = time.monotonic(), dt.datetime.now(dt.UTC)
            _check_redelivered(batch, victim)
            expires = dt.datetime.fromisoformat(victim["lease_expires_at"])
            samples["replaydesk"].append(received_at - killed_at)
            samples["after the lease expired"].append((received_wall - expires).total_seconds())
        finally:
            _delete_subscription(name)
        ctx.log(f"lease takeover rep {repetition + 1}: {samples}")
    ctx.rows.append(
        row(
            "subscriptions",
            "lease takeover after SIGKILL of the reader",
            "s",
            "lower",
            samples,
            lease_seconds=LEASE_SECONDS,
        )
    )
    ctx.rows.append(
        row(
            "subscriptions",
            "lease takeover, in lease times",
            "× lease",
            "lower",
            {"replaydesk": [seconds / LEASE_SECONDS for seconds in samples["replaydesk"]]},
            lease_seconds=LEASE_SECONDS,
        )
    )


def _kill_mid_batch(ctx: Context, client: httpx.Client, name: str, token: str) -> tuple[float, dict]:
    """Start a reader process (bench/subscriber.py), let it take a batch and handle half of it, and kill
    it with SIGKILL: (when it was killed, what it said it held)."""
    victim = subprocess.Popen(
        [sys.executable, "-m", "bench.subscriber", str(client.base_url).rstrip("/"), name, str(BATCH)],
        env={**os.environ, **ctx.env, "REPLAYDESK_TOKEN": token},
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = victim.stdout.readline()
        if not line:
            raise RuntimeError(f"the reader exited with {victim.wait()} before taking a batch")
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
        victim.stdout.close()
    return killed_at, json.loads(line)


def _check_redelivered(batch: dict, victim: dict) -> None:
    """The next reader starts where the killed one's acknowledgements end: nothing lost, nothing skipped."""
    first = batch["events"][0]["position"]
    expected = (victim["unacknowledged"] or [None])[0]
    if first != expected or batch["lease"] == victim["lease"]:
        raise RuntimeError(f"after the kill the partition went on at {first}, not as expected: {victim}")
