"""What an operator does about recovery in the browser: start a replay from the new-job form, watch its
progress bar fill while a real Celery worker runs it, and find the projection swapped in and healthy.

The worker is a separate process (consuming `live,recovery`, as in production) against the test
database and this run's Redis, so the job runs for real while the page polls it.
"""

from __future__ import annotations

import re

import pytest
from django.db.models import Max
from playwright.sync_api import expect

from recovery.models import Job
from streams.consumers import run_projection
from streams.models import Event
from streams.services import ImportBatch, import_events
from tests.browser.test_journeys import has_no_horizontal_scroll

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

USERS = 3000
RENAMES = 9


def users_with_history() -> int:
    """USERS users, each created and renamed RENAMES times, in one import: the events a replay of the
    users directory goes through. Their number."""
    batches = [
        ImportBatch(
            stream=f"user-{n}",
            events=[
                {
                    "type": "UserCreated",
                    "data": {"user_id": str(n), "username": f"u{n}", "name": "New", "email": f"{n}@x.io"},
                },
                *(
                    {"type": "UserNameSet", "data": {"user_id": str(n), "name": f"Name {n}.{k}"}}
                    for k in range(RENAMES)
                ),
            ],
        )
        for n in range(USERS)
    ]
    return import_events(batches=batches).events


# Every progress bar the polling swaps in, as [value, max]: the page's own record of the bar moving.
RECORD_BAR = r"""
window.bars = [];
document.body.addEventListener("htmx:afterSettle", (event) => {
  // The job's own poll (the menu's count of waiting jobs polls on every page too).
  if (!/\/jobs\/\d+\/progress/.test(event.detail.pathInfo?.requestPath || "")) return;
  const bar = document.querySelector("#job-progress progress");
  if (bar) window.bars.push([bar.getAttribute("value"), bar.getAttribute("max")]);
});
window.notReloaded = true;
"""


def test_a_replay_started_from_the_form_fills_its_bar_and_swaps_the_projection_in(operator_page, worker):
    page = operator_page
    events = users_with_history()
    last_user_event = Event.objects.filter(stream__category="user").aggregate(last=Max("position"))["last"]
    while not run_projection("users_directory").caught_up:
        pass

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    page.get_by_role("link", name="New job").click()
    expect(page.get_by_role("heading", name="New job", level=1)).to_be_visible()
    page.get_by_label("Replay", exact=True).check()
    expect(page.get_by_label("Sink")).to_be_hidden()  # a replay works on a projection
    page.get_by_label("Projection", exact=True).select_option("users_directory")

    page.get_by_role("button", name="Dry run").click()
    expect(page.locator('#dry-run dt:text-is("Events affected") + dd')).to_have_text(str(events))
    expect(page.locator('#dry-run dt:text-is("Streams affected") + dd')).to_have_text(str(USERS))
    assert Job.objects.count() == 0
    assert has_no_horizontal_scroll(page)
    page.screenshot(path="/tmp/job_form.png", full_page=True)

    page.get_by_label("Reason").fill("names were damaged by the 14:00 deploy")
    page.get_by_role("button", name="Start job").click()

    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.get()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Job {job.pk}: replay of users_directory")
    page.evaluate(RECORD_BAR)
    bar = page.locator("#job-progress progress")
    expect(page.locator(".job-state-text")).to_have_text("succeeded", timeout=60_000)
    expect(bar).to_have_attribute("value", str(events))
    expect(bar).to_have_attribute("max", str(events))

    bars = page.evaluate("window.bars")
    moving = [value for value, maximum in bars if value is not None and 0 < int(value) < int(maximum)]
    assert moving, f"the bar never showed a job part-done: {bars}\n{worker.tails()}"
    assert page.evaluate("window.notReloaded") is True
    job.refresh_from_db()
    position = job.result["position"]
    assert position >= last_user_event, "the swapped projection missed events of the log"
    expect(page.locator(".swapped-position")).to_have_text(str(position))
    expect(page.locator(".swap-summary")).to_contain_text(f"now stands at position {position}")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    assert has_no_horizontal_scroll(page)
    page.screenshot(path="/tmp/job.png", full_page=True)
    polls = len(page.evaluate("window.bars"))
    page.wait_for_timeout(2_500)
    assert len(page.evaluate("window.bars")) == polls, "the finished job is still polled"

    page.locator(".job-facts").get_by_role("link", name="users_directory").click()
    expect(page.get_by_role("heading", name="users_directory", level=1)).to_be_visible()
    expect(page.locator("#consumer-panel .badge")).to_have_text("healthy")
    expect(page.locator("#consumer-jobs")).to_contain_text(f"Job {job.pk}")
    expect(page.get_by_role("button", name="Roll back")).to_be_visible()
    page.screenshot(path="/tmp/job_consumer.png", full_page=True)
