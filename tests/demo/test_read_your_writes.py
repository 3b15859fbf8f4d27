"""Projection reads with min_position: wait for the write to be applied, or 503 with Retry-After."""

import threading
import time

import pytest
from django.db import connection

from streams.consumers import run_projection
from streams.services import append_events
from tests.streams.test_api_append import assert_problem


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


def create_user(uid, name="Ann"):
    event = {
        "type": "UserCreated",
        "data": {"user_id": uid, "username": uid, "name": name, "email": "a@x.org"},
    }
    return append_events(stream=f"user-{uid}", events=[event]).last_position


@pytest.mark.django_db
def test_a_read_without_min_position_answers_at_once_with_what_is_applied(api):
    create_user("1")
    run_projection("users_directory")
    response = api.get("/api/v1/demo/users/1")
    assert response.status_code == 200 and response.json()["name"] == "Ann"
    assert_problem(api.get("/api/v1/demo/users/2"), 404)


@pytest.mark.django_db
def test_a_read_for_a_position_not_applied_in_time_is_503_with_retry_after(api, settings):
    settings.REPLAYDESK_READ_WAIT_SECONDS = 0.3
    run_projection("users_directory")
    position = create_user("1")
    started = time.monotonic()
    response = api.get("/api/v1/demo/users/1", {"min_position": position})
    assert time.monotonic() - started >= 0.3
    problem = assert_problem(response, 503)
    assert response["Retry-After"] == "1"
    assert (problem["min_position"], problem["checkpoint"]) == (position, 0)


@pytest.mark.django_db(transaction=True)
def test_a_read_waits_for_its_own_write_to_be_applied(api):
    run_projection("users_directory")
    position = create_user("1", name="Bea")

    def apply_soon():
        time.sleep(0.5)
        run_projection("users_directory")
        connection.close()

    thread = threading.Thread(target=apply_soon)
    thread.start()
    response = api.get("/api/v1/demo/users/1", {"min_position": position})
    thread.join()
    assert response.status_code == 200 and response.json()["name"] == "Bea"
    assert int(response["X-Replaydesk-Checkpoint"]) >= position


@pytest.mark.django_db
def test_access_reads_list_grants_by_user_or_resource(api):
    append_events(
        stream="user-1",
        events=[
            {
                "type": "PermissionGranted",
                "data": {"user_id": "1", "resource": "issueABC", "permission": "write"},
            },
            {
                "type": "PermissionGranted",
                "data": {"user_id": "1", "resource": "repo-web", "permission": "read"},
            },
        ],
    )
    position = append_events(
        stream="user-2",
        events=[
            {
                "type": "PermissionGranted",
                "data": {"user_id": "2", "resource": "issueABC", "permission": "read"},
            },
        ],
    ).last_position
    run_projection("access")
    by_resource = api.get("/api/v1/demo/access", {"resource": "issueABC", "min_position": position}).json()
    assert [(g["user_id"], g["permission"]) for g in by_resource["results"]] == [
        ("1", "write"),
        ("2", "read"),
    ]
    by_user = api.get("/api/v1/demo/access", {"user_id": "1"}).json()["results"]
    assert {g["resource"] for g in by_user} == {"issueABC", "repo-web"}
    assert_problem(api.get("/api/v1/demo/access"), 422, "user_id")
    assert_problem(
        api.get("/api/v1/demo/access", {"user_id": "1", "min_position": "soon"}), 400, "min_position"
    )
