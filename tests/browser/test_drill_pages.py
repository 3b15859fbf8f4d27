"""The drills page and a drill's report as people read them: nothing drawn over anything else at a
phone's width or a desktop's, the checks by readable names, the heading without the lock's name."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from recovery import services
from recovery.drill import verdict_line
from recovery.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHECKS = {
    "projection_rows_wrong": 3,
    "downstream_documents_wrong": 0,
    "downstream_events_missing": 0,
    "downstream_bad_events_in_effect": 2,
}


def a_report(checks: dict[str, int]) -> dict:
    return {
        "sizes": {"users": 400, "events": 8000},
        "events_loaded": 8000,
        "snapshot_position": 8120,
        "damage": {
            "bad_events": 100,
            "bad_events_received_downstream": 100,
            "rows_deleted": 12,
            "rows_rewritten": 30,
            "downstream_effects_lost": 240,
        },
        "rto_seconds": 12.34,
        "rpo_events": 0,
        "events_replayed": 1234,
        "events_excluded": 100,
        "downstream_resent": 1300,
        "downstream_duplicates_ignored": 7,
        "checks": checks,
        "events_in_log": 10_000,
        "passed": not any(checks.values()),
    }


def a_finished_drill(checks: dict[str, int], *, quick: bool = True) -> Job:
    report = a_report(checks)
    job = Job.objects.create(
        kind=Job.Kind.DRILL,
        target="drill-sandbox",
        params={"quick": quick},
        params_sha256="0" * 64,
        reason="rehearsal",
        requested_by="olivia",
        state=Job.State.SUCCEEDED if report["passed"] else Job.State.FAILED,
        started_at=timezone.now() - dt.timedelta(seconds=50),
        finished_at=timezone.now(),
        stage="verifying",
        done=7,
        total=7,
        result=report,
    )
    services.log(job, verdict_line(report["passed"], checks))
    return job


def overlap(page, first, second) -> bool:
    a, b = first.bounding_box(), second.bounding_box()
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def test_a_failed_drills_report_names_its_checks_and_draws_nothing_over_them(operator_page, width):
    page = operator_page
    job = a_finished_drill(CHECKS, quick=False)
    page.goto(f"/jobs/{job.pk}/")

    expect(page.get_by_role("heading", level=1)).to_have_text(f"Job {job.pk}: full fault drill")
    rows = page.locator(".drill-checks tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(0).locator("td").first).to_have_text("Projection rows that differ from a fold of the log")
    expect(rows.nth(3).locator("td").first).to_have_text("Bad events still in effect downstream")
    expect(page.locator(".drill-checks")).not_to_contain_text("_")
    note = page.locator(".drill-report-note")
    assert not overlap(page, rows.last, note), "the footnote is drawn over the last check"
    log = page.locator(".job-log")
    expect(log).to_contain_text(
        "FAILED: projection rows that differ from a fold of the log: 3; "
        "bad events still in effect downstream: 2"
    )
    expect(log).not_to_contain_text("{")
    page.screenshot(path=f"/tmp/drill-report-{page.viewport_size['width']}.png", full_page=True)


def test_the_drills_list_keeps_its_columns_and_the_hint_apart(operator_page, width):
    page = operator_page
    passed = a_finished_drill(dict.fromkeys(CHECKS, 0))
    page.goto("/drills/")

    hint = page.locator(".drill-start .note")
    for button in ("Run a quick drill", "Run the full drill"):
        assert not overlap(page, page.get_by_role("button", name=button), hint), f"{button} covers the hint"
    row = page.locator(f'tr.drill[data-job="{passed.pk}"]')
    started, size = row.locator("td").nth(1), row.locator("td").nth(2)
    expect(size).to_have_text("quick")
    assert not overlap(page, started.locator("time"), size), "the start time runs into the size column"
    expect(row.locator(".verdict")).to_have_text("passed")
    page.screenshot(path=f"/tmp/drill-list-{page.viewport_size['width']}.png", full_page=True)
