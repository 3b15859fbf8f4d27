"""An operator verifies a source from its page, on a phone (390 px) and a desktop (1280 px): Verify leads
to the new-job form filled in for the source, the job runs, and its page says the source and its copy
agree, or shows the streams that differ and samples of what."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from playwright.sync_api import expect

from recovery.models import Job
from recovery.runner import run_inline
from tests.browser.test_journeys import has_no_horizontal_scroll
from tests.streams.source_helpers import (
    add_table_source,
    source_db,  # noqa: F401 - a source's scratch database
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def orders(source_db):  # noqa: F811
    """A source of three events in two streams, copied by its backfill job."""
    source_db.append("order-1", 1)
    source_db.append("order-1", 2)
    source_db.append("order-2", 1)
    add_table_source(source_db)
    assert run_inline(Job.objects.get(kind="backfill").pk).state == "succeeded"
    return source_db


def verify_from_the_page(page, reason: str) -> Job:
    page.goto("/sources/orders_store/")
    page.locator("#source-actions").get_by_role("link", name="Verify").click()
    expect(page.get_by_label("Verify source", exact=True)).to_be_checked()
    expect(page.get_by_label("Source", exact=True)).to_have_value("orders_store")
    expect(page.get_by_label("Samples")).to_be_visible()
    expect(page.get_by_label("Projection", exact=True)).to_be_hidden()
    page.get_by_label("Reason").fill(reason)
    page.get_by_role("button", name="Start job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.filter(kind="verify_source").latest("pk")
    assert run_inline(job.pk).state == "succeeded"
    page.reload()
    return job


def test_an_operator_verifies_a_source_from_its_page(operator_page, width, orders):
    page = operator_page

    verify_from_the_page(page, "nightly check")

    expect(page.locator(".verify-verdict")).to_have_text(
        "orders_store and its copy agree up to its position 3."
    )
    expect(page.locator(".source-verify-facts")).to_contain_text("Events in the copy")
    assert has_no_horizontal_scroll(page)

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM streams_event WHERE sequence = 2"
            " AND stream_id = (SELECT id FROM streams_stream WHERE name = 'order-1')"
        )
    verify_from_the_page(page, "after the incident")

    expect(page.locator(".verify-verdict")).to_contain_text("differ up to its position 3: 1 of 2 streams")
    row = page.locator('.source-verify-streams tr[data-stream="order-1"]')
    expect(row.locator("td")).to_have_text(["order-1", "2", "1", "1", "0", "0"])
    sample = page.locator(".source-verify-sample")
    expect(sample).to_have_count(1)
    expect(sample.locator("td")).to_have_text(["missing in the copy", "order-1", "2", "2"])
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/source-verify-{width}.png", full_page=True)
