"""What an operator does in the browser: log in, find a stream, open an event, watch the log."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from streams.services import append_events
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG = "averyveryverylongunbrokenvaluewithoutanyspaces" * 12


def append(stream: str, type_: str = "Noted", data: dict | None = None, **event) -> None:
    append_events(stream=stream, events=[{"type": type_, "data": data or {}, **event}], actor="olivia")


def has_no_horizontal_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_operator_logs_in_through_the_form_and_sees_the_streams(page, operator):
    page.goto("/events/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/events/$"))

    log_in(page, password="not the password")
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username and password")

    log_in(page)
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.locator(".account")).to_contain_text("olivia")
    page.get_by_role("link", name="Streams").click()
    expect(page.get_by_role("heading", name="Streams", level=1)).to_be_visible()


def test_operator_finds_a_stream_by_prefix_and_opens_an_event(operator_page):
    page = operator_page
    for name in ("user-1", "user-2", "group-admins"):
        append(name, "Registered")
    append("issue-ABC", "IssueOpened", {"resource": "issueABC", "title": "Login fails"})
    append("issue-ABC", "CommentAdded", {"resource": "issueABC", "text": "Seen on Safari too"})

    page.get_by_label("Name starts with").fill("issue")
    results = page.locator("#stream-results tbody tr")
    expect(results).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/streams/\?prefix=issue"))
    results.get_by_role("link", name="issue-ABC").click()

    expect(page.get_by_role("heading", name="issue-ABC", level=1)).to_be_visible()
    rows = page.locator("table.events tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("CommentAdded")
    rows.first.locator("summary").click()
    expect(rows.first.locator("pre")).to_contain_text('"text": "Seen on Safari too"')

    rows.first.get_by_role("link", name="CommentAdded").click()
    expect(page.get_by_role("heading", name="CommentAdded", level=1)).to_be_visible()
    expect(page.get_by_role("region", name="Data", exact=True)).to_contain_text('"resource": "issueABC"')
    expect(page.get_by_role("region", name="Metadata")).to_contain_text('"actor": "olivia"')
    expect(page.locator("dl.facts")).to_contain_text("issue-ABC")


def test_an_appended_event_appears_in_the_live_tail_without_a_reload(operator_page):
    page = operator_page
    append("user-1", "Registered")
    page.goto("/events/?category=user")
    expect(page.locator("#log-rows tr.event")).to_have_count(1)
    page.evaluate("window.loadedOnce = true")

    append("group-admins", "MemberAdded", {"member": "user-1"})
    append("user-1", "EmailChanged", {"email": "new@example.com"})

    arrived = page.locator("#log-rows tr.event").first
    expect(arrived).to_contain_text("EmailChanged", timeout=10_000)
    expect(page.locator("#log-rows tr.event")).to_have_count(2)
    expect(page.locator("#tail-status")).to_contain_text("1 new event")
    assert page.evaluate("window.loadedOnce === true"), "the page was reloaded"

    append("user-2", "Registered")
    expect(page.locator("#log-rows tr.event")).to_have_count(3, timeout=10_000)
    expect(page.locator("#log-rows tr.event", has_text="MemberAdded")).to_have_count(0)


def test_live_tail_switched_off_shows_nothing_new_until_switched_back_on(operator_page):
    page = operator_page
    page.goto("/events/?category=user")  # the log also holds the audit of this login (category console)
    expect(page.locator("#log-empty")).to_be_visible()
    toggle = page.get_by_label("Live tail")
    toggle.focus()
    page.keyboard.press("Space")
    expect(toggle).not_to_be_checked()

    append("user-1", "Registered")
    # Two polling periods and then some: had the tail been on, the event would be shown by now.
    page.wait_for_timeout(4_500)
    expect(page.locator("#log-rows tr.event")).to_have_count(0)

    page.keyboard.press("Space")
    expect(page.locator("#log-rows tr.event")).to_have_count(1, timeout=10_000)
    expect(page.locator("#log-empty")).to_be_hidden()


def test_pages_fit_1280_pixels_without_horizontal_scrolling(operator_page):
    page = operator_page
    name = "tenant-" + "x" * 190
    append(name, "VeryLongTypeName" * 12, {"blob": LONG, "nested": {"path": LONG}}, metadata={"note": LONG})
    append("user-1", "Registered", {"blob": LONG})

    for url in ("/streams/", f"/streams/{name}/", "/events/", "/events/?type=1bad"):
        page.goto(url)
        for summary in page.locator("details summary").all():
            summary.click()
        assert has_no_horizontal_scroll(page), url
    page.goto(f"/streams/{name}/")
    page.locator("table.events a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("VeryLongTypeName")
    assert has_no_horizontal_scroll(page), page.url


def test_keyboard_reaches_the_skip_link_the_search_field_and_the_stream_links(operator_page):
    page = operator_page
    append("user-1", "Registered")
    page.reload()

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()

    reached = []
    for _ in range(10):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()")
        )
        if reached[-1] == "user-1":
            break
    assert reached[0] == "prefix", reached
    assert reached[-1] == "user-1", reached

    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="user-1", level=1)).to_be_visible()


def test_stream_page_pages_older_and_newer_in_place(operator_page):
    page = operator_page
    append_events(stream="user-1", events=[{"type": f"Step{n}", "data": {"n": n}} for n in range(1, 6)])
    page.goto("/streams/user-1/?limit=2")
    page.evaluate("window.loadedOnce = true")
    first_rows = page.locator("table.events tbody tr")

    page.get_by_role("navigation", name="Pages of events, top").get_by_role("link", name="Older").click()
    expect(first_rows.first).to_have_attribute("data-sequence", "3")
    expect(page).to_have_url(re.compile(r"before=4"))
    page.get_by_role("navigation", name="Pages of events, top").get_by_role("link", name="Newer").click()
    expect(first_rows.first).to_have_attribute("data-sequence", "5")
    assert page.evaluate("window.loadedOnce === true"), "paging reloaded the page"

    page.go_back()
    expect(first_rows.first).to_have_attribute("data-sequence", "3")
