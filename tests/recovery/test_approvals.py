"""Four-eyes approvals through their services (the pages, API and admin call the same functions)."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from recovery import approvals, runner, services
from recovery.models import Approval, Job
from streams.consumers import run_projection
from streams.models import Event
from tests.conftest import person
from tests.streams.projection_helpers import create_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_projection_schemas", "four_eyes"),
]


@pytest.fixture(autouse=True)
def _history():
    for uid in range(3):
        create_user(str(uid))
    run_projection("users_directory")


def replay(requester, **params):
    return services.request_job(
        kind="replay",
        params={"projection": "users_directory", **params},
        requested_by=requester.username,
        reason="bad deploy",
    )


def audit_types(job):
    stream = f"console-job.{job.pk}"
    return list(Event.objects.filter(stream__name=stream).order_by("position").values_list("type", flat=True))


def approve(job, who, sha=None):
    return approvals.approve_job(job_id=job.pk, approver=who, params_sha256=sha or job.params_sha256)


def test_dangerous_kinds_wait_for_approval_and_safe_ones_run_at_once(operator):
    assert replay(operator).state == "pending_approval"
    snapshot = services.request_job(
        kind="snapshot", params={"projection": "users_directory"}, requested_by="olivia", reason="r"
    )
    assert snapshot.state == "queued"
    assert approvals.pending_count() == 1


def test_an_approval_by_someone_else_queues_the_job_and_it_runs(operator, approver):
    job = replay(operator)
    approved = approve(job, approver)
    assert approved.state == "queued"
    assert runner.run_inline(job.pk).state == "succeeded"
    assert audit_types(job) == [
        "JobRequested",
        "JobApproved",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    ]


def test_nobody_approves_their_own_request_even_with_the_approver_role(approver):
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by=approver.username, reason="r"
    )
    with pytest.raises(approvals.ApprovalRefused, match="someone else must approve"):
        approve(job, approver)
    job.refresh_from_db()
    assert job.state == "pending_approval" and not Approval.objects.exists()
    assert audit_types(job)[-1] == "JobApprovalRefused"  # the attempt is on the record


def test_an_admin_cannot_approve_their_own_request_either(admin_user):
    job = replay(admin_user)
    with pytest.raises(approvals.ApprovalRefused, match="four-eyes"):
        approve(job, admin_user)


def test_approving_needs_the_approve_permission(operator, support_agent):
    job = replay(operator)
    colleague = person("oscar", "operator")
    for who in (support_agent, colleague):
        with pytest.raises(approvals.ApprovalRefused, match="approve permission"):
            approve(job, who)
    assert audit_types(job).count("JobApprovalRefused") == 2


def test_an_approval_is_for_the_parameters_the_approver_saw(operator, approver):
    job = replay(operator)
    with pytest.raises(approvals.ApprovalRefused, match="changed since they were shown"):
        approve(job, approver, sha="0" * 64)
    assert Job.objects.get(pk=job.pk).state == "pending_approval"


def test_changing_the_parameters_voids_the_approvals_given_before(settings, operator, approver):
    settings.REPLAYDESK_APPROVALS_REQUIRED["replay"] = 2
    second = person("bea", "approver")
    job = replay(operator)
    approve(job, approver)
    changed = approvals.change_job(
        job_id=job.pk, params={"projection": "users_directory", "shards": 2}, actor="olivia"
    )
    assert changed.params_sha256 != job.params_sha256

    assert approve(changed, second).state == "pending_approval"  # avery's yes was for other parameters
    assert approve(changed, approver).state == "queued"
    assert "JobChanged" in audit_types(job)


def test_only_the_requester_changes_a_job(operator, approver):
    job = replay(operator)
    with pytest.raises(services.JobError, match="only olivia"):
        approvals.change_job(job_id=job.pk, params={"projection": "users_directory"}, actor="avery")


def test_an_expired_approval_no_longer_counts_and_the_start_checks_again(operator, approver):
    job = replay(operator)
    approve(job, approver)
    Approval.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    ran = runner.run_inline(job.pk)

    assert ran.state == "pending_approval" and ran.started_at is None
    assert "JobStartRefused" in audit_types(job)
    approve(ran, person("bea", "approver"))
    assert runner.run_inline(job.pk).state == "succeeded"


def test_approvals_expire_after_the_configured_time(settings, operator, approver):
    settings.REPLAYDESK_APPROVAL_HOURS = 1
    job = replay(operator)
    approve(job, approver)
    approval = Approval.objects.get()
    assert dt.timedelta(minutes=59) < approval.expires_at - approval.created_at <= dt.timedelta(hours=1)


def test_a_job_forged_into_queued_without_approvals_does_not_run(operator):
    job = replay(operator)
    Job.objects.filter(pk=job.pk).update(state="queued", queued_at=timezone.now())  # forged
    runner.run_slice(job.pk, 0)  # a forged task delivery
    job.refresh_from_db()
    assert job.state == "pending_approval" and job.stage == "" and job.started_at is None


def test_a_replayed_approve_adds_nothing_and_the_job_runs_once(operator, approver):
    job = replay(operator)
    approve(job, approver)
    with pytest.raises(approvals.ApprovalRefused):
        approve(job, approver)
    runner.run_inline(job.pk)
    assert Approval.objects.count() == 1
    assert audit_types(job).count("JobStarted") == 1


def test_a_rejection_needs_a_reason_and_ends_the_job(operator, approver):
    job = replay(operator)
    with pytest.raises(approvals.ApprovalRefused, match="say why"):
        approvals.reject_job(job_id=job.pk, approver=approver, comment=" ")
    rejected = approvals.reject_job(
        job_id=job.pk, approver=approver, comment="replay the access table instead"
    )
    assert rejected.state == "rejected"
    with pytest.raises(approvals.ApprovalRefused, match="rejected"):
        approve(job, approver)
    assert audit_types(job)[-1] == "JobRejected"


def test_an_approved_job_waits_for_its_target_then_the_reconciler_queues_it(operator, approver):
    busy = services.request_job(
        kind="verify", params={"projection": "users_directory"}, requested_by="olivia", reason="r"
    )
    job = replay(operator)
    assert approve(job, approver).state == "approved"
    runner.run_inline(busy.pk)
    runner.reconcile()
    assert Job.objects.get(pk=job.pk).state == "queued"


def test_the_django_admin_decides_nothing_in_bulk_and_links_to_the_review_page(client, admin_user, operator):
    """A bulk approve would bind whatever the parameters are at the click, which the list never shows,
    and skip the password: the admin links to the review page instead."""
    job = replay(operator)
    client.force_login(admin_user)
    listing = client.get(reverse("admin:recovery_job_changelist"))
    client.post(
        reverse("admin:recovery_job_changelist"),
        {"action": "approve_selected", "_selected_action": [job.pk]},
        follow=True,
    )

    assert 'name="action"' not in listing.content.decode()
    assert f'href="{reverse("recovery:approval", args=[job.pk])}"' in listing.content.decode()
    assert Job.objects.get(pk=job.pk).state == "pending_approval"
    assert not Approval.objects.exists()


def test_renaming_ones_account_does_not_make_one_a_second_person(admin_user, operator):
    requested = APIClient()
    requested.force_authenticate(admin_user)
    body = {"kind": "replay", "params": {"projection": "users_directory"}, "reason": "bad deploy"}
    job = Job.objects.get(pk=requested.post("/api/v1/jobs", body, format="json").json()["id"])
    admin_user.username = "ada.renamed"
    admin_user.save()

    with pytest.raises(approvals.ApprovalRefused, match="someone else must approve it"):
        approve(job, admin_user)
    assert Job.objects.get(pk=job.pk).state == "pending_approval"


def test_one_account_under_two_names_counts_as_one_approval(settings, operator, approver):
    settings.REPLAYDESK_APPROVALS_REQUIRED = {"replay": 2}
    job = replay(operator)
    approve(job, approver)
    approver.username = "avery.renamed"
    approver.save()

    with pytest.raises(approvals.ApprovalRefused, match="approved job .* already"):
        approve(job, approver)
    assert Job.objects.get(pk=job.pk).state == "pending_approval"
