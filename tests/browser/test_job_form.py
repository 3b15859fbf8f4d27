"""The new-job form in the browser, at a phone's width and a desktop's: no kind is chosen for the
operator, the fields and the button follow the kind chosen (a kind that needs approval is requested, not
started), and a restore's snapshot is picked from the snapshots by name, time and size."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from recovery import runner, services
from recovery.models import Snapshot
from streams.consumers import run_projection
from tests.browser.test_journeys import has_no_horizontal_scroll
from tests.streams.projection_helpers import create_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_projection_schemas", "four_eyes"),
]


@pytest.fixture
def snapshot(settings, tmp_path) -> Snapshot:
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"
    create_user("1")
    run_projection("users_directory")
    job = services.request_job(
        kind="snapshot", params={"projection": "users_directory"}, requested_by="olivia", reason="base"
    )
    return Snapshot.objects.get(pk=runner.run_inline(job.pk).result["snapshot"])


def test_the_form_asks_for_a_kind_and_says_what_its_button_will_do(operator_page, width, snapshot):
    page = operator_page
    page.goto("/jobs/new")

    for kind in ("Replay", "Restore", "Snapshot"):
        expect(page.get_by_label(kind, exact=True)).not_to_be_checked()
    expect(page.get_by_text("Choose a kind above")).to_be_visible()
    expect(page.get_by_role("button", name="Start job")).to_be_hidden()
    expect(page.get_by_role("button", name="Request approval")).to_be_hidden()

    page.get_by_label("Snapshot", exact=True).check()
    expect(page.get_by_role("button", name="Start job")).to_be_visible()
    expect(page.get_by_role("button", name="Request approval")).to_be_hidden()

    page.get_by_label("Restore", exact=True).check()
    expect(page.get_by_role("button", name="Request approval")).to_be_visible()
    expect(page.get_by_role("button", name="Start job")).to_be_hidden()
    expect(page.get_by_text("Choose a kind above")).to_be_hidden()
    choice = page.get_by_label("From snapshot")
    expect(choice.locator("option", has_text=snapshot.name)).to_contain_text(
        snapshot.taken_at.strftime("%Y-%m-%d %H:%M")
    )
    choice.select_option(str(snapshot.pk))
    expect(page.get_by_placeholder("YYYY-MM-DD HH:MM").first).to_be_visible()
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/job_form_{width}.png", full_page=True)
