"""The snapshots API: take a snapshot (a job), list the catalogue, read one with its manifest."""

import datetime as dt

import pytest

from recovery.models import Job, Snapshot
from recovery.runner import run_inline
from streams.consumers import run_projection
from streams.models import Event
from tests.streams.projection_helpers import create_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]

SNAPSHOT_FIELDS = {
    "id",
    "projection",
    "name",
    "position",
    "version",
    "taken_at",
    "rows",
    "bytes",
    "job",
    "scheduled",
}


@pytest.fixture(autouse=True)
def _snapshot_store(settings, tmp_path):
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path


def is_problem(response, status):
    return response.status_code == status and response["Content-Type"] == "application/problem+json"


def users(*uids):
    for uid in uids:
        create_user(uid)
    run_projection("users_directory")


def catalogued(projection, name):
    """A catalogue row (the files do not matter to the list)."""
    return Snapshot.objects.create(
        projection=projection,
        name=name,
        position=1,
        version=1,
        taken_at=dt.datetime.now(dt.UTC),
        rows=1,
        bytes=1,
        manifest={},
    )


def writes():
    return Job.objects.count(), Event.objects.count(), Snapshot.objects.count()


def test_a_requested_snapshot_is_taken_and_listed_with_its_manifest(api):
    users("1", "2")

    response = api.post(
        "/api/v1/snapshots",
        {"projection": "users_directory", "reason": "before the migration"},
        format="json",
    )

    assert response.status_code == 202
    job = response.json()
    assert (job["kind"], job["target"], job["state"]) == ("snapshot", "users_directory", "queued")
    assert (job["reason"], job["requested_by"]) == ("before the migration", "olivia")
    assert response["Location"] == f"/api/v1/jobs/{job['id']}"
    assert api.get("/api/v1/snapshots").json() == {"results": [], "next": None}

    run_inline(job["id"])

    [listed] = api.get("/api/v1/snapshots?projection=users_directory").json()["results"]
    assert set(listed) == SNAPSHOT_FIELDS
    assert (listed["projection"], listed["job"], listed["scheduled"]) == ("users_directory", job["id"], False)
    assert listed["rows"] == 2 + 2 + 1  # users, stream checkpoints, the checkpoint
    assert api.get(f"/api/v1/jobs/{job['id']}").json()["result"]["snapshot"] == listed["id"]
    detail = api.get(f"/api/v1/snapshots/{listed['id']}").json()
    assert set(detail) == SNAPSHOT_FIELDS | {"manifest"}
    manifest = detail["manifest"]
    assert (manifest["projection"], manifest["position"]) == ("users_directory", listed["position"])
    tables = {t["table"]: t for t in manifest["tables"]}
    assert tables["users"]["rows"] == 2 and len(tables["users"]["sha256"]) == 64


@pytest.mark.parametrize(
    "body, field, status",
    [
        ({"projection": "nope", "reason": "x"}, "projection", 422),
        ({"reason": "x"}, "projection", 400),
        ({"projection": "users_directory"}, "reason", 400),
        ({"projection": "users_directory", "reason": " "}, "reason", 400),
        ({"projection": "users_directory", "reason": "x", "when": "now"}, "when", 400),
    ],
)
def test_a_bad_snapshot_request_is_refused_and_nothing_written(api, body, field, status):
    users("1")
    before = writes()
    response = api.post("/api/v1/snapshots", body, format="json")
    assert is_problem(response, status)
    assert field in response.json()["errors"]
    assert writes() == before


def test_a_snapshot_while_a_replay_holds_the_projection_gets_409_naming_it(api):
    users("1")
    replay = api.post(
        "/api/v1/jobs",
        {"kind": "replay", "params": {"projection": "users_directory"}, "reason": "x"},
        format="json",
    ).json()
    before = writes()
    response = api.post("/api/v1/snapshots", {"projection": "users_directory", "reason": "y"}, format="json")
    assert is_problem(response, 409)
    assert response.json()["job"] == replay["id"]
    assert writes() == before


def test_snapshots_filter_by_projection_and_page_newest_first(api):
    users_snaps = [catalogued("users_directory", f"u{n}").pk for n in range(3)]
    access = catalogued("access", "a0").pk

    def ids(url):
        return [s["id"] for s in api.get(url).json()["results"]]

    assert ids("/api/v1/snapshots") == [access, *users_snaps[::-1]]
    assert ids("/api/v1/snapshots?projection=access") == [access]
    first = api.get("/api/v1/snapshots?projection=users_directory&limit=2").json()
    assert [s["id"] for s in first["results"]] == users_snaps[:0:-1]
    second = api.get(f"/api/v1/snapshots?projection=users_directory&limit=2&cursor={first['next']}").json()
    assert [s["id"] for s in second["results"]] == users_snaps[:1]
    assert second["next"] is None


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("cursor=x", "cursor"), ("kind=a", "kind")])
def test_bad_list_parameters_are_refused(api, query, field):
    response = api.get(f"/api/v1/snapshots?{query}")
    assert is_problem(response, 400)
    assert field in response.json()["errors"]


def test_an_unknown_snapshot_is_404(api):
    response = api.get("/api/v1/snapshots/999999")
    assert is_problem(response, 404)
    assert "no snapshot has id 999999" in response.json()["detail"]


@pytest.mark.parametrize("method, url", [("get", "/api/v1/snapshots"), ("post", "/api/v1/snapshots")])
def test_anonymous_requests_are_refused(anonymous_api, method, url):
    catalogued("users_directory", "u0")
    before = writes()
    response = getattr(anonymous_api, method)(
        url, {"projection": "users_directory", "reason": "x"}, format="json"
    )
    assert response.status_code in (401, 403)
    assert "results" not in response.json()
    assert writes() == before


def test_anonymous_cannot_read_a_snapshot(anonymous_api):
    snapshot = catalogued("users_directory", "u0")
    response = anonymous_api.get(f"/api/v1/snapshots/{snapshot.pk}")
    assert response.status_code in (401, 403)
    assert "manifest" not in response.json()
