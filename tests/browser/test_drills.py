"""A drill from the console: an operator opens Drills, runs a quick drill, watches its stages go by on
the job's page while a real Celery worker plays it, and reads the report (RPO, RTO, the checks)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from recovery.kinds.drill import STAGES
from recovery.models import Job
from tests.browser.test_journeys import has_no_horizontal_scroll

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def test_a_quick_drill_started_from_the_drills_page_reports_rpo_rto_and_its_checks(operator_page, worker):
    page = operator_page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Drills").click()
    expect(page.get_by_role("heading", name="Fault drills", level=1)).to_be_visible()
    expect(page.get_by_text("No drill has run yet.")).to_be_visible()

    page.get_by_label("Reason").fill("rehearsal after the upgrade")
    page.get_by_role("button", name="Run a quick drill").click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.get(kind=Job.Kind.DRILL)
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Job {job.pk}: quick fault drill")
    seen = set()
    state = page.locator(".job-state-text")
    for _ in range(900):
        seen.add(page.locator(".job-stage").inner_text())
        if state.inner_text() in ("succeeded", "failed"):
            break
        page.wait_for_timeout(200)
    expect(state).to_have_text("succeeded", timeout=5_000)
    assert {"loading", "recovering"} <= seen, f"the page showed the stages as they went: {seen}"
    assert seen <= {"—", "done", *STAGES}

    job.refresh_from_db()
    expect(page.locator(".drill-verdict")).to_contain_text("The drill passed")
    expect(page.locator('[data-figure="rpo_events"]')).to_have_text("0 events lost")
    expect(page.locator('[data-figure="events_replayed"]')).to_have_text(str(job.result["events_replayed"]))
    expect(page.locator(".drill-checks tbody tr")).to_have_count(len(job.result["checks"]))
    expect(page.locator(".job-log")).to_contain_text(f"passed: all {len(job.result['checks'])} checks found")
    expect(page.locator(".job-log")).not_to_contain_text("{")
    assert has_no_horizontal_scroll(page)
    page.screenshot(path="/tmp/drill.png", full_page=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Drills").click()
    row = page.locator(f'tr.drill[data-job="{job.pk}"]')
    expect(row.locator(".verdict")).to_have_text("passed")
