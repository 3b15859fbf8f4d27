"""An operator writes a restored source's lost events back from its page, on a phone (390 px) and a desktop
(1280 px): Write back leads to the new-job form filled in for the source, its dry run lists what would be
written stream by stream and names the stream it would leave alone, the job waits for a second person's
approval, and its page then says what was written."""

from __future__ import annotations

import re

import psycopg
import pytest
from playwright.sync_api import expect

from recovery import approvals
from recovery.models import Job
from recovery.runner import run_inline
from streams import source_services
from tests.browser.test_journeys import has_no_horizontal_scroll
from tests.streams.source_helpers import (
    add_table_source,
    copy_all,
    server_url,
    source_db,  # noqa: F401 - a source's scratch database
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("four_eyes"),
]


@pytest.fixture
def restored(source_db):  # noqa: F811
    """A table source copied, then its database restored from a backup taken before three of its
    events; its writers wrote order-2's second event again, otherwise, since."""
    source_db.append("order-1", 1)
    source_db.append("order-2", 1)
    add_table_source(source_db)
    assert run_inline(Job.objects.get(kind="backfill").pk).state == "succeeded"
    backup = f"{source_db.name}_backup"
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{backup}" TEMPLATE "{source_db.name}"')
    try:
        source_db.append("order-1", 2)
        source_db.append("order-1", 3)
        source_db.append("order-2", 2)
        source_db.append("order-3", 1)
        copy_all()
        with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{source_db.name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{source_db.name}" TEMPLATE "{backup}"')
        source_db.append("order-2", 2, body={"v": "again"})
        source_services.set_write_dsn(name="orders_store", dsn=source_db.admin_url, actor="tests")
        yield source_db
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{backup}" WITH (FORCE)')


def test_an_operator_writes_a_restored_sources_lost_events_back_from_its_page(
    operator_page, width, restored, approver
):
    page = operator_page
    page.goto("/sources/orders_store/")
    page.locator("#source-actions").get_by_role("link", name="Write back").click()
    expect(page.get_by_label("Write back", exact=True)).to_be_checked()
    expect(page.get_by_label("Source", exact=True)).to_have_value("orders_store")
    page.get_by_label("Reason").fill("restored from last night's backup")

    page.get_by_role("button", name="Dry run").click()

    dry_run = page.locator("#dry-run")
    expect(dry_run.locator(".figure").first).to_have_text("3")
    rows = dry_run.locator("table.breakdown tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td")).to_have_text(["order-1", "2"])
    expect(rows.nth(1).locator("td")).to_have_text(["order-3", "1"])
    expect(dry_run.locator(".estimate-notes")).to_contain_text("order-2: not written")
    assert has_no_horizontal_scroll(page)

    page.get_by_role("button", name="Request approval").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.get(kind="write_back")
    assert job.state == Job.State.PENDING_APPROVAL
    assert len(restored.execute("SELECT 1 FROM events")) == 3, "nothing is written before the approval"
    approvals.approve_job(job_id=job.pk, approver=approver, params_sha256=job.params_sha256)
    assert run_inline(job.pk).state == Job.State.SUCCEEDED
    page.reload()

    result = page.locator(".facts").filter(has_text="Events written back")
    expect(result).to_contain_text("3")
    expect(page.get_by_text("order-2", exact=True).first).to_be_visible()
    assert len(restored.execute("SELECT 1 FROM events")) == 6
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/source-write-back-{width}.png", full_page=True)
