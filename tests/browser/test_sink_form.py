"""An operator adds a webhook sink in the browser: a mistake (a URL without a scheme, then one of the
cloud's metadata service) is shown next to its field, and once fixed the new sink's page opens."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from streams.models import Sink
from tests.browser.test_journeys import has_no_horizontal_scroll

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_new_sink_with_a_mistake_shows_it_and_once_fixed_opens_the_sinks_page(operator_page):
    page = operator_page
    page.goto("/consumers/")
    page.get_by_role("link", name="New sink").click()
    page.get_by_label("Name").fill("crm_hook")
    page.get_by_label("URL").fill("hooks.example.com/replaydesk")
    page.get_by_label("Signing secret").fill("s3cret-signing-key-0123456789")
    page.get_by_label("Categories").fill("order, invoice")
    page.get_by_label("Rate (events per second)").fill("50")
    page.get_by_role("button", name="Create sink").click()

    url = page.get_by_label("URL")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_have_accessible_description(re.compile("an http:// or https:// URL"))
    expect(page.get_by_label("Signing secret")).to_have_value("")
    assert not Sink.objects.exists()
    assert has_no_horizontal_scroll(page)
    page.screenshot(path="/tmp/sink_form.png", full_page=True)

    # The cloud's metadata service is no receiver: refused before anything is saved.
    url.fill("http://169.254.169.254/latest/meta-data/")
    page.get_by_label("Signing secret").fill("s3cret-signing-key-0123456789")
    page.get_by_role("button", name="Create sink").click()
    expect(url).to_have_accessible_description(re.compile(r"not allowed \(link-local address\)"))
    assert not Sink.objects.exists()

    url.fill("https://hooks.example.com/replaydesk")
    page.get_by_label("Signing secret").fill("s3cret-signing-key-0123456789")
    page.get_by_role("button", name="Create sink").click()

    expect(page).to_have_url(re.compile(r"/consumers/crm_hook/$"))
    expect(page.get_by_role("status")).to_contain_text("Created the sink crm_hook")
    expect(page.locator(".sink-filter")).to_have_text("categories order, invoice")
    expect(page.get_by_role("link", name="Edit sink")).to_be_visible()
    page.screenshot(path="/tmp/sink_page.png", full_page=True)
