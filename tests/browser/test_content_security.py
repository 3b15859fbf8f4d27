"""Under the Content-Security-Policy, pages work as before in a real browser: nothing is refused, htmx
polls and swaps, and the API docs render."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def refusals(page):
    """What the browser refused under the policy, as it reports it on the console."""
    found: list[str] = []

    def note(message) -> None:
        if "Content Security Policy" in message.text:
            found.append(f"{page.url}: {message.text[:160]}")

    page.on("console", note)
    return found


def test_the_console_runs_under_its_policy(operator_page, refusals):
    page = operator_page
    for path in (
        "/dashboard/",
        "/streams/",
        "/events/",
        "/consumers/",
        "/sources/",
        "/jobs/",
        "/jobs/new",
        "/drills/",
    ):
        page.goto(path)
        page.wait_for_load_state("networkidle")
    # htmx is alive: the dashboard's live part is polled and swapped in.
    page.goto("/dashboard/")
    stamp = page.locator("#dashboard-consumers-title .muted").inner_text()
    page.wait_for_function(
        "stamp => document.querySelector('#dashboard-consumers-title .muted').innerText !== stamp", arg=stamp
    )
    page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .info")

    assert refusals == []
