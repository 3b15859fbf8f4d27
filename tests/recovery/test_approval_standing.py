"""Whether each decision on a job counts, as its pages say it: "counts now, until …" only while that can
still change (until the job starts, when approvals are checked again), "counted when it started" after,
and a plain reason for a job that ended before it started; the job page's panel polls until the start."""

from __future__ import annotations

import datetime as dt

import pytest
from pytest_django.asserts import assertContains, assertNotContains

from recovery import approvals, runner
from recovery.models import Approval, Job
from streams.consumers import run_projection
from tests.conftest import person
from tests.recovery.test_approval_pages import HTMX, logged_in, replay
from tests.streams.projection_helpers import create_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_projection_schemas", "four_eyes"),
]


@pytest.fixture(autouse=True)
def _directory():
    create_user("1")
    run_projection("users_directory")


def standings(page) -> list[str]:
    html = page.content.decode()
    cells = html.split('class="decision-standing"')[1:]
    return [cell.split(">", 1)[1].split("</td>", 1)[0] for cell in cells]


def test_a_waiting_jobs_approval_counts_now_until_it_expires(operator, approver):
    job = replay()
    approvals.approve_job(job_id=job.pk, approver=approver, params_sha256=job.params_sha256)
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED  # approved, not started: checked again when it starts

    page = logged_in(operator).get(f"/jobs/{job.pk}/approvals", secure=True, **HTMX)

    assertContains(page, "Counts now")
    [cell] = standings(page)
    assert cell.startswith("yes, until <time")
    assert page.status_code == 200, "the panel keeps polling until the job starts"


def test_a_job_that_ran_says_its_approval_counted_when_it_started_even_after_it_expired(operator, approver):
    job = replay()
    approvals.approve_job(job_id=job.pk, approver=approver, params_sha256=job.params_sha256)
    ran = runner.run_inline(job.pk)
    Approval.objects.update(expires_at=ran.started_at + dt.timedelta(milliseconds=1))
    client = logged_in(operator)

    for page in (
        client.get(f"/jobs/{job.pk}/", secure=True),
        client.get(f"/approvals/{job.pk}/", secure=True),
    ):
        assertContains(page, "Counted when it started")
        assertNotContains(page, "Counts now")
        assert standings(page) == ["yes"]
        assertContains(page, "1 of 1")
    panel = client.get(f"/jobs/{job.pk}/approvals", secure=True, **HTMX)
    assert panel.status_code == 286, "no more polling once the job has started"
    assert standings(panel) == ["yes"]


def test_a_rejected_job_says_the_approval_before_it_never_counted_and_what_the_rejection_did(
    operator, approver, settings
):
    settings.REPLAYDESK_APPROVALS_REQUIRED = {**settings.REPLAYDESK_APPROVALS_REQUIRED, "replay": 2}
    job = replay()
    approvals.approve_job(job_id=job.pk, approver=approver, params_sha256=job.params_sha256)
    approvals.reject_job(job_id=job.pk, approver=person("bea", "approver"), comment="wrong projection")

    page = logged_in(operator).get(f"/jobs/{job.pk}/", secure=True)

    assertContains(page, ">Counted<")
    assert standings(page) == ["no: the job was rejected before it started", "it rejected the job"]
