"""The streams list's search in the browser, at a phone's width and a desktop's: Enter sends one
request and aborts none; the list comes in natural order, with its total, and sorts by last event."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_journeys import append, has_no_horizontal_scroll

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The page's own record of htmx's requests and aborted requests.
RECORD_REQUESTS = """
window.sent = 0;
window.aborted = 0;
document.addEventListener("htmx:beforeSend", () => { window.sent += 1; });
document.addEventListener("htmx:sendAbort", () => { window.aborted += 1; });
"""


def test_enter_in_the_search_sends_one_request(operator_page, width):
    page = operator_page
    for name in ("user-1", "user-2", "user-10", "group-admins"):
        append(name, "Registered")
    page.add_init_script(RECORD_REQUESTS)
    page.goto("/streams/?category=user")
    rows = page.locator("#stream-results tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.locator("td:first-child a")).to_have_text(["user-1", "user-2", "user-10"])
    expect(page.locator("#stream-total")).to_contain_text("3 streams match")
    page.goto("/streams/")
    box = page.get_by_label("Name starts with")
    box.fill("user-1")
    expect(page.locator("#stream-results tbody tr")).to_have_count(2)  # the search as one types
    assert page.evaluate("window.sent") == 1

    with page.expect_response(lambda response: "prefix=user-1" in response.url):
        box.press("Enter")
    expect(page.locator("#stream-results tbody tr")).to_have_count(2)
    # A function, not a bare expression: Playwright evaluates a bare expression again at each poll,
    # and the page's Content-Security-Policy refuses that eval once the first check has failed.
    page.wait_for_function(
        "() => document.querySelector('#stream-results') && !document.querySelector('.htmx-request')"
    )

    assert page.evaluate("[window.sent, window.aborted]") == [2, 0]
    assert has_no_horizontal_scroll(page)


def test_the_list_sorts_by_last_event_from_its_control(operator_page, width):
    page = operator_page
    for name in ("user-1", "user-2", "user-1"):
        append(name, "Registered")
    page.goto("/streams/?prefix=user")
    names = page.locator("#stream-results tbody tr td:first-child a")
    expect(names).to_have_text(["user-1", "user-2"])

    page.get_by_label("Sort by").select_option(label="Last event, newest first")

    expect(page.locator("#stream-total")).to_contain_text("by last event, newest first")
    expect(names).to_have_text(["user-1", "user-2"])
    append("user-2", "Registered")
    page.reload()
    expect(names).to_have_text(["user-2", "user-1"])
    expect(page.get_by_label("Sort by")).to_have_value("recent")
