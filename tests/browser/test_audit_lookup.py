"""What a support agent does in the browser: find who granted a permission on a resource, and when, then
read that user's timeline, field by field, with personal data masked."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.browser.test_journeys import has_no_horizontal_scroll
from tests.streams.test_audit_search import permissions_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_support_agent_finds_who_granted_a_permission_and_when_then_reads_the_grant(page, support_agent):
    permissions_history()
    log_in(page, "sam")
    page.wait_for_url("**/dashboard/")

    page.goto("/audit/")
    page.get_by_label("Search", exact=True).fill("resource:issueABC")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("resource: is not a search prefix")
    expect(page.locator("table.audit-events")).to_have_count(0)

    page.get_by_label("Search", exact=True).fill("resource=issueABC")
    page.get_by_role("button", name="Search").click()

    expect(page).to_have_url(re.compile(r"/audit/\?q=resource%3DissueABC"))
    rows = page.locator("table.audit-events tbody tr")
    expect(rows).to_have_count(3)
    grant = rows.filter(has_text="PermissionGranted").filter(has_text="user-123")
    expect(grant).to_contain_text("alice.admin")
    expect(grant).to_contain_text("2026-03-02 10:00:00")
    revoke = rows.filter(has_text="PermissionRevoked")
    expect(revoke).to_contain_text("user-456")
    expect(revoke).to_contain_text("2026-03-02 14:00:00")
    expect(page.get_by_role("button", name="Unmask personal data")).to_have_count(0)
    assert has_no_horizontal_scroll(page)

    grant.get_by_role("link", name="user-123").click()

    expect(page.get_by_role("heading", name="user-123", level=1)).to_be_visible()
    granted = page.locator('table.timeline tr[data-sequence="2"]')
    expect(granted).to_contain_text("PermissionGranted")
    expect(granted).to_contain_text("alice.admin")
    # The demo's own fold reads a grant as what it did: a permission now held on the resource.
    expect(granted.locator('[data-field="permissions.issueABC"]')).to_contain_text("set to")
    expect(granted.locator('[data-field="permissions.issueABC"]')).to_contain_text("write")
    created = page.locator('table.timeline tr[data-sequence="1"]')
    expect(created.locator('[data-field="email"]')).to_contain_text("•••")
    expect(page.locator("main")).not_to_contain_text("ann@example.com")

    page.get_by_label("Sequence", exact=True).fill("2")
    page.get_by_role("button", name="Show state").click()
    state = page.locator("table.state")
    expect(state.locator('tr[data-field="permissions.issueABC"]')).to_contain_text("write")
    expect(state.locator('tr[data-field="name"]')).to_contain_text("•••")
    assert has_no_horizontal_scroll(page)


def test_an_append_made_in_another_name_shows_who_really_appended_it(page, support_agent):
    from core import principals
    from streams.services import append_events

    with principals.acting_as(principals.user("olivia", via=principals.TOKEN)):
        grant = {"type": "PermissionGranted", "data": {"resource": "issueABC"}, "metadata": {"actor": "bob"}}
        append_events(stream="user-123", events=[grant])
    log_in(page, "sam")
    page.wait_for_url("**/dashboard/")

    page.goto("/audit/")
    page.get_by_label("Search", exact=True).fill("appended_by:user:olivia")
    page.get_by_role("button", name="Search").click()

    [row] = page.locator("table.audit-events tbody tr").all()
    expect(row).to_contain_text("bob")
    expect(row.locator(".appender")).to_have_text("appended by user:olivia (token)")
    assert has_no_horizontal_scroll(page)

    row.get_by_role("link", name="PermissionGranted").click()

    appender = page.locator("dl.facts div").filter(has=page.locator("dt", has_text="Appended by"))
    expect(appender.locator("dd")).to_have_text("user:olivia (token)")
