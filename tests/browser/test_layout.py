"""Every page of the console at a phone's width and a desktop's: the document never scrolls sideways
(wide tables scroll inside their own box), and the main menu reaches every page (on a phone, through
the Menu button). With REPLAYDESK_SCREENSHOTS set, a screenshot of each page at each size is saved
there (CI keeps them)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from recovery import services
from streams.consumers import run_projection
from streams.services import append_events
from tests.browser.conftest import WIDTHS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The main menu: each link's name, and the heading of the page it leads to.
MENU = [
    ("Dashboard", "Dashboard"),
    ("Streams", "Streams"),
    ("Events", "Events"),
    ("Audit", "Audit"),
    ("Consumers", "Consumers"),
    ("Sources", "Sources"),
    ("Jobs", "Jobs"),
    ("Approvals", "Approvals"),
    ("Snapshots", "Snapshots"),
    ("Drills", "Drills"),
]
LONG = "averyveryverylongunbrokenvaluewithoutanyspaces" * 6


@pytest.fixture
def console_with_data(fresh_projection_schemas, operator):
    """Enough on every page to fill its tables: streams with long names and data, consumers, a job."""
    for n in range(12):
        append_events(
            stream=f"user-{n}",
            events=[
                {
                    "type": "UserCreated",
                    "data": {"user_id": f"u{n}", "username": f"u{n}", "name": LONG, "email": f"u{n}@x.org"},
                    "metadata": {"actor": "alice.admin"},
                }
            ]
            * 3,
        )
    append_events(stream=f"ticket-{LONG[:80]}", events=[{"type": "TicketOpened", "data": {"text": LONG}}])
    run_projection("users_directory")
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="olivia", reason=LONG
    )
    return {"job": job}


def pages(data) -> list[str]:
    return [
        "/dashboard/",
        "/streams/",
        "/events/",
        "/audit/?q=alice.admin",
        "/consumers/",
        "/sources/",
        "/jobs/",
        "/approvals/",
        "/snapshots/",
        "/drills/",
        "/streams/user-1/",
        f"/streams/ticket-{LONG[:80]}/",
        "/consumers/users_directory/",
        f"/jobs/{data['job'].pk}/",
        "/jobs/new",
        "/lookup?q=nothing-answers-to-this",
    ]


def scrolls_sideways(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")


def screenshot(page: Page, path: str, width: str) -> None:
    directory = os.environ.get("REPLAYDESK_SCREENSHOTS")
    if directory:
        name = re.sub(r"[^A-Za-z0-9]+", "_", path.split("?")[0]).strip("_")[:60] or "home"
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}-{width}.png"), full_page=True)


def open_menu(page: Page, width: str) -> None:
    """On a phone the menu is behind its button; on a desktop it is always in view."""
    toggle = page.get_by_role("button", name="Menu")
    if width == "phone":
        expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
        toggle.click()
        expect(toggle).to_have_attribute("aria-expanded", "true")
    else:
        expect(toggle).to_be_hidden()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def test_no_page_scrolls_sideways_at_either_width(operator_page, width, console_with_data):
    page = operator_page
    for path in pages(console_with_data):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        assert not scrolls_sideways(page), f"{path} scrolls sideways at {WIDTHS[width]['width']} px"
        screenshot(page, path, width)


def test_the_menu_reaches_every_page_at_either_width(operator_page, width):
    page = operator_page
    for link, heading in MENU:
        open_menu(page, width)
        page.get_by_role("navigation", name="Main").get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        # The menu marks the page it is on (read also while the phone's menu is closed).
        expect(page.locator('.nav a[aria-current="page"]')).to_have_text(link)


def test_the_phone_menu_opens_and_closes_by_keyboard(operator_page):
    page = operator_page
    page.set_viewport_size(WIDTHS["phone"])
    toggle = page.get_by_role("button", name="Menu")
    toggle.focus()

    page.keyboard.press("Enter")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.keyboard.press("Escape")

    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(toggle).to_be_focused()


def test_a_wide_table_scrolls_inside_its_box_on_a_phone(operator_page, console_with_data):
    page = operator_page
    page.set_viewport_size(WIDTHS["phone"])
    page.goto("/events/")

    box = page.locator(".table-scroll").first
    assert box.evaluate("b => b.scrollWidth > b.clientWidth")  # the table is wider than the screen
    # …and its names stay on a line: no column is squeezed to a letter a line.
    type_cell = page.locator("table.data tbody tr").first.locator("td").nth(3)
    assert type_cell.evaluate("c => c.getBoundingClientRect().width") > 80
    assert not scrolls_sideways(page)


def test_between_a_tablet_and_a_desktop_the_menu_has_a_row_below_the_brand(operator_page):
    page = operator_page
    page.set_viewport_size({"width": 1100, "height": 800})
    page.goto("/dashboard/")

    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    menu = page.get_by_role("navigation", name="Main")
    expect(menu).to_be_visible()
    brand = page.get_by_role("link", name="Replaydesk", exact=True).bounding_box()
    look_up = page.get_by_role("searchbox").bounding_box()
    log_out = page.get_by_role("button", name="Log out").bounding_box()
    first_link = menu.get_by_role("link").first.bounding_box()
    # The brand, the look-up box and the account share the first row; the menu starts below them.
    assert abs(brand["y"] + brand["height"] / 2 - (look_up["y"] + look_up["height"] / 2)) < 8
    assert abs(log_out["y"] + log_out["height"] / 2 - (look_up["y"] + look_up["height"] / 2)) < 8
    assert first_link["y"] >= look_up["y"] + look_up["height"] - 2
    assert page.locator(".topbar").bounding_box()["height"] < 100
    assert not scrolls_sideways(page)


@pytest.mark.parametrize("tablet", [641, 700])  # 641: the narrowest width with a table, not cards
def test_on_a_tablet_the_jobs_list_shows_every_column_within_the_page(
    operator_page, console_with_data, tablet
):
    page = operator_page
    page.set_viewport_size({"width": tablet, "height": 900})
    page.goto("/jobs/")

    headers = page.locator("table.jobs thead th")
    expect(headers).to_have_count(7)
    widths = {header.inner_text(): header.bounding_box()["width"] for header in headers.all()}
    assert min(widths.values()) > 30, widths  # the target and who asked were squeezed to nothing
    assert not scrolls_sideways(page)
