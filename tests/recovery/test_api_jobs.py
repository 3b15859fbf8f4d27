"""The jobs API: request, list, look at, cancel and retry jobs; the dry-run estimate; a projection's
rollback after a replay."""

import datetime as dt

import pytest
from django.db import connection

from recovery.models import Job, Snapshot
from recovery.runner import run_inline
from streams.consumers import run_projection
from streams.models import Event
from tests.streams.projection_helpers import create_user, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]

JOB_FIELDS = {
    "id",
    "kind",
    "target",
    "params",
    "params_sha256",
    "state",
    "reason",
    "requested_by",
    "approvals",
    "approvals_required",
    "progress",
    "result",
    "error",
    "created_at",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "cancel_requested_by",
}


def is_problem(response, status):
    return response.status_code == status and response["Content-Type"] == "application/problem+json"


def users(*uids):
    for uid in uids:
        create_user(uid)
    run_projection("users_directory")


def request_replay(api, **params):
    body = {"kind": "replay", "params": {"projection": "users_directory", **params}, "reason": "bad deploy"}
    return api.post("/api/v1/jobs", body, format="json")


def finished_job(kind, target, state=Job.State.SUCCEEDED):
    """A job row as history leaves it (no need to run one to have something to list)."""
    return Job.objects.create(
        kind=kind,
        target=target,
        params={"projection": target},
        params_sha256="0" * 64,
        state=state,
        reason="history",
        requested_by="someone",
    )


def writes():
    return Job.objects.count(), Event.objects.count()


def test_a_requested_replay_is_listed_and_finishes_with_its_result(api):
    users("1", "2", "3")

    response = request_replay(api)

    assert response.status_code == 201
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert response["Location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["kind"], job["target"], job["state"]) == ("replay", "users_directory", "queued")
    assert (job["requested_by"], job["reason"], job["approvals"]) == ("olivia", "bad deploy", [])
    assert job["params"]["projection"] == "users_directory" and len(job["params_sha256"]) == 64
    assert set(job["progress"]) == {"stage", "done", "total", "rate", "eta_seconds"}
    assert dt.datetime.fromisoformat(job["created_at"]) <= dt.datetime.now(dt.UTC)
    assert [j["id"] for j in api.get("/api/v1/jobs").json()["results"]] == [job["id"]]

    run_inline(job["id"])

    done = api.get(f"/api/v1/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["finished_at"] is not None
    assert done["result"]["events_replayed"] == 3
    assert done["progress"]["stage"] == "done" and done["progress"]["done"] == 3
    assert {"at", "level", "message"} == set(done["log"][0])
    assert any("swapped in" in line["message"] for line in done["log"])
    assert set(projected_users()) == {"1", "2", "3"}


def test_jobs_filter_by_kind_state_and_target(api):
    replay = finished_job("replay", "users_directory")
    failed = finished_job("verify", "users_directory", Job.State.FAILED)
    other = finished_job("replay", "access")

    def ids(query):
        response = api.get(f"/api/v1/jobs?{query}")
        assert response.status_code == 200
        return [j["id"] for j in response.json()["results"]]

    assert ids("") == [other.pk, failed.pk, replay.pk]
    assert ids("kind=replay") == [other.pk, replay.pk]
    assert ids("state=failed") == [failed.pk]
    assert ids("target=users_directory") == [failed.pk, replay.pk]
    assert ids("kind=replay&target=access") == [other.pk]
    assert ids("kind=snapshot") == []


def test_jobs_are_paged_newest_first_by_id(api):
    made = [finished_job("snapshot", f"p{n}").pk for n in range(5)]
    seen, url, pages = [], "/api/v1/jobs?limit=2", 0
    while url:
        body = api.get(url).json()
        seen += [j["id"] for j in body["results"]]
        url = f"/api/v1/jobs?limit=2&cursor={body['next']}" if body["next"] else None
        pages += 1
    assert seen == made[::-1]
    assert pages == 3


@pytest.mark.parametrize(
    "query, field",
    [
        ("kind=rebuild", "kind"),
        ("state=done", "state"),
        ("target=" + "x" * 61, "target"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=abc", "cursor"),
        ("projection=users_directory", "projection"),
    ],
)
def test_bad_filters_are_refused_with_the_parameter_named(api, query, field):
    response = api.get(f"/api/v1/jobs?{query}")
    assert is_problem(response, 400)
    assert field in response.json()["errors"]


@pytest.mark.parametrize(
    "body, field, status",
    [
        ({"kind": "snapshot", "params": {"projection": "nope"}}, "projection", 422),
        ({"kind": "snapshot", "params": {}}, "projection", 422),
        ({"kind": "replay", "params": {"projection": "users_directory", "shards": 0}}, "shards", 422),
        (
            {"kind": "replay", "params": {"projection": "users_directory", "snapshot": 999999}},
            "snapshot",
            422,
        ),
        (
            {"kind": "replay", "params": {"projection": "users_directory", "stream": "user-404"}},
            "stream",
            422,
        ),
        (
            {"kind": "replay", "params": {"projection": "users_directory", "exclude": {"who": 1}}},
            "exclude.who",
            422,
        ),
        (
            {"kind": "replay", "params": {"projection": "users_directory", "exclude": {"event_ids": ["x"]}}},
            "exclude.event_ids",
            422,
        ),
        ({"kind": "restore", "params": {"projection": "users_directory"}}, "snapshot", 422),
        (
            {"kind": "restore", "params": {"projection": "users_directory", "before": "yesterday"}},
            "before",
            422,
        ),
        ({"kind": "verify", "params": {"projection": "users_directory", "repair": "yes"}}, "repair", 422),
        ({"kind": "resync", "params": {"sink": "nope"}}, "sink", 422),
        ({"kind": "rebuild", "params": {"projection": "users_directory"}}, "kind", 400),
        ({"kind": "replay", "params": {"projection": "users_directory", "speed": 2}}, "speed", 422),
        ({"kind": "replay", "params": ["users_directory"]}, "params", 400),
    ],
)
def test_bad_params_of_each_kind_are_refused_with_the_field_named_and_nothing_written(
    api, body, field, status
):
    """400 for a body not of its schema's form; 422 for params that break a rule of their kind."""
    users("1")
    before = writes()

    response = api.post("/api/v1/jobs", {**body, "reason": "because"}, format="json")

    assert is_problem(response, status)
    assert field in response.json()["errors"], response.json()
    assert writes() == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "replay", "params": {"projection": "users_directory"}}, "reason"),
        ({"kind": "replay", "params": {"projection": "users_directory"}, "reason": "  "}, "reason"),
        ({"params": {"projection": "users_directory"}, "reason": "x"}, "kind"),
        ({"kind": "replay", "params": {"projection": "users_directory"}, "reason": "x", "why": 1}, "why"),
    ],
)
def test_a_request_without_a_reason_or_kind_is_refused(api, body, field):
    users("1")
    before = writes()
    response = api.post("/api/v1/jobs", body, format="json")
    assert is_problem(response, 400)
    assert field in response.json()["errors"]
    assert writes() == before


