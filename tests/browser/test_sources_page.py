"""What an operator watches and does about sources in the browser, on a phone (390 px) and a desktop
(1280 px): the list following a source as it is copied, without a reload; pause then resume from a
source's page; a parked event retried (still in conflict: the reason shows) and skipped; and an admin
adding a source through the form."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.audit import AuditType
from streams.models import Event, Source, SourceParkedEvent
from tests.browser.conftest import WIDTHS, log_in
from tests.browser.test_journeys import has_no_horizontal_scroll
from tests.conftest import person
from tests.streams.source_helpers import (
    TABLE_OPTIONS,
    add_table_source,
    copy_all,
    source_db,  # noqa: F401 - a source's scratch database
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def orders(source_db):  # noqa: F811
    """A source whose first two events are copied."""
    source_db.append("order-1", 1)
    source_db.append("order-1", 2)
    add_table_source(source_db)
    copy_all()
    return source_db


def audited() -> list[tuple[str, str]]:
    trail = Event.objects.filter(stream__name="console-source.orders_store").order_by("position")
    return list(trail.values_list("type", "actor"))


def test_the_list_shows_a_source_copying_live(operator_page, width, orders):
    page = operator_page
    if width == "phone":
        page.get_by_role("button", name="Menu").click()  # the menu is behind its button on a phone
    page.get_by_role("link", name="Sources", exact=True).click()
    expect(page.get_by_role("heading", name="Sources", level=1)).to_be_visible()
    page.evaluate("window.notReloaded = true")
    row = page.locator('tr.source[data-source="orders_store"]')
    expect(row.locator(".source-copied")).to_have_text("2")
    expect(row.locator(".badge")).to_have_text("healthy")

    for version in range(3, 6):
        orders.append("order-1", version)
    copy_all()

    expect(row.locator(".source-copied")).to_have_text("5")
    expect(row.locator(".source-position")).to_have_text("5")
    assert page.evaluate("window.notReloaded") is True, "the list refreshes in place"
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/sources-{width}.png", full_page=True)


def test_a_copied_stream_leads_to_its_source_and_the_dashboard_counts_sources(operator_page, width, orders):
    page = operator_page
    page.goto("/streams/")
    page.get_by_label("Copied from source").select_option("orders_store")

    expect(page.locator("tr.stream")).to_have_count(1)
    expect(page.locator("tr.stream .stream-source")).to_have_text("from orders_store")
    assert has_no_horizontal_scroll(page)
    page.get_by_role("link", name="order-1").click()
    expect(page.locator(".copied-from")).to_contain_text("Copied from source orders_store")
    page.locator(".copied-from").get_by_role("link", name="orders_store").click()
    expect(page.get_by_role("heading", name="orders_store", level=1)).to_be_visible()

    page.goto("/dashboard/")
    expect(page.locator('li.source-health[data-health="healthy"] .figure')).to_have_text("1")
    # Its backfill job is listed too: the jobs table fits a phone as well.
    expect(page.locator("tr.job")).to_have_count(1)
    assert has_no_horizontal_scroll(page)


def test_pause_then_resume_from_the_source_page(operator_page, width, orders):
    page = operator_page
    page.goto("/sources/")
    page.get_by_role("link", name="orders_store").click()
    expect(page.locator("#source-health .badge")).to_have_text("healthy")

    page.get_by_role("button", name="Pause").click()

    expect(page.get_by_role("status")).to_contain_text("Paused orders_store")
    expect(page.locator("#source-health .badge")).to_have_text("paused")
    assert Source.objects.get(name="orders_store").state == "paused"
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/source-paused-{width}.png", full_page=True)

    page.get_by_role("button", name="Resume").click()

    expect(page.get_by_role("status")).to_contain_text("Resumed orders_store")
    expect(page.locator("#source-health .badge")).to_have_text("healthy")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert Source.objects.get(name="orders_store").state == "running"
    assert audited()[-2:] == [(AuditType.SOURCE_PAUSED, "olivia"), (AuditType.SOURCE_RESUMED, "olivia")]


def test_a_parked_event_still_in_conflict_says_why_and_is_then_skipped(operator_page, width, orders):
    page = operator_page
    orders.append("order-2", 1, "not a type!", body={"note": "what the source held"})
    copy_all()
    parked = SourceParkedEvent.objects.get()
    page.goto("/sources/orders_store/")
    row = page.locator(f'tr.parked-event[data-parked="{parked.pk}"]')
    expect(row).to_contain_text("not a type!")
    row.get_by_text("Payload").click()
    expect(row.locator("pre.json")).to_contain_text("what the source held")
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/source-parked-{width}.png", full_page=True)

    row.get_by_role("button", name="Retry").click()

    expect(page.get_by_role("alert")).to_contain_text("still in conflict")
    expect(row).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Skip").click()

    expect(page.get_by_role("status")).to_contain_text("Skipped the parked event")
    expect(page.locator("tr.parked-event")).to_have_count(0)
    expect(page.locator(f'tr.resolved-event[data-parked="{parked.pk}"]')).to_contain_text("skipped")
    assert SourceParkedEvent.objects.get().state == "skipped"
    assert has_no_horizontal_scroll(page)


@pytest.mark.parametrize("size", list(WIDTHS))
def test_an_admin_adds_a_source_through_the_form(page, size, source_db):  # noqa: F811
    person("ada", "admin")
    page.set_viewport_size(WIDTHS[size])
    log_in(page, "ada")
    page.wait_for_url("**/dashboard/")
    page.goto("/sources/")
    page.get_by_role("link", name="Add a source").click()
    page.get_by_label("Name", exact=True).fill("orders_store")
    page.get_by_role("radio", name="table").check()
    page.get_by_label("DSN", exact=True).fill("postgresql://reader:hunter2@10.1.2.3/shop")
    options = "\n".join(f"{key}={value}" for key, value in TABLE_OPTIONS.items())
    page.get_by_label("Options", exact=True).fill(options)
    assert has_no_horizontal_scroll(page)

    page.get_by_role("button", name="Add source").click()

    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.locator("#id_dsn_error")).to_contain_text("may not be reached")
    expect(page.get_by_label("DSN", exact=True)).to_have_value("")
    assert not Source.objects.exists()
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/source-form-{size}.png", full_page=True)

    page.get_by_label("DSN", exact=True).fill(source_db.reader_url)
    page.get_by_role("button", name="Add source").click()

    page.wait_for_url("**/sources/orders_store/")
    expect(page.get_by_role("status")).to_contain_text("Added the source orders_store")
    expect(page.locator(".source-dsn")).to_have_text("stored encrypted; never shown")
    assert Source.objects.get().created_by == "ada"
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/source-added-{size}.png", full_page=True)
