"""The lag chart of a consumer page fills its card at a phone's width and a desktop's, with labels one
can read, and says so in words when there was no lag at all."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from streams.consumers import run_projection
from streams.models import Consumer, LagSample

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def directory(fresh_projection_schemas):
    run_projection("users_directory")
    return Consumer.objects.get(name="users_directory")


def sample(consumer: Consumer, lags: list[int]) -> None:
    """One sample every 10 s up to now, the last of `lags` the latest."""
    now = timezone.now()
    LagSample.objects.bulk_create(
        LagSample(
            consumer=consumer,
            sampled_at=now - dt.timedelta(seconds=10 * (len(lags) - n)),
            head=5_000,
            checkpoint=5_000 - lag,
            lag_events=lag,
            lag_seconds=float(lag) / 100,
        )
        for n, lag in enumerate(lags)
    )


def box(locator) -> dict:
    return locator.evaluate(
        """e => { const r = e.getBoundingClientRect(), s = getComputedStyle(e);
                  return {left: r.left, right: r.right, width: r.width, height: r.height,
                          inner: e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight)}; }"""
    )


def test_a_lagging_consumers_chart_fills_its_card_with_readable_labels(operator_page, width, directory):
    sample(directory, [0, 120, 480, 2_500, 1_800, 900, 40] * 20)
    page = operator_page
    page.goto("/consumers/users_directory/")

    card, chart = page.locator("figure.chart"), page.locator("svg.lag-chart")
    expect(page.locator("svg.lag-chart path.lag-line")).to_have_count(1)
    assert abs(box(chart)["width"] - box(card)["inner"]) <= 2, "the chart does not fill its card"
    assert box(chart)["height"] >= 200
    labels = page.locator("svg.lag-chart text:visible")
    assert labels.count() >= 6  # axis titles, counts and times
    for n in range(labels.count()):
        label = box(labels.nth(n))
        assert label["height"] >= 11, f"label {labels.nth(n).text_content()!r} is {label['height']} px tall"
        assert box(card)["left"] <= label["left"] and label["right"] <= box(card)["right"]
    times = [box(t) for t in page.locator("svg.lag-chart text.x-label:visible").all()]
    assert len(times) >= 3
    assert all(a["right"] < b["left"] for a, b in zip(times, times[1:], strict=False)), "time labels overlap"
    if directory_shots := os.environ.get("REPLAYDESK_SCREENSHOTS"):
        os.makedirs(directory_shots, exist_ok=True)
        card.screenshot(path=os.path.join(directory_shots, f"lag_chart-{width}.png"))


def test_a_consumer_without_lag_says_so_instead_of_a_flat_line(operator_page, width, directory):
    sample(directory, [0] * 30)
    page = operator_page
    page.goto("/consumers/users_directory/")

    expect(page.locator("figure.chart")).to_contain_text("No lag in this period")
    expect(page.locator("svg.lag-chart")).to_have_count(0)
