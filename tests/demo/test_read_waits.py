"""Reads that wait for a projection (min_position) are capped per process and per user, so they never
starve the web tier: past the caps they are answered 429 with Retry-After at once."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from console import runtime
from core.redis import client as redis_client
from streams import read_waits
from streams.consumers import run_projection
from tests.conftest import bearer_token, person
from tests.demo.test_read_your_writes import create_user
from tests.ports import free_port
from tests.recovery.crash_helpers import clear_queues
from tests.streams.test_api_append import assert_problem
from tests.streams.test_projection_crashes import Processes
from tests.web import wait_until_serving

WAITERS = 100


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


@pytest.fixture
def processes(tmp_path):
    """Processes the test starts, all killed at the end; the appends' nudges to workers, none of which
    runs here, are dropped."""
    running = Processes(tmp_path)
    yield running
    running.stop_all()
    clear_queues()


@pytest.mark.django_db
def test_a_read_past_the_users_cap_is_429_with_retry_after_and_one_already_applied_still_answers(
    api, operator, settings, no_waiting_slots
):
    settings.REPLAYDESK_READ_WAITS_PER_USER = 2
    run_projection("users_directory")
    applied = create_user("1")
    run_projection("users_directory")
    pending = create_user("2")
    # Two reads of this user wait in other processes of the web tier.
    redis_client().zadd(
        read_waits.user_key(operator.pk), {"other-1": time.time() + 60, "other-2": time.time() + 60}
    )
    response = api.get("/api/v1/demo/users/2", {"min_position": pending})
    problem = assert_problem(response, 429)
    assert problem["type"].endswith(":too-many-waiting-reads")
    assert "REPLAYDESK_READ_WAITS_PER_USER" in problem["detail"]
    assert response["Retry-After"] == "1"
    assert api.get("/api/v1/demo/users/1", {"min_position": applied}).status_code == 200
    redis_client().zrem(read_waits.user_key(operator.pk), "other-1")
    settings.REPLAYDESK_READ_WAIT_SECONDS = 0
    assert_problem(api.get("/api/v1/demo/users/2", {"min_position": pending}), 503)


@pytest.mark.django_db
def test_a_read_past_the_process_cap_is_429(api, settings, no_waiting_slots):
    settings.REPLAYDESK_READ_WAITS_PER_PROCESS = 1
    run_projection("users_directory")
    pending = create_user("1")
    with read_waits.waiting_slot("someone-else"):
        response = api.get("/api/v1/demo/users/1", {"min_position": pending})
    problem = assert_problem(response, 429)
    assert "REPLAYDESK_READ_WAITS_PER_PROCESS" in problem["detail"] and response["Retry-After"] == "1"


@pytest.mark.django_db
def test_a_read_for_a_position_no_event_has_is_422_at_once_and_waits_in_no_slot(
    api, operator, settings, no_waiting_slots
):
    settings.REPLAYDESK_READ_WAIT_SECONDS = 30  # were it to wait, the test would time out
    settings.REPLAYDESK_READ_WAITS_PER_PROCESS = 1
    run_projection("users_directory")
    last = create_user("1")

    with read_waits.waiting_slot("someone-else"):  # the process has no slot left: no wait is possible
        response = api.get("/api/v1/demo/users/1", {"min_position": last + 1})

    problem = assert_problem(response, 422)
    assert problem["errors"]["min_position"] == [
        f"no event has position {last + 1}; the log's last is {last}"
    ]
    assert redis_client().zcard(read_waits.user_key(operator.pk)) == 0


@pytest.mark.django_db
def test_a_users_slot_left_by_a_process_that_died_expires(operator, settings, no_waiting_slots):
    settings.REPLAYDESK_READ_WAITS_PER_USER = 1
    # A slot whose holder died: it was never given back, and its time is up.
    redis_client().zadd(read_waits.user_key(operator.pk), {"died": time.time() - 1})
    with read_waits.waiting_slot(operator.pk):
        assert redis_client().zcard(read_waits.user_key(operator.pk)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_hundred_waiting_reads_leave_appends_and_healthz_to_answer(processes, tmp_path, no_waiting_slots):
    """The web server as `replaydesk up` starts it; a hundred reads wait for a position that is not
    applied (no worker runs the projection), and an append and /healthz still answer while the admitted
    waiters are still waiting."""
    sam = person("sam", "operator")
    token = bearer_token(sam)
    run_projection("users_directory")
    pending = create_user("1")
    processes.env |= {
        "REPLAYDESK_READ_WAIT_SECONDS": "30",
        "REPLAYDESK_READ_WAITS_PER_PROCESS": "2",
        "REPLAYDESK_READ_WAITS_PER_USER": "3",
    }
    port = free_port()
    started = runtime.children(host="127.0.0.1", port=port, home=tmp_path, schedule="-")
    web = next(child for child in started if child.name == "web")
    server = processes.start("web", web.argv)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    wait_until_serving(url, server, tmp_path / "web.log")
    answers: list[httpx.Response] = []

    def read() -> None:
        response = httpx.get(
            f"{url}/api/v1/demo/users/1", params={"min_position": pending}, headers=headers, timeout=60
        )
        answers.append(response)

    waiters = [threading.Thread(target=read) for _ in range(WAITERS)]
    for waiter in waiters:
        waiter.start()
    slots = read_waits.user_key(sam.pk)
    deadline = time.monotonic() + 60
    while len(answers) + redis_client().zcard(slots) < WAITERS:
        assert time.monotonic() < deadline, f"{len(answers)} answered, {redis_client().zcard(slots)} waiting"
        time.sleep(0.05)
    admitted = redis_client().zcard(slots)

    appended = httpx.post(
        f"{url}/api/v1/streams/order-1/events",
        json={"events": [{"id": str(uuid.uuid4()), "type": "OrderPlaced", "data": {"total": 5}}]},
        headers=headers,
        timeout=20,
    )
    healthz = httpx.get(f"{url}/healthz", timeout=20)

    assert appended.status_code == 201, appended.text
    assert healthz.status_code == 200
    assert 1 <= admitted <= 3
    assert len(answers) == WAITERS - admitted, "the admitted reads are still waiting"
    assert all(answer.status_code == 429 and answer.headers["Retry-After"] == "1" for answer in answers)

    run_projection("users_directory")
    for waiter in waiters:
        waiter.join(timeout=60)
    assert sorted(answer.status_code for answer in answers) == [200] * admitted + [429] * (WAITERS - admitted)
