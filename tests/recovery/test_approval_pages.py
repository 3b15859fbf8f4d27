"""The approvals pages through Django's test client: the inbox, a job's review page (what will run, the dry
run, the decisions so far), approving with the password asked again when due, rejecting with a reason,
the refusals shown as the service words them, and the pending count in the navigation and on the
dashboard."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from recovery import approvals, reauth, runner, services
from recovery.models import Approval, Job
from streams.consumers import run_projection
from streams.models import Event
from tests.conftest import PASSWORD, person
from tests.streams.projection_helpers import create_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_projection_schemas", "four_eyes"),
]

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _directory():
    for uid in ("1", "2", "3", "4"):
        create_user(uid)
    run_projection("users_directory")


def logged_in(user, client: Client | None = None) -> Client:
    """A browser that logged in through the login form's code path (so the login counts as the
    password given just now)."""
    client = client or Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def replay(reason: str = "names were damaged by the 14:00 deploy", by: str = "olivia", **params) -> Job:
    return services.request_job(
        kind="replay",
        params={"projection": "users_directory", **params},
        requested_by=by,
        reason=reason,
    )


def inbox_rows(response) -> list[str]:
    return re.findall(r'<tr class="waiting-job" data-job="(\d+)"', response.content.decode())


def posted_sha(response) -> str:
    return re.search(r'name="params_sha256" value="([0-9a-f]{64})"', response.content.decode()).group(1)


def has_password_field(response) -> bool:
    return 'type="password" name="password"' in response.content.decode()


def login_long_ago(client: Client) -> None:
    session = client.session
    session[reauth.SESSION_KEY] -= reauth.window_seconds() + 1
    session.save()


def test_the_inbox_lists_jobs_waiting_for_approval_oldest_first(operator, approver):
    first = replay("first reason")
    second = replay("second reason", shards=2)
    services.request_job(
        kind="snapshot", params={"projection": "users_directory"}, requested_by="olivia", reason="r"
    )  # needs no approval: not in the inbox
    done = replay("decided already", shards=3)
    approvals.reject_job(job_id=done.pk, approver=approver, comment="no")

    response = logged_in(approver).get("/approvals/", secure=True)

    assert response.status_code == 200
    assert inbox_rows(response) == [str(first.pk), str(second.pk)]
    html = response.content.decode()
    row = html[html.find(f'data-job="{first.pk}"') :]
    row = row[: row.find("</tr>")]
    for shown in ("replay", "users_directory", "olivia", "first reason", "0 of 1", f"/approvals/{first.pk}/"):
        assert shown in row
    assert "decided already" not in html


def test_the_inbox_reads_the_same_number_of_queries_however_many_jobs_wait(operator, approver, settings):
    settings.REPLAYDESK_APPROVALS_REQUIRED["replay"] = 2  # one approval each: still waiting
    client = logged_in(approver)

    def inbox_queries(jobs: int) -> int:
        for n in range(jobs):
            job = replay(f"reason {n}")
            approvals.approve_job(job_id=job.pk, approver=approver, params_sha256=job.params_sha256)
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/approvals/", secure=True)
        assert response.status_code == 200 and "1 of 2" in response.content.decode()
        return len(queries)

    one = inbox_queries(1)
    assert inbox_queries(5) == one  # six jobs listed now, and no query per job


def test_an_empty_inbox_says_so(approver):
    assertContains(logged_in(approver).get("/approvals/", secure=True), "Nothing waits for approval.")


def test_the_review_page_shows_exactly_what_will_run(operator, approver):
    job = replay(shards=2)

    response = logged_in(approver).get(f"/approvals/{job.pk}/", secure=True)

    assert response.status_code == 200
    assertContains(response, f'id="review-sha">{job.params_sha256}<')
    assertContains(response, "&quot;shards&quot;: 2")  # the canonical parameters, as JSON
    assertContains(response, "names were damaged by the 14:00 deploy")
    html = response.content.decode()
    assert re.search(r"Events affected</dt><dd[^>]*>4<", html)  # the dry run: four UserCreated events
    assert re.search(r"Streams affected</dt><dd[^>]*>4<", html)
    assert posted_sha(response) == job.params_sha256  # the form approves what the page shows
    assert not has_password_field(response)  # the login was just now
    assertContains(response, "Approve job")
    assertContains(response, "Reject job")


def test_an_approval_from_the_review_page_queues_the_job(operator, approver):
    job = replay()
    client = logged_in(approver)
    page = client.get(f"/approvals/{job.pk}/", secure=True)

    response = client.post(
        f"/approvals/{job.pk}/approve",
        {"params_sha256": posted_sha(page), "comment": "dry run looks right"},
        secure=True,
    )

    assertRedirects(response, f"/jobs/{job.pk}/", fetch_redirect_response=False)
    job.refresh_from_db()
    assert job.state == "queued"
    approval = Approval.objects.get()
    assert (approval.approver, approval.comment) == ("avery", "dry run looks right")
    assertContains(client.get(f"/jobs/{job.pk}/", secure=True), "You approved job")
    panel = client.get(f"/jobs/{job.pk}/approvals", secure=True, **HTMX)
    # Queued, not started: the panel polls on, as the approvals are checked again when the job starts.
    assertContains(panel, "avery")
    assertContains(panel, "dry run looks right")
    assertContains(panel, "1 of 1 needed")


def test_after_five_minutes_the_password_is_asked_again(operator, approver):
    job = replay()
    client = logged_in(approver)
    login_long_ago(client)
    page = client.get(f"/approvals/{job.pk}/", secure=True)
    assert has_password_field(page)
    form = {"params_sha256": posted_sha(page), "comment": "ok"}

    missing = client.post(f"/approvals/{job.pk}/approve", form, secure=True)
    assert missing.status_code == 403
    assertContains(missing, "enter your password", status_code=403)
    assertContains(missing, ">\nok</textarea>", status_code=403)  # what was typed is kept

    wrong = client.post(f"/approvals/{job.pk}/approve", form | {"password": "guess"}, secure=True)
    assertContains(wrong, "the password is wrong; nothing was decided", status_code=403)
    assert not Approval.objects.exists()
    assert Event.objects.filter(stream__name="console-user.avery", type="ReauthenticationFailed").count() == 1

    right = client.post(f"/approvals/{job.pk}/approve", form | {"password": PASSWORD}, secure=True)
    assertRedirects(right, f"/jobs/{job.pk}/", fetch_redirect_response=False)
    assert Approval.objects.filter(job=job, approver="avery").exists()
    # Given just now: the next review page does not ask for it.
    assert not has_password_field(client.get(f"/approvals/{replay(shards=2).pk}/", secure=True))


def test_a_rejection_needs_a_reason(operator, approver):
    job = replay()
    client = logged_in(approver)

    empty = client.post(f"/approvals/{job.pk}/reject", {"comment": "  "}, secure=True)

    assertContains(empty, "say why the job is rejected (the requester reads it)", status_code=400)
    assert Job.objects.get(pk=job.pk).state == "pending_approval" and not Approval.objects.exists()

    response = client.post(f"/approvals/{job.pk}/reject", {"comment": "restore instead"}, secure=True)

    assertRedirects(response, f"/jobs/{job.pk}/", fetch_redirect_response=False)
    assert Job.objects.get(pk=job.pk).state == "rejected"
    closed = client.get(f"/approvals/{job.pk}/", secure=True)
    assertContains(closed, "is rejected: there is nothing left to decide")
    assertContains(closed, "restore instead")
    assertNotContains(closed, 'id="approve-form"')
    job_page = client.get(f"/jobs/{job.pk}/", secure=True)
    assertContains(job_page, "restore instead")  # the requester reads why on the job's page
    assertNotContains(job_page, f'hx-get="/jobs/{job.pk}/approvals"')  # finished: nothing polls


def test_the_requester_sees_the_job_but_no_approve_button_and_a_forged_post_is_refused(approver):
    both = person("quinn", "operator", "approver")
    job = replay(by="quinn")
    client = logged_in(both)

    page = client.get(f"/approvals/{job.pk}/", secure=True)
    assertContains(page, "You asked for this job: someone else must approve or reject it")
    assertNotContains(page, 'id="approve-form"')
    assertNotContains(client.get(f"/jobs/{job.pk}/approvals", secure=True, **HTMX), 'id="review-job"')

    forged = client.post(f"/approvals/{job.pk}/approve", {"params_sha256": job.params_sha256}, secure=True)

    assertContains(forged, "someone else must approve it (four-eyes rule)", status_code=403)
    assert not Approval.objects.exists()
    assert Event.objects.filter(stream__name=f"console-job.{job.pk}", type="JobApprovalRefused").exists()


def test_an_approval_of_parameters_changed_since_the_page_was_read_is_refused(operator, approver):
    job = replay()
    client = logged_in(approver)
    read = posted_sha(client.get(f"/approvals/{job.pk}/", secure=True))
    changed = approvals.change_job(
        job_id=job.pk, params={"projection": "users_directory", "shards": 2}, actor="olivia"
    )

    response = client.post(f"/approvals/{job.pk}/approve", {"params_sha256": read}, secure=True)

    assertContains(response, "parameters changed since they were shown to you", status_code=409)
    assert posted_sha(response) == changed.params_sha256  # the page now shows, and approves, the new ones
    assertContains(response, "&quot;shards&quot;: 2", status_code=409)
    assert not Approval.objects.exists()


def test_an_expired_approval_shows_as_no_longer_counting(operator, approver):
    job = replay()
    approvals.approve_job(job_id=job.pk, approver=approver, params_sha256=job.params_sha256)
    Job.objects.filter(pk=job.pk).update(state="pending_approval")
    Approval.objects.update(expires_at="2000-01-01T00:00:00Z")

    page = logged_in(person("bea", "approver")).get(f"/approvals/{job.pk}/", secure=True)

    assertContains(page, "no: expired")
    assertContains(page, "0 of 1")


def test_only_approvers_may_decide_though_everyone_may_read(operator, support_agent):
    job = replay()
    for who in (support_agent, person("oscar", "operator")):
        client = logged_in(who)
        page = client.get(f"/approvals/{job.pk}/", secure=True)
        assertContains(page, "Deciding needs the approve permission")
        assertNotContains(page, 'id="approve-form"')
        response = client.post(
            f"/approvals/{job.pk}/approve", {"params_sha256": job.params_sha256}, secure=True
        )
        assert response.status_code == 403
        assert client.post(f"/approvals/{job.pk}/reject", {"comment": "x"}, secure=True).status_code == 403
    assert not Approval.objects.exists()


def test_decisions_need_the_csrf_token(operator, approver):
    job = replay()
    client = logged_in(approver, Client(enforce_csrf_checks=True))
    response = client.post(f"/approvals/{job.pk}/approve", {"params_sha256": job.params_sha256}, secure=True)
    assert response.status_code == 403
    assert not Approval.objects.exists()


def test_the_navigation_and_the_dashboard_show_the_pending_count(operator, approver):
    client = logged_in(approver)
    quiet = client.get("/dashboard/", secure=True)
    assertNotContains(quiet, 'class="nav-count"')
    assertContains(quiet, "0 waiting")

    first, _ = replay(), replay(shards=2)

    dashboard = client.get("/dashboard/", secure=True)
    assert re.search(r'class="nav-count"[^>]*>2<', dashboard.content.decode())
    assertContains(dashboard, 'id="approval-summary-count">2 waiting<')
    elsewhere = client.get("/streams/", secure=True)
    assert re.search(r'class="nav-count"[^>]*>2<', elsewhere.content.decode())

    approvals.approve_job(job_id=first.pk, approver=approver, params_sha256=first.params_sha256)

    polled = client.get("/approvals/waiting", secure=True, **HTMX)
    assertContains(polled, 'id="approval-summary-count">1 waiting<')
    assert re.search(r'class="nav-count"[^>]*>1<', client.get("/jobs/", secure=True).content.decode())


def test_the_job_page_shows_the_approvals_and_the_way_to_decide(operator, approver):
    job = replay()
    client = logged_in(approver)

    page = client.get(f"/jobs/{job.pk}/", secure=True)
    assertContains(page, f'hx-get="/jobs/{job.pk}/approvals"')
    assertContains(page, "Waiting for approval")
    panel = client.get(f"/jobs/{job.pk}/approvals", secure=True, **HTMX)
    assert panel.status_code == 200  # still waiting: it keeps polling
    assertContains(panel, "0 of 1 needed")
    assertContains(panel, f'href="/approvals/{job.pk}/"')
    assertContains(panel, "Review and decide")

    own = logged_in(operator).get(f"/jobs/{job.pk}/approvals", secure=True, **HTMX)
    assertContains(own, "Waiting for someone else to approve your request")
    assertNotContains(own, "Review and decide")


def test_an_unknown_job_is_404(approver):
    client = logged_in(approver)
    assert client.get("/approvals/999999/", secure=True).status_code == 404
    assert client.post("/approvals/999999/approve", {}, secure=True).status_code == 404


def test_the_review_of_a_restore_says_the_rows_it_replaces_and_the_tail_it_applies(
    operator, approver, settings
):
    settings.REPLAYDESK_SNAPSHOT_DIR = settings.REPLAYDESK_HOME / "review-snapshots"
    run_projection("users_directory")
    taken = runner.run_inline(
        services.request_job(
            kind="snapshot", params={"projection": "users_directory"}, requested_by="olivia", reason="nightly"
        ).pk
    )
    create_user("5")
    job = services.request_job(
        kind="restore",
        params={"projection": "users_directory", "snapshot": taken.result["snapshot"]},
        requested_by="olivia",
        reason="names were damaged",
    )

    response = logged_in(approver).get(f"/approvals/{job.pk}/")

    figures = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>([^<]+)</dd>", response.content.decode()))
    assert figures["Rows replaced"] == str(taken.result["rows"])
    assert figures["Tail events to apply"] == "1"
    assert "Events affected" not in figures
