"""Playwright (sync API) driving Debian's Chromium against pytest-django's live server.

`playwright install` cannot download browsers here, so the tests use /usr/bin/chromium. Without it
they are skipped, except on CI (CI=true), where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def chromium():
    """One browser per test module, gone before other modules run: the suite forks processes elsewhere,
    and a child forked while Playwright's driver and event loop are alive hangs."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); browser tests skipped")
    from playwright.sync_api import sync_playwright

    with async_unsafe_allowed(), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextlib.contextmanager
def async_unsafe_allowed():
    """Playwright's sync API keeps an event loop running in this thread, and Django then refuses ORM
    calls here ("SynchronousOnlyOperation"); the test code's calls (fixtures, appends while a page is
    open) are plain synchronous ones, so allow them while the browser runs, and only then."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, live_server):
    context = chromium.new_context(viewport=VIEWPORT, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()


def log_in(page, username: str = "olivia", password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def operator_page(page, operator):
    """A page whose browser has logged in as the operator through the login form, on the streams list."""
    log_in(page)
    page.wait_for_url("**/dashboard/")
    page.goto("/streams/")
    return page


@pytest.fixture
def worker(tmp_path, fresh_projection_schemas):
    """A real Celery worker (consuming `live,recovery`, as in production) against the test database and
    this run's Redis, with short job slices, so that jobs started from a page run for real."""
    from tests.recovery.crash_helpers import Workers, clear_queues

    clear_queues()
    workers = Workers(tmp_path, slice_seconds=0.25, snapshot_dir=tmp_path / "snapshots")
    # Small replay batches: a job of a few thousand events takes long enough for a page to watch.
    workers.env["REPLAYDESK_REPLAY_BATCH_MAX"] = "25"
    workers.worker(1, concurrency=2)
    yield workers
    workers.stop_all()


# The two sizes every page is tested at: a phone's and a desktop's.
WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}


@pytest.fixture(params=list(WIDTHS))
def width(request, operator_page):
    """The operator's page, at a phone's width and at a desktop's."""
    operator_page.set_viewport_size(WIDTHS[request.param])
    return request.param
