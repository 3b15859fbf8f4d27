"""PostgreSQL drops the sessions of a worker or of the web tier in the middle of their work.

pg_terminate_backend ends the sessions of a real worker (each named `chaos-w0:<pid>`) while a replay's
lanes hold them, again and again: the job retries the slices that failed and finishes with every event
applied once. A live gunicorn (its sessions named `chaos-web`) takes appends while its sessions are
terminated under it: every request either succeeds or gets a clean 500 and succeeds when sent again
(the same event ids), and no batch is ever half written.
"""

import random
import sys
import threading
import time
import uuid

import httpx
import pytest
from django.db.models import Count

from recovery.models import Job, JobLogLine
from recovery.services import request_job
from streams.models import Event, Stream
from tests.chaos.helpers import (
    CHAOS,
    assert_live_equals_the_log_exactly_once,
    assert_no_job_left_running,
    busy_processes,
    lane_progress,
    terminate_sessions,
    wait_for_lane_progress,
    wait_until_finished,
)
from tests.conftest import bearer_token, person
from tests.ports import free_port
from tests.recovery.crash_helpers import History, counted_event_ids
from tests.streams.test_projection_crashes import Processes
from tests.web import wait_until_serving

TERMINATIONS = 4

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_a_replay_whose_worker_sessions_are_terminated_mid_lane_retries_and_finishes(chaos_workers):
    rng = random.Random(31)
    History(seed=31).add(10_000)
    worker = chaos_workers.worker(0)
    job = request_job(
        kind="replay",
        params={"projection": CHAOS, "shards": 4},
        requested_by="olivia",
        reason="the database drops the worker's sessions",
    )

    hits, seen = [], 0
    for _ in range(TERMINATIONS):
        wait_for_lane_progress(job.pk, beyond=seen)
        time.sleep(rng.uniform(0.0, 0.2))
        while not busy_processes(job.pk, worker=0):
            time.sleep(0.01)
        terminated = terminate_sessions("chaos-w0:%")
        state = Job.objects.get(pk=job.pk).state
        hits.append({"terminated": terminated, "state": state, "progress": lane_progress(job.pk)})
        seen = hits[-1]["progress"][1]
    job = wait_until_finished(job.pk, timeout=60)

    assert job.state == Job.State.SUCCEEDED, f"{job.error}\n{chaos_workers.tails()}"
    assert all(hit["terminated"] >= 1 and hit["state"] == Job.State.RUNNING for hit in hits), hits
    assert all(hit["progress"][2] > 0 for hit in hits), f"each hit landed while lanes were open: {hits}"
    retried = JobLogLine.objects.filter(job=job, message__startswith="lost its database session").count()
    assert retried >= TERMINATIONS, "slices failed with their sessions and were tried again"
    assert not JobLogLine.objects.filter(job=job, message__startswith="attempt").exists(), (
        "a lost session is not held against the job's attempts"
    )
    assert worker.poll() is None, "the worker lived on"
    assert_live_equals_the_log_exactly_once()
    assert job.result["events_replayed"] == len(counted_event_ids())
    assert_no_job_left_running()


# --- the web tier


@pytest.fixture
def web(tmp_path):
    processes = Processes(tmp_path)
    processes.env["PGAPPNAME"] = "chaos-web"
    processes.env["REPLAYDESK_RATE_APPEND"] = "off"  # retries come fast; this is not about rate limits
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "console.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", "2", "--timeout", "30", "--graceful-timeout", "1"]
    server = processes.start("gunicorn", argv)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url, server, tmp_path / "gunicorn.log")
    yield url
    processes.stop_all()


class Terminator(threading.Thread):
    """Terminates the web tier's sessions every few milliseconds; counts those caught mid-statement
    or mid-transaction."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.mid_work = 0

    def run(self) -> None:
        from django.db import connections

        try:
            while not self.stop.wait(0.005):
                with connections["default"].cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FILTER (WHERE state <> 'idle' AND pg_terminate_backend(pid)) "
                        "FROM pg_stat_activity WHERE application_name = 'chaos-web' "
                        "AND datname = current_database()"
                    )
                    hit = cursor.fetchone()[0]
                self.mid_work += hit
                if hit:
                    self.stop.wait(0.3)  # and let a few requests through
        finally:
            connections["default"].close()


def batch_of(stream: str, size: int) -> list[dict]:
    return [
        {"id": str(uuid.uuid4()), "type": "OrderLinePlaced", "data": {"line": n, "pad": "x" * 200}}
        for n in range(size)
    ]


def test_appends_whose_web_sessions_are_terminated_fail_cleanly_and_succeed_when_sent_again(web):
    headers = {"Authorization": f"Bearer {bearer_token(person('olivia', 'operator'))}"}
    batches = {f"order-{n}": batch_of(f"order-{n}", 300) for n in range(40)}
    answers: list[int] = []
    terminator = Terminator()
    terminator.start()
    try:
        with httpx.Client(base_url=web, headers=headers, timeout=20) as client:
            for stream, events in batches.items():
                for _ in range(30):
                    response = client.post(f"/api/v1/streams/{stream}/events", json={"events": events})
                    answers.append(response.status_code)
                    assert response.status_code in (201, 500), response.text[:500]
                    if response.status_code == 201:
                        assert response.json()["version"] == len(events)
                        break
                else:
                    raise AssertionError(f"{stream} never got through")
    finally:
        terminator.stop.set()
        terminator.join(10)

    assert terminator.mid_work > 0, "sessions were terminated in the middle of their work"
    assert answers.count(500) > 0, f"some requests lost their session: {answers}"
    for stream, events in batches.items():
        recorded = list(
            Event.objects.filter(stream__name=stream).order_by("sequence").values_list("event_id", "sequence")
        )
        assert [str(i) for i, _ in recorded] == [e["id"] for e in events], f"{stream} is all there, once"
        assert [s for _, s in recorded] == list(range(1, len(events) + 1))
    versions = dict(Stream.objects.filter(name__in=batches).values_list("name", "version"))
    assert versions == {stream: len(events) for stream, events in batches.items()}, "no version moved alone"
    per_stream = Event.objects.filter(stream__category="order").values("stream").annotate(n=Count("position"))
    assert {row["n"] for row in per_stream} == {300}, "no batch was half written"
