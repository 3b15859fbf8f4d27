"""A job waiting for approval reads as such (no worker bar, no raw state), and the menu's count of
waiting jobs follows the approvals without a reload."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from recovery import services
from recovery.models import Job
from streams.consumers import run_projection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def waiting_job(four_eyes, fresh_projection_schemas):
    run_projection("users_directory")
    return services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="olivia", reason="names broke"
    )


def test_a_job_waiting_for_approval_says_so_without_a_worker_bar(operator_page, waiting_job):
    page = operator_page
    page.goto(f"/jobs/{waiting_job.pk}/")

    expect(page.locator("#job-waiting")).to_contain_text("Waiting for approval by someone else")
    expect(page.locator(".job-state").first).to_have_text("waiting for approval")
    expect(page.locator(".job-bar progress")).to_have_count(0)
    expect(page.locator(".job-bar")).to_have_text("not started: waiting for approval")
    expect(page.locator("main")).not_to_contain_text("pending_approval")
    expect(page.locator("main")).not_to_contain_text("waiting for a worker")


def test_the_menus_count_of_waiting_jobs_follows_without_a_reload(operator_page, waiting_job, width):
    page = operator_page
    page.goto("/streams/")
    page.evaluate("window.notReloaded = true")
    count = page.locator("#nav-approvals .nav-count")
    expect(count).to_have_text("1 waiting")

    Job.objects.filter(pk=waiting_job.pk).update(state=Job.State.REJECTED)

    expect(count).to_have_count(0, timeout=10_000)
    assert page.evaluate("window.notReloaded") is True
