"""Approving and rejecting jobs through the API (POST /api/v1/jobs/{id}/approve|reject), changing a
waiting job (PATCH /api/v1/jobs/{id}), and the password asked again before a decision."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from recovery import reauth, services
from recovery.models import Approval, Job
from recovery.runner import run_inline
from streams.consumers import run_projection
from streams.models import Event
from tests.conftest import PASSWORD, bearer_token, person
from tests.streams.projection_helpers import create_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_projection_schemas", "four_eyes"),
]


@pytest.fixture(autouse=True)
def _directory():
    for uid in ("1", "2", "3"):
        create_user(uid)
    run_projection("users_directory")


def session_client(user) -> APIClient:
    """A browser's session on the API: logged in through the login form's code path just now."""
    client = APIClient()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(user)}")
    return client


def requested(api, **params) -> dict:
    body = {"kind": "replay", "params": {"projection": "users_directory", **params}, "reason": "bad deploy"}
    response = api.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def approve(client, job: dict, **body):
    body = {"params_sha256": job["params_sha256"], **body}
    return client.post(f"/api/v1/jobs/{job['id']}/approve", body, format="json")


def reject(client, job: dict, **body):
    return client.post(f"/api/v1/jobs/{job['id']}/reject", body, format="json")


def is_problem(response, status: int) -> bool:
    return response.status_code == status and response["Content-Type"] == "application/problem+json"


def audit_types(job_id: int) -> list[str]:
    events = Event.objects.filter(stream__name=f"console-job.{job_id}").order_by("position")
    return list(events.values_list("type", flat=True))


def state(job: dict) -> str:
    return Job.objects.get(pk=job["id"]).state


def test_an_approval_of_the_parameters_read_queues_the_job_and_it_runs(api, approver):
    job = requested(api)
    assert (job["state"], job["approvals"], job["approvals_required"]) == ("pending_approval", [], 1)

    response = approve(session_client(approver), job, comment="checked the dry run")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "queued"
    [approval] = body["approvals"]
    assert approval["approver"] == "avery" and approval["decision"] == "approve"
    assert approval["params_sha256"] == job["params_sha256"] and approval["comment"] == "checked the dry run"
    assert approval["valid"] is True and approval["expires_at"] > approval["created_at"]
    assert run_inline(job["id"]).state == "succeeded"
    listed = api.get("/api/v1/jobs").json()["results"][0]
    assert listed["approvals"][0]["approver"] == "avery" and listed["state"] == "succeeded"
    assert audit_types(job["id"])[:3] == ["JobRequested", "JobApproved", "JobQueued"]


def test_a_rejection_says_why_and_the_job_never_runs(api, approver):
    job = requested(api)
    client = session_client(approver)

    for body in ({}, {"comment": "  "}):
        refused = reject(client, job, **body)
        assert is_problem(refused, 400)
        assert refused.json()["errors"]["comment"] == ["say why the job is rejected (the requester reads it)"]
    assert state(job) == "pending_approval" and not Approval.objects.exists()

    response = reject(client, job, comment="the deploy is rolled back instead")

    assert response.status_code == 200 and response.json()["state"] == "rejected"
    assert response.json()["approvals"][0]["decision"] == "reject"
    assert run_inline(job["id"]).state == "rejected"
    assert "JobStarted" not in audit_types(job["id"])


def test_nobody_approves_their_own_request_through_the_api_and_the_attempt_is_audited(approver):
    both = person("quinn", "operator", "approver")
    client = session_client(both)
    job = requested(client)

    for refused in (approve(client, job), reject(client, job, comment="mine, actually")):
        assert is_problem(refused, 403)
        assert "someone else must" in refused.json()["detail"] and "four-eyes" in refused.json()["detail"]

    assert state(job) == "pending_approval" and not Approval.objects.exists()
    assert audit_types(job["id"]).count("JobApprovalRefused") == 2
    refusal = Event.objects.filter(stream__name=f"console-job.{job['id']}", type="JobApprovalRefused").first()
    assert refusal.actor == "quinn" and refusal.data["attempted"] == "approve"


def test_support_staff_and_operators_may_not_approve_or_reject(api, support_agent):
    job = requested(api)
    colleague = person("oscar", "operator")
    for who in (support_agent, colleague):
        client = session_client(who)
        for refused in (approve(client, job), reject(client, job, comment="no")):
            assert is_problem(refused, 403)
            assert "approve permission" in refused.json()["detail"]
    assert state(job) == "pending_approval" and not Approval.objects.exists()


def test_an_approval_of_parameters_that_changed_since_is_refused_with_409(api, approver):
    job = requested(api)
    changed = api.patch(
        f"/api/v1/jobs/{job['id']}", {"params": {"projection": "users_directory", "shards": 2}}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["params_sha256"] != job["params_sha256"]

    response = approve(session_client(approver), job)  # the sha256 avery read before the change

    assert is_problem(response, 409)
    assert "parameters changed since they were shown to you" in response.json()["detail"]
    assert state(job) == "pending_approval" and not Approval.objects.exists()
    assert audit_types(job["id"])[-1] == "JobApprovalRefused"


def test_a_job_no_longer_waiting_cannot_be_decided(api, approver):
    job = requested(api)
    services.cancel_job(job_id=job["id"], actor="olivia")
    response = approve(session_client(approver), job)
    assert is_problem(response, 409) and "only a job waiting for approval" in response.json()["detail"]
    assert is_problem(approve(session_client(approver), {**job, "id": 999_999}), 404)


def test_a_malformed_sha_or_an_unknown_field_is_a_clear_400(api, approver):
    job = requested(api)
    client = session_client(approver)
    bad_sha = approve(client, job, params_sha256="abc")
    assert is_problem(bad_sha, 400) and "64 lowercase hex" in bad_sha.json()["errors"]["params_sha256"][0]
    assert is_problem(approve(client, job, approve=True), 400)
    assert not Approval.objects.exists()


def test_a_token_client_sends_its_password_with_every_decision(api, approver):
    job = requested(api)
    client = token_client(approver)
    before = Event.objects.count()

    missing = approve(client, job)
    assert is_problem(missing, 403) and missing.json()["type"].endswith("password-required")
    assert "send your password" in missing.json()["detail"]
    assert Event.objects.count() == before  # nothing recorded

    wrong = approve(client, job, password="hunter2")
    assert is_problem(wrong, 403) and wrong.json()["detail"] == "the password is wrong; nothing was decided"
    assert not Approval.objects.exists() and state(job) == "pending_approval"
    failed = Event.objects.filter(position__gt=0).order_by("-position").first()
    assert (failed.type, failed.stream.name, failed.data["action"]) == (
        "ReauthenticationFailed",
        "console-user.avery",
        f"approve job {job['id']}",
    )
    assert Event.objects.count() == before + 1  # only the failed re-authentication

    assert approve(client, job, password=PASSWORD).status_code == 200
    second = requested(api, shards=2)
    assert is_problem(approve(client, second), 403)  # a token has no memory of the last password


def test_a_session_gives_its_password_again_after_five_minutes(api, approver):
    first, second = requested(api), requested(api, shards=3)
    client = session_client(approver)
    session = client.session
    session[reauth.SESSION_KEY] -= 301  # logged in a little over five minutes ago
    session.save()

    missing = approve(client, first)
    assert is_problem(missing, 403) and "enter your password" in missing.json()["detail"]
    assert is_problem(approve(client, first, password="wrong"), 403)
    assert not Approval.objects.exists()
    failed = Event.objects.filter(stream__name="console-user.avery", type="ReauthenticationFailed")
    assert failed.count() == 1 and failed.get().metadata["actor"] == "avery"

    assert approve(client, first, password=PASSWORD).status_code == 200
    # Given just now, the password is not asked again for five minutes.
    assert reject(client, second, comment="one replay is enough").status_code == 200


def test_the_login_counts_as_giving_the_password(api, approver):
    job = requested(api)
    client = session_client(approver)
    given_at = client.session[reauth.SESSION_KEY]
    assert approve(client, job).status_code == 200
    assert client.session[reauth.SESSION_KEY] == given_at  # not asked, so not renewed


def test_a_replayed_approve_post_adds_one_approval_and_the_job_runs_once(api, approver):
    job = requested(api)
    client = token_client(approver)

    first = approve(client, job, password=PASSWORD, comment="ok")
    replayed = approve(client, job, password=PASSWORD, comment="ok")

    assert first.status_code == 200 and is_problem(replayed, 409)
    assert Approval.objects.filter(job_id=job["id"]).count() == 1
    assert run_inline(job["id"]).state == "succeeded"
    assert run_inline(job["id"]).state == "succeeded"  # a second delivery finds nothing to do
    assert audit_types(job["id"]).count("JobStarted") == 1
    assert audit_types(job["id"]).count("JobApproved") == 1


def test_changing_a_waiting_job_voids_the_approvals_given_before(settings, api, approver):
    settings.REPLAYDESK_APPROVALS_REQUIRED["replay"] = 2
    job = requested(api)
    assert approve(session_client(approver), job).json()["approvals"][0]["valid"] is True

    response = api.patch(
        f"/api/v1/jobs/{job['id']}", {"params": {"projection": "users_directory", "shards": 2}}, format="json"
    )

    assert response.status_code == 200
    changed = response.json()
    assert changed["params"]["shards"] == 2 and changed["state"] == "pending_approval"
    [old] = changed["approvals"]
    assert old["approver"] == "avery" and old["valid"] is False
    assert old["params_sha256"] == job["params_sha256"] != changed["params_sha256"]
    assert "JobChanged" in audit_types(job["id"])
    # avery's yes no longer counts: two new ones are needed.
    assert approve(session_client(person("bea", "approver")), changed).json()["state"] == "pending_approval"
    assert approve(session_client(approver), changed).json()["state"] == "queued"


def test_only_the_requester_changes_a_job_and_bad_params_change_nothing(api, approver):
    job = requested(api)
    url = f"/api/v1/jobs/{job['id']}"
    colleague = session_client(person("oscar", "operator"))

    not_theirs = colleague.patch(url, {"params": {"projection": "users_directory"}}, format="json")
    assert is_problem(not_theirs, 403) and "only olivia" in not_theirs.json()["detail"]
    assert is_problem(session_client(approver).patch(url, {"params": {}}, format="json"), 403)

    bad = api.patch(url, {"params": {"projection": "users_directory", "shards": 0}}, format="json")
    assert is_problem(bad, 422) and "shards" in bad.json()["errors"]
    other_target = api.patch(url, {"params": {"projection": "access"}}, format="json")
    assert is_problem(other_target, 422) and "ask for a new job" in other_target.json()["detail"]
    assert Job.objects.get(pk=job["id"]).params_sha256 == job["params_sha256"]

    services.cancel_job(job_id=job["id"], actor="olivia")
    assert is_problem(api.patch(url, {"params": {"projection": "users_directory"}}, format="json"), 409)
