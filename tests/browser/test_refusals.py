"""A refused action says why on the page, also when htmx sent it (htmx swaps in only 2xx answers)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from streams.consumers import run_projection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_pause_refused_after_the_page_was_read_says_why(operator_page, operator, fresh_projection_schemas):
    page = operator_page
    run_projection("users_directory")
    page.goto("/consumers/users_directory/")
    # Her role changes while the page is open: the server refuses what the page still offers.
    operator.groups.clear()

    page.get_by_role("button", name="Pause").click()

    expect(page.get_by_role("alert")).to_contain_text("Not allowed")
    expect(page.locator("#consumer-live")).to_contain_text("running")
