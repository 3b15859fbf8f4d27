"""A source's page follows the copy without a reload: the positions copied, the count, the lag and the
state change in place as Replaydesk copies more of the source or someone pauses it elsewhere."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from streams import source_services
from streams.models import Source
from tests.browser.test_sources_page import orders  # noqa: F401 - a source with two events copied
from tests.streams.source_helpers import (
    copy_all,
    source_db,  # noqa: F401 - a source's scratch database
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_sources_page_shows_the_copy_moving_and_a_pause_made_elsewhere(operator_page, orders):  # noqa: F811
    page = operator_page
    page.goto("/sources/orders_store/")
    page.evaluate("window.notReloaded = true")
    live = page.locator("#source-live")
    expect(live.locator(".source-copied")).to_have_text("2")
    expect(live.locator(".source-position")).to_have_text("2")

    for version in range(3, 7):
        orders.append("order-1", version)
    copy_all()

    expect(live.locator(".source-copied")).to_have_text("6")
    expect(live.locator(".source-position")).to_have_text("6")
    expect(live.locator(".source-lag")).to_contain_text("0 positions")

    source_services.set_state(name="orders_store", state=Source.State.PAUSED, actor="someone-else")

    expect(live.locator(".source-state")).to_have_text("paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True, "the page refreshed in place"
