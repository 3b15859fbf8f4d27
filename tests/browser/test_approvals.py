"""Four eyes in the browser: an operator requests a replay and logs out; an approver logs in, sees the
pending count, opens the inbox, reads what will run (the parameters, their sha256, the dry run, who asked
and why), gives the password again and approves; a real Celery worker runs the job to done.

The worker is a separate process with the production approval rule, as the test process has (the
`four_eyes` fixture): it checks the approval again in the transaction that starts the job.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from recovery.models import Approval, Job
from streams.consumers import run_projection
from streams.models import Event
from streams.services import ImportBatch, import_events
from tests.browser.conftest import log_in
from tests.browser.test_journeys import has_no_horizontal_scroll
from tests.conftest import PASSWORD
from tests.recovery.crash_helpers import Workers, clear_queues

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

USERS = 300


@pytest.fixture
def worker(tmp_path, fresh_projection_schemas, four_eyes):
    clear_queues()
    workers = Workers(tmp_path, slice_seconds=0.25, snapshot_dir=tmp_path / "snapshots")
    workers.env["REPLAYDESK_APPROVALS"] = "replay=1,restore=1,resync=1"
    workers.worker(1, concurrency=2)
    yield workers
    workers.stop_all()


def users_directory() -> int:
    """USERS users, each created and renamed twice, projected; the number of events."""
    batches = [
        ImportBatch(
            stream=f"user-{n}",
            events=[
                {
                    "type": "UserCreated",
                    "data": {"user_id": str(n), "username": f"u{n}", "name": "New", "email": f"{n}@x.io"},
                },
                {"type": "UserNameSet", "data": {"user_id": str(n), "name": f"Name {n}"}},
                {"type": "UserNameSet", "data": {"user_id": str(n), "name": f"Name {n}.2"}},
            ],
        )
        for n in range(USERS)
    ]
    events = import_events(batches=batches).events
    for _ in range(50):
        if run_projection("users_directory").caught_up:
            break
    else:
        pytest.fail("the users directory did not catch up with the log")
    return events


def audit_types(job: Job) -> list[str]:
    events = Event.objects.filter(stream__name=f"console-job.{job.pk}").order_by("position")
    return list(events.values_list("type", flat=True))


def test_an_operator_requests_a_replay_and_a_second_person_approves_it(
    settings, page, operator, approver, worker
):
    events = users_directory()
    # Ask for the password whatever the login's age: the approver gives it again, as after 5 minutes.
    settings.REPLAYDESK_REAUTH_SECONDS = 0

    # Olivia asks for the replay and says why.
    log_in(page, "olivia")
    page.wait_for_url("**/dashboard/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.get_by_role("link", name="New job").click()
    page.get_by_label("Replay", exact=True).check()
    page.get_by_label("Projection", exact=True).select_option("users_directory")
    page.get_by_label("Reason").fill("names were damaged by the 14:00 deploy")
    page.get_by_role("button", name="Request approval").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.get()
    assert job.state == "pending_approval"
    expect(page.locator("#job-waiting")).to_contain_text("Waiting for approval by someone else")
    expect(page.locator("#approvals-own")).to_be_visible()  # her own request: no way to approve it
    expect(page.get_by_role("link", name="Review and decide")).to_have_count(0)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login/")

    # Avery sees one job waiting, and reads what will run.
    log_in(page, "avery")
    page.wait_for_url("**/dashboard/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.locator("#nav-approvals .nav-count")).to_have_text("1 waiting")
    expect(page.locator("#approval-summary-count")).to_have_text("1 waiting")
    nav.get_by_role("link", name="Approvals").click()
    expect(page.get_by_role("heading", name="Approvals", level=1)).to_be_visible()
    row = page.locator(f'tr.waiting-job[data-job="{job.pk}"]')
    expect(row).to_contain_text("olivia")
    expect(row).to_contain_text("names were damaged by the 14:00 deploy")
    expect(row.locator(".approvals-given")).to_have_text("0 of 1")
    row.get_by_role("link", name=f"Review job {job.pk}").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Review job {job.pk}: replay of users_directory"
    )
    expect(page.locator("#review-sha")).to_have_text(job.params_sha256)
    expect(page.locator("#review-params")).to_contain_text('"projection": "users_directory"')
    expect(page.locator('#dry-run dt:text-is("Events affected") + dd')).to_have_text(str(events))
    expect(page.locator('#dry-run dt:text-is("Streams affected") + dd')).to_have_text(str(USERS))
    assert has_no_horizontal_scroll(page)
    page.screenshot(path="/tmp/approval_review.png", full_page=True)

    approve_form = page.locator("#approve-form")
    approve_form.get_by_label("Comment (optional)").fill("dry run matches the incident")
    approve_form.get_by_role("button", name=f"Approve job {job.pk}").click()
    # Asked, and not given: the page says so and keeps the comment.
    expect(approve_form.locator(".field-errors")).to_contain_text("enter your password")
    expect(approve_form.get_by_label("Comment (optional)")).to_have_value("dry run matches the incident")
    assert not Approval.objects.exists()
    approve_form.get_by_label("Your password").fill(PASSWORD)
    approve_form.get_by_role("button", name=f"Approve job {job.pk}").click()

    # The job's page: approved, then run to done by the worker.
    expect(page).to_have_url(re.compile(rf"/jobs/{job.pk}/$"))
    expect(page.locator(".job-notice")).to_contain_text(f"You approved job {job.pk}")
    expect(page.locator("#job-approvals")).to_contain_text("avery")
    expect(page.locator("#job-approvals .approvals-given")).to_have_text("1 of 1 needed")
    expect(nav.locator("#nav-approvals .nav-count")).to_have_count(0)
    expect(page.locator(".job-state-text")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#job-progress progress")).to_have_attribute("value", str(events))
    page.screenshot(path="/tmp/approval_job.png", full_page=True)

    approval = Approval.objects.get()
    assert (approval.approver, approval.params_sha256) == ("avery", job.params_sha256)
    assert audit_types(job) == [
        "JobRequested",
        "JobApproved",
        "JobQueued",
        "JobStarted",
        "JobSucceeded",
    ], worker.tails()