def test_a_body_that_is_not_an_object_is_refused(api):
    response = api.post("/api/v1/jobs", ["replay"], format="json")
    assert is_problem(response, 400)
    assert "body" in response.json()["errors"]


def test_a_second_job_on_a_busy_projection_gets_409_naming_the_first(api):
    users("1")
    first = request_replay(api).json()
    before = writes()

    again = request_replay(api)
    verify = api.post(
        "/api/v1/jobs",
        {"kind": "verify", "params": {"projection": "users_directory"}, "reason": "check"},
        format="json",
    )

    for response in (again, verify):
        assert is_problem(response, 409)
        assert response.json()["job"] == first["id"]
        assert f"job {first['id']}" in response.json()["detail"]
    assert writes() == before


def test_a_queued_job_is_cancelled_and_a_second_cancel_is_409(api):
    users("1")
    job = request_replay(api).json()

    response = api.post(f"/api/v1/jobs/{job['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["cancel_requested_by"] == "olivia"
    assert Job.objects.get(pk=job["id"]).state == Job.State.CANCELLED
    again = api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert is_problem(again, 409)
    assert "cancelled already" in again.json()["detail"]
    # The projection is free again.
    assert request_replay(api).status_code == 201


def test_only_a_failed_job_is_retried(api):
    users("1", "2")
    snapshot = Snapshot.objects.create(
        projection="users_directory",
        name="gone",
        position=1,
        version=1,
        taken_at=dt.datetime.now(dt.UTC),
        rows=1,
        bytes=1,
        manifest={},
    )
    job = request_replay(api, snapshot=snapshot.pk).json()
    assert is_problem(api.post(f"/api/v1/jobs/{job['id']}/retry"), 409)  # queued
    snapshot.delete()  # the job will find its snapshot gone from the catalogue, and fail
    run_inline(job["id"])
    failed = api.get(f"/api/v1/jobs/{job['id']}").json()
    assert failed["state"] == "failed" and "no longer in the catalogue" in failed["error"]
    other = request_replay(api).json()  # a failed job does not hold its projection
    busy = api.post(f"/api/v1/jobs/{job['id']}/retry")
    assert is_problem(busy, 409) and busy.json()["job"] == other["id"]
    api.post(f"/api/v1/jobs/{other['id']}/cancel")

    response = api.post(f"/api/v1/jobs/{job['id']}/retry")

    assert response.status_code == 200
    assert response.json()["state"] == "queued"
    assert api.get("/api/v1/jobs?state=queued").json()["results"][0]["id"] == job["id"]


def test_a_succeeded_job_is_not_retried(api):
    users("1")
    job = request_replay(api).json()
    run_inline(job["id"])
    response = api.post(f"/api/v1/jobs/{job['id']}/retry")
    assert is_problem(response, 409)
    assert "only a failed job can be retried" in response.json()["detail"]
    assert Job.objects.get(pk=job["id"]).state == Job.State.SUCCEEDED


def test_the_estimate_counts_events_and_streams_and_writes_nothing(api):
    users("1", "2", "3")
    create_user("4")
    create_user("4b")
    dropped = str(Event.objects.get(stream__name="user-2").event_id)
    before = writes()

    response = api.post(
        "/api/v1/jobs/estimate",
        {"kind": "replay", "params": {"projection": "users_directory", "exclude": {"event_ids": [dropped]}}},
        format="json",
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "params",
        "params_sha256",
        "events",
        "streams",
        "excluded",
        "rate",
        "seconds",
        "basis",
        "breakdown",
        "notes",
    }
    assert (body["events"], body["excluded"], body["streams"]) == (4, 1, 5)
    # Per-stream counts are a write-back's; a replay's events are counted as a whole.
    assert (body["breakdown"], body["notes"]) == ([], [])
    assert body["params"]["exclude"]["event_ids"] == [dropped]
    assert body["rate"] > 0 and body["seconds"] is not None and "assumed" in body["basis"]
    assert writes() == before
    # The same body requests the job the estimate describes.
    job = api.post(
        "/api/v1/jobs",
        {
            "kind": "replay",
            "params": {"projection": "users_directory", "exclude": {"event_ids": [dropped]}},
            "reason": "drop user 2",
        },
        format="json",
    ).json()
    assert job["params_sha256"] == body["params_sha256"]


def test_the_estimate_refuses_bad_params_with_the_field_named(api):
    before = writes()
    response = api.post(
        "/api/v1/jobs/estimate", {"kind": "verify", "params": {"projection": "nope"}}, format="json"
    )
    assert is_problem(response, 422)
    assert "projection" in response.json()["errors"]
    assert writes() == before


def test_a_rollback_after_a_replay_swaps_the_previous_schema_back(api):
    users("1", "2")
    dropped = str(Event.objects.get(stream__name="user-2").event_id)
    job = request_replay(api, exclude={"event_ids": [dropped]}).json()
    run_inline(job["id"])
    assert set(projected_users()) == {"1"}

    response = api.post(
        "/api/v1/consumers/users_directory/rollback", {"reason": "wrong event"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"projection": "users_directory", "schema": "proj_users_directory"}
    assert set(projected_users()) == {"1", "2"}
    assert Event.objects.filter(type="ProjectionRolledBack", actor="olivia").count() == 1


def test_a_rollback_with_no_previous_schema_is_409_and_changes_nothing(api):
    users("1")
    before = writes()
    response = api.post("/api/v1/consumers/users_directory/rollback")  # no body: no reason given
    assert is_problem(response, 409)
    assert "no previous schema" in response.json()["detail"]
    assert writes() == before
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'proj_users_directory%%'")
        assert cursor.fetchone()[0] == 1


def test_a_rollback_while_a_job_works_on_the_projection_is_409(api):
    users("1")
    request_replay(api)
    response = api.post("/api/v1/consumers/users_directory/rollback", {}, format="json")
    assert is_problem(response, 409)
    assert "a job is working on users_directory" in response.json()["detail"]


def test_a_rollback_of_something_that_is_not_a_projection_is_404(api):
    response = api.post("/api/v1/consumers/nope/rollback", {}, format="json")
    assert is_problem(response, 404)


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs"),
        ("post", "/api/v1/jobs/estimate"),
        ("get", "/api/v1/jobs/1"),
        ("post", "/api/v1/jobs/1/cancel"),
        ("post", "/api/v1/jobs/1/retry"),
        ("post", "/api/v1/consumers/users_directory/rollback"),
    ],
)
def test_anonymous_requests_are_refused(anonymous_api, operator, method, url):
    job = finished_job("replay", "users_directory", Job.State.FAILED)
    url = url.replace("/1", f"/{job.pk}")
    before = writes()
    response = getattr(anonymous_api, method)(
        url, {"kind": "snapshot", "params": {"projection": "users_directory"}, "reason": "x"}, format="json"
    )
    assert response.status_code in (401, 403)
    assert writes() == before
    assert Job.objects.get(pk=job.pk).state == Job.State.FAILED


@pytest.mark.parametrize("method, path", [("get", ""), ("post", "/cancel"), ("post", "/retry")])
def test_an_unknown_job_is_404(api, method, path):
    response = getattr(api, method)(f"/api/v1/jobs/999999{path}")
    assert is_problem(response, 404)
    assert "no job has id 999999" in response.json()["detail"]
