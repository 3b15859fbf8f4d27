"""A form on its way shows it: the button that sent it is marked busy until the answer comes, and a
second press does not send the form again."""

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_login_button_is_busy_while_the_login_is_on_its_way(page, operator):
    page.goto("/login/")
    page.get_by_label("Username").fill(operator.username)
    page.get_by_label("Password").fill(PASSWORD)
    # Seen after the page's own handlers: whether each submit was let through; and then held here, so
    # that the page stays as it is while the answer would be on its way.
    page.evaluate(
        """window.sent = [];
        window.addEventListener("submit", (event) => {
          window.sent.push(!event.defaultPrevented);
          event.preventDefault();
        })"""
    )
    button = page.get_by_role("button", name="Log in")

    button.click()
    expect(button).to_have_attribute("aria-busy", "true")
    button.click()  # pressed again while it waits

    assert page.evaluate("window.sent") == [True, False]
    assert (
        page.evaluate("getComputedStyle(document.querySelector('[aria-busy=true]'), '::after').content")
        == '""'
    )
