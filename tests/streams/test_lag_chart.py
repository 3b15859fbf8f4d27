"""The consumer page's lag chart when there was no lag: words, not a flat line on a made-up axis."""

import datetime as dt

import pytest
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from streams.consumers import run_projection
from streams.models import Consumer, LagSample

pytestmark = pytest.mark.django_db


@pytest.fixture
def directory(fresh_projection_schemas):
    run_projection("users_directory")
    return Consumer.objects.get(name="users_directory")


def sample(consumer: Consumer, lags: list[int]) -> None:
    now = timezone.now()
    for n, lag in enumerate(lags):
        LagSample.objects.create(
            consumer=consumer,
            sampled_at=now - dt.timedelta(seconds=10 * (len(lags) - n)),
            head=100,
            checkpoint=100 - lag,
            lag_events=lag,
            lag_seconds=0.0,
        )


def test_no_lag_in_the_range_is_said_instead_of_drawn(browser_client, directory):
    sample(directory, [0, 0, 0, 0])

    response = browser_client.get("/consumers/users_directory/")

    assertContains(response, "No lag in this period")
    assertContains(response, "lowest 0, highest 0, latest 0 events behind (4 samples)")
    assertNotContains(response, 'class="lag-line"')
    assertNotContains(response, "<svg")


def test_lag_in_the_range_is_drawn(browser_client, directory):
    sample(directory, [0, 3, 0, 0])

    response = browser_client.get("/consumers/users_directory/")

    assertNotContains(response, "No lag in this period")
    assertContains(response, '<path class="lag-line" d="M', count=1)
