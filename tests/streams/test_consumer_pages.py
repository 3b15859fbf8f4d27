"""The consumer pages through Django's test client: the dashboard, the consumers list, one consumer
(facts, lag chart, lagging streams, parking lot), the operator actions, and a stream's consumers."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from console import dashboard
from core.templatetags.formats import duration, per_second
from recovery import services
from recovery.models import Job
from streams import consumers, subscriptions
from streams.consumers import run_projection
from streams.lag_chart import MAX_POINTS, lag_chart
from streams.lag_samples import lag_history
from streams.models import Consumer, Event, LagSample, ParkedEvent
from streams.projections import Projection, add, remove
from streams.services import append_events
from tests.holding import append_held_open

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


class Picky(Projection, register=False):
    """Parks the orders whose data says "poison", until told otherwise."""

    name = "test_picky"
    categories = ("order",)
    tables = ("CREATE TABLE applied (position bigint PRIMARY KEY)",)
    max_attempts = 2
    on_failure = "park"
    failing = True

    def apply(self, cursor, events):
        if Picky.failing and any(e.data.get("poison") for e in events):
            raise ValueError("cannot apply a poisoned order")
        cursor.execute("INSERT INTO applied SELECT unnest(%s::bigint[])", [[e.position for e in events]])


@pytest.fixture
def picky(monkeypatch):
    monkeypatch.setattr(consumers, "BACKOFF_CAP_SECONDS", 0.0)
    Picky.failing = True
    add(Picky)
    yield Picky
    remove(Picky.name)


def park_poison(count: int = 1) -> list[ParkedEvent]:
    """Orders that the picky projection parks, each after its last attempt."""
    for n in range(count):
        append_events(stream=f"order-{n}", events=[{"type": "Placed", "data": {"poison": True}}])
    for _ in range(Picky.max_attempts * count + 1):
        run_projection(Picky.name)
    return list(ParkedEvent.objects.order_by("pk"))


def users(count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        append_events(
            stream=f"user-{n}",
            events=[
                {
                    "type": "UserCreated",
                    "data": {"user_id": f"u{n}", "username": f"u{n}", "name": "N", "email": f"u{n}@x.org"},
                }
            ],
        )


@pytest.fixture
def directory():
    """The demo users directory, caught up on an empty log, lagging over 5 events."""
    run_projection("users_directory")
    Consumer.objects.filter(name="users_directory").update(lag_threshold=5)
    return Consumer.objects.get(name="users_directory")


def health_of(response, name: str) -> str:
    match = re.search(rf'data-consumer="{name}" data-health="(\w+)"', response.content.decode())
    return match.group(1) if match else ""


def console_events(name: str) -> list[str]:
    return list(
        Event.objects.filter(stream__name=f"console-consumer.{name}")
        .order_by("position")
        .values_list("type", flat=True)
    )


# The dashboard


def test_home_is_the_dashboard(browser_client):
    assertRedirects(browser_client.get("/"), "/dashboard/")


def test_dashboard_lists_every_consumer_with_its_lag_and_a_health_badge(browser_client, directory):
    users(8)
    Consumer.objects.create(name="mailer", kind=Consumer.Kind.SINK, state=Consumer.State.PAUSED)

    response = browser_client.get("/dashboard/")

    assert health_of(response, "users_directory") == "lagging"
    assert health_of(response, "mailer") == "paused"
    assertContains(response, '<span class="badge badge-lagging"', count=1)
    assertContains(response, ">lagging</span>", count=1)
    assertContains(response, ">paused</span>", count=1)
    row = re.search(r'data-consumer="users_directory".*?</tr>', response.content.decode(), re.S).group(0)
    assert '<td class="num">8</td>' in row  # lag in events
    assertContains(response, 'href="/consumers/users_directory/"')


def test_dashboard_turns_a_consumer_healthy_once_it_has_caught_up(browser_client, directory):
    users(8)
    assert health_of(browser_client.get("/dashboard/", **HTMX), "users_directory") == "lagging"

    run_projection("users_directory")

    assert health_of(browser_client.get("/dashboard/", **HTMX), "users_directory") == "healthy"


def test_dashboard_shows_the_head_and_counts_appends_by_recorded_time_not_imported_history(browser_client):
    users(5)
    # Two of them imported with their original times: they are history, not appends of the last minute.
    Event.objects.filter(stream__name__in=["user-0", "user-1"]).update(
        recorded_at=timezone.now() - dt.timedelta(days=3)
    )
    head = Event.objects.order_by("-position").first().position

    response = browser_client.get("/dashboard/")

    text = re.sub(r"\s+", " ", response.content.decode())
    assert f'<dt>Head position</dt><dd class="figure">{head:,}</dd>' in text
    # Three user events, and the console's audit of the login that opened this session.
    logins = Event.objects.filter(stream__category="console", type="UserLoggedIn").count()
    assert logins == 1
    last_minute = f'<dt>Last minute</dt><dd class="figure" id="appends-last-minute">{3 + logins} <span'
    assert last_minute in text
    assert "imported events keep their original times" in text


def test_dashboard_draws_the_appends_of_the_last_hour_a_point_a_minute(browser_client):
    cache.clear()  # minutes counted by another test's dashboard
    now = timezone.now()
    users(6)
    # Moved back to 40 and 10 minutes ago: two past minutes of the chart, four events this minute.
    for name, minutes in [("user-0", 40), ("user-1", 10), ("user-2", 10)]:
        Event.objects.filter(stream__name=name).update(recorded_at=now - dt.timedelta(minutes=minutes))

    history = dashboard.append_history(now=now)

    assert len(history) == dashboard.HISTORY_MINUTES
    assert (history[-41], history[-11]) == (1, 2)
    assert history[-1] == 3 + Event.objects.filter(type="UserLoggedIn").count()
    assert sum(history) == Event.objects.count()
    users(2, start=100)
    assert dashboard.append_history(now=timezone.now())[-1] >= history[-1] + 2  # the current minute is live

    text = re.sub(r"\s+", " ", browser_client.get("/dashboard/").content.decode())
    total = Event.objects.count()
    assert f'Appended, last hour <span class="muted">{total} · a point a minute</span>' in text
    assert re.search(r'<div class="wide append-history".*?<polyline points="[\d., ]+"', text)


def test_dashboard_says_when_nothing_was_appended_in_the_last_hour(operator, client):
    cache.clear()
    client.force_login(operator)
    # Its login's audit event, and anything else, recorded two hours ago.
    Event.objects.update(recorded_at=timezone.now() - dt.timedelta(hours=2))

    assertContains(client.get("/dashboard/"), "No appends in the last hour.")


def lag_samples(consumer: Consumer, lags: list[int]) -> None:
    """One sample a minute, the last one now."""
    now = timezone.now()
    for back, lag in enumerate(reversed(lags)):
        LagSample.objects.create(
            consumer=consumer,
            sampled_at=now - dt.timedelta(minutes=back),
            head=1000,
            checkpoint=1000 - lag,
            lag_events=lag,
            lag_seconds=1.0,
        )


def trend_of(response, name: str) -> str:
    row = re.search(rf'data-consumer="{name}".*?</tr>', response.content.decode(), re.S).group(0)
    match = re.search(r'<span class="lag-trend" data-trend="(\w*)">', row)
    return match.group(1) if match else "no samples yet" if "no samples yet" in row else ""


@pytest.mark.parametrize(
    ("lags", "expected", "arrow"),
    [
        ([0, 0, 10, 50, 120, 300, 600], "rising", "↑"),
        ([900, 800, 500, 300, 100, 20, 5], "falling", "↓"),
        ([40, 42, 41, 40, 43, 41, 42], "steady", "→"),
    ],
)
def test_dashboard_shows_each_consumers_lag_trend(browser_client, directory, lags, expected, arrow):
    lag_samples(directory, lags)

    response = browser_client.get("/dashboard/")

    assert trend_of(response, "users_directory") == expected
    assertContains(response, f'{arrow}<span class="visually-hidden"> {expected}</span>')
    assertContains(response, f"from {min(lags)} to {max(lags)}, now {lags[-1]}")


def test_dashboard_says_when_a_consumer_has_no_lag_samples_yet(browser_client, directory):
    assert trend_of(browser_client.get("/dashboard/"), "users_directory") == "no samples yet"


def test_dashboard_says_no_lag_instead_of_a_flat_line(browser_client, directory):
    lag_samples(directory, [0, 0, 0, 0, 0, 0])

    response = browser_client.get("/dashboard/")

    assert trend_of(response, "users_directory") == "steady"
    row = re.search(r'data-consumer="users_directory".*?</tr>', response.content.decode(), re.S).group(0)
    assert '<span class="no-lag">no lag</span>' in row
    assert "<polyline" not in row


def test_dashboard_lists_what_needs_attention_and_links_to_it(browser_client, picky, directory):
    assertContains(browser_client.get("/dashboard/"), 'id="attention-none"')

    park_poison(2)
    Consumer.objects.filter(name="users_directory").update(state=Consumer.State.FAILED, last_error="boom")
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="olivia", reason="r"
    )
    Job.objects.filter(pk=job.pk).update(state=Job.State.FAILED, finished_at=timezone.now())

    response = browser_client.get("/dashboard/")

    assertNotContains(response, 'id="attention-none"')
    text = re.sub(r"\s+", " ", response.content.decode())
    failing = '<span class="badge badge-failing">failing</span> <a href="/consumers/users_directory/">'
    assert f'<li data-attention="failing">{failing}users_directory</a>: ' in text
    assert '<a href="/consumers/test_picky/#parked-title">2 parked events</a> of test_picky wait for' in text
    assert '<a href="/jobs/?state=failed">1 job failed</a> in the last 24 hours' in text


def test_dashboard_names_the_jobs_waiting_for_approval(browser_client, four_eyes, directory):
    job = services.request_job(
        kind="replay", params={"projection": "users_directory"}, requested_by="someone", reason="names broke"
    )

    for response in (browser_client.get("/dashboard/"), browser_client.get("/approvals/waiting", **HTMX)):
        count = '<span class="muted" id="approval-summary-count">1 waiting</span>'
        assertContains(response, count, html=True)
        link = f'<a href="/approvals/{job.pk}/">Review job {job.pk}</a>'
        assertContains(response, f'{link}: <span class="wrap">replay of users_directory')
        assertContains(response, "asked by someone")
        assertNotContains(response, "No job waits for approval.")


def test_dashboard_lists_subscriptions_when_there_are_any(browser_client):
    assertNotContains(browser_client.get("/dashboard/"), 'id="dashboard-subscriptions"')
    subscriptions.create_subscription(name="billing", actor="olivia", categories=["invoice"], partitions=2)
    append_events(stream="invoice-1", events=[{"type": "Issued", "data": {}}])

    response = browser_client.get("/dashboard/")

    text = re.sub(r"\s+", " ", response.content.decode())
    assert '<a href="/consumers/billing/">billing</a>: 1 event behind over 2 partitions' in text


def test_dashboard_poll_answers_htmx_with_the_live_part_only(browser_client, directory):
    response = browser_client.get("/dashboard/", **HTMX)

    assertContains(response, 'id="dashboard-live"')
    assertContains(response, 'hx-trigger="every 2s')
    assertNotContains(response, "<html")


def test_dashboard_says_when_there_are_no_consumers(browser_client):
    assertContains(browser_client.get("/dashboard/"), "No consumers yet.")


def test_navigation_has_dashboard_and_consumers(browser_client):
    response = browser_client.get("/consumers/")

    assertContains(response, '<a href="/dashboard/">Dashboard</a>', html=True)
    assertContains(response, '<a href="/consumers/" aria-current="page">Consumers</a>', html=True)


# The consumers list


def test_consumers_page_counts_parked_events_and_shows_the_last_error(browser_client, picky):
    park_poison(2)

    response = browser_client.get("/consumers/")

    row = re.search(r'data-consumer="test_picky".*?</tr>', response.content.decode(), re.S).group(0)
    assert '<a href="/consumers/test_picky/#parked-title">2</a>' in row
    assert "cannot apply a poisoned order" in row


# One consumer


def test_consumer_page_shows_its_facts_thresholds_and_last_error_with_its_time(browser_client, directory):
    users(3)
    error_at = timezone.now() - dt.timedelta(minutes=20)
    Consumer.objects.filter(pk=directory.pk).update(
        last_error="event 42: ValueError: boom", last_error_at=error_at, stall_seconds=90
    )

    response = browser_client.get("/consumers/users_directory/")

    text = re.sub(r"\s+", " ", response.content.decode())
    assert "<dt>State</dt><dd>running</dd>" in text
    assert "<dt>Health</dt><dd>healthy</dd>" in text  # 3 behind, threshold 5
    assert '<dt>Lag</dt><dd class="figure">3 events ·' in text
    assert "lagging over 5 events; stalled after 1 min 30 s without progress" in text
    assert "event 42: ValueError: boom" in text
    assert error_at.strftime("%Y-%m-%d %H:%M:%S") in text
    assertContains(response, '<button type="submit">Pause</button>', html=True)
    assertNotContains(response, ">Resume</button>")


def test_consumer_page_draws_the_lag_chart_from_its_samples(browser_client, directory):
    now = timezone.now()
    for seconds, lag in [(3000, 12), (2990, 30), (2980, 7), (5 * 3600, 999)]:
        LagSample.objects.create(
            consumer=directory,
            sampled_at=now - dt.timedelta(seconds=seconds),
            head=100,
            checkpoint=100 - lag,
            lag_events=lag,
            lag_seconds=1.0,
        )

    last_hour = browser_client.get("/consumers/users_directory/")
    day = browser_client.get("/consumers/users_directory/?range=24h")

    assertContains(last_hour, 'data-samples="3"')
    assertContains(last_hour, "lowest 7, highest 30, latest 7 events behind")
    assertContains(last_hour, '<path class="lag-line" d="M', count=1)
    assertNotContains(last_hour, '<circle class="lag-dot"')
    assertContains(
        last_hour, '<title id="lag-chart-svg-title">Lag of users_directory in events, last hour</title>'
    )
    assertContains(day, 'data-samples="4"')
    assertContains(day, "lowest 7, highest 999, latest 7 events behind")
    # Hours without samples are the sampler being down, not a line to draw: the lone sample is a dot.
    assertContains(day, '<path class="lag-line" d="M', count=1)
    assertContains(day, '<circle class="lag-dot"', count=1)
    assertContains(day, '<a id="range-24h" href="?range=24h" aria-current="true"')


def test_consumer_page_without_samples_says_so_in_the_chart(browser_client, directory):
    response = browser_client.get("/consumers/users_directory/?range=7d")

    assertContains(response, 'data-samples="0"')
    assertContains(response, "No lag samples in the last 7 days")


def test_a_week_of_samples_is_thinned_in_the_database_and_keeps_its_peak(directory):
    now = timezone.now()
    start = now - dt.timedelta(days=7)
    LagSample.objects.bulk_create(
        LagSample(
            consumer=directory,
            sampled_at=start + dt.timedelta(seconds=10 * n + 5),
            head=0,
            checkpoint=0,
            lag_events=5_000 if n == 31_337 else n % 7,
            lag_seconds=0.0,
        )
        for n in range(60_480)
    )

    chart = lag_chart(consumer=directory, range_key="7d", now=now)
    history = lag_history(consumer=directory, since=start, until=now, max_points=MAX_POINTS)

    assert len(history.points) <= MAX_POINTS
    assert max(p.lag_events for p in history.points) == 5_000
    times = [p.sampled_at for p in history.points]
    assert times == sorted(times)
    assert (chart.samples, chart.min_lag, chart.max_lag, chart.latest_lag) == (60_480, 0, 5_000, 60_479 % 7)


def lagging_stream_names(response) -> list[str]:
    """The streams of the page's top lagging streams table, in its order."""
    return re.findall(
        r'<tr><td class="wrap" data-label="Stream"><a href="/streams/([^/]+)/">', response.content.decode()
    )


def test_consumer_page_lists_the_top_lagging_streams_with_links(browser_client, directory):
    users(1, start=1)
    for _ in range(3):
        append_events(
            stream="user-7",
            events=[{"type": "UserNameSet", "data": {"user_id": "u7", "name": "M"}}],
        )

    response = browser_client.get("/consumers/users_directory/")

    rows = lagging_stream_names(response)
    assert rows == ["user-7", "user-1"]


def test_far_behind_the_page_lists_the_lagging_streams_of_the_events_it_meets_next(
    browser_client, directory, monkeypatch
):
    from streams import consumer_views

    # The page groups only the next LAGGING_SCAN events after the checkpoint, and says so; the API's
    # list still counts the whole lag.
    monkeypatch.setattr(consumer_views, "LAGGING_SCAN", 4)
    users(1, start=1)
    users(1, start=2)
    for _ in range(5):
        append_events(
            stream="user-7",
            events=[{"type": "UserNameSet", "data": {"user_id": "u7", "name": "M"}}],
        )

    response = browser_client.get("/consumers/users_directory/")

    rows = lagging_stream_names(response)
    assert rows == ["user-7", "user-1", "user-2"]
    assertContains(response, "most first, among the next 4 events of the log")
    lags = re.findall(r'data-label="Lag \(events\)">(\d+)<', response.content.decode())
    assert lags == ["2", "1", "1"]


def test_consumer_page_lists_parked_events_with_retry_and_skip_and_resolved_ones_below(browser_client, picky):
    first, second = park_poison(2)
    consumers.skip_parked(parked_id=second.pk, actor="olivia")

    response = browser_client.get("/consumers/test_picky/")

    text = response.content.decode()
    assertContains(response, f'action="/consumers/test_picky/parked/{first.pk}/retry?range=1h"')
    assertContains(response, f'action="/consumers/test_picky/parked/{first.pk}/skip?range=1h"')
    assertContains(response, f'href="/events/{first.event.event_id}/"')
    assertContains(response, "cannot apply a poisoned order")
    assert text.index(f'data-parked="{second.pk}" data-state="skipped"') > text.index(
        f'data-parked="{first.pk}"'
    )
    assertNotContains(response, f"/parked/{second.pk}/retry")


def test_unknown_consumer_is_a_404_that_says_so(browser_client):
    response = browser_client.get("/consumers/nobody/")

    assert response.status_code == 404
    assertContains(response, "No consumer is named “nobody”.", status_code=404)


# Operator actions


def test_pause_then_resume_change_the_state_and_are_audited(browser_client, directory):
    response = browser_client.post("/consumers/users_directory/pause", follow=True)

    assertRedirects(response, "/consumers/users_directory/")
    assertContains(response, "Paused users_directory")
    assertContains(response, '<button type="submit" class="button-primary">Resume</button>', html=True)
    assert Consumer.objects.get(name="users_directory").state == "paused"

    response = browser_client.post("/consumers/users_directory/resume", follow=True)

    assertContains(response, "Resumed users_directory")
    assert Consumer.objects.get(name="users_directory").state == "running"
    assert console_events("users_directory") == ["ConsumerPaused", "ConsumerResumed"]
    assert Event.objects.filter(stream__category="console").first().actor == "olivia"


def test_pausing_a_paused_consumer_shows_why_instead_of_failing(browser_client, directory):
    browser_client.post("/consumers/users_directory/pause")

    response = browser_client.post("/consumers/users_directory/pause", follow=True)

    assert response.status_code == 200
    assertContains(response, "Not done: users_directory is paused already.")
    assertContains(response, 'role="alert"')
    assert console_events("users_directory") == ["ConsumerPaused"]


def test_htmx_pause_answers_with_the_panel_and_its_message(browser_client, directory):
    response = browser_client.post("/consumers/users_directory/pause?range=24h", **HTMX)

    assert response.status_code == 200
    assertContains(response, 'id="consumer-panel"')
    assertContains(response, "Paused users_directory")
    assertContains(response, ">paused</span>")
    assertContains(response, '<a id="range-24h" href="?range=24h" aria-current="true"')
    assertNotContains(response, "<html")


def test_retry_of_a_parked_event_after_a_fix_applies_it_and_is_audited(browser_client, picky):
    (parked,) = park_poison()
    Picky.failing = False

    response = browser_client.post(f"/consumers/test_picky/parked/{parked.pk}/retry", follow=True)

    assertContains(response, "Retried the parked event")
    parked.refresh_from_db()
    assert (parked.state, parked.resolved_by) == ("retried", "olivia")
    assert console_events("test_picky") == ["ParkedEventRetried"]


def test_a_retry_that_fails_again_shows_the_error_and_keeps_it_parked(browser_client, picky):
    (parked,) = park_poison()

    response = browser_client.post(f"/consumers/test_picky/parked/{parked.pk}/retry", follow=True)

    assert response.status_code == 200
    assertContains(response, "Not done: the retry failed again:")
    assertContains(response, "cannot apply a poisoned order")
    assert ParkedEvent.objects.get().state == "parked"


def test_skip_of_a_parked_event_marks_it_skipped_and_is_audited(browser_client, picky):
    (parked,) = park_poison()

    response = browser_client.post(f"/consumers/test_picky/parked/{parked.pk}/skip", **HTMX)

    assertContains(response, "Skipped the parked event")
    assertContains(response, f'data-parked="{parked.pk}" data-state="skipped"')
    assert ParkedEvent.objects.get().state == "skipped"
    assert console_events("test_picky") == ["ParkedEventSkipped"]


def test_a_parked_event_of_another_consumer_is_a_404(browser_client, picky, directory):
    (parked,) = park_poison()

    response = browser_client.post(f"/consumers/users_directory/parked/{parked.pk}/skip")

    assert response.status_code == 404
    assert ParkedEvent.objects.get().state == "parked"


def test_an_action_on_an_unknown_consumer_is_a_404(browser_client):
    assert browser_client.post("/consumers/nobody/pause").status_code == 404


@pytest.mark.parametrize(
    "path", ["pause", "resume", "parked/1/retry", "parked/1/skip"], ids=["pause", "resume", "retry", "skip"]
)
def test_actions_refuse_get(browser_client, directory, path):
    assert browser_client.get(f"/consumers/users_directory/{path}").status_code == 405
    assert Consumer.objects.get(name="users_directory").state == "running"


@pytest.mark.parametrize("path", ["/dashboard/", "/consumers/", "/consumers/users_directory/"])
def test_anonymous_pages_send_to_login(client, path):
    assertRedirects(client.get(path), f"/login/?next={path}", fetch_redirect_response=False)


def test_anonymous_action_sends_to_login_and_changes_nothing(client, directory):
    response = client.post("/consumers/users_directory/pause")

    assertRedirects(response, "/login/?next=/consumers/users_directory/pause", fetch_redirect_response=False)
    assert Consumer.objects.get(name="users_directory").state == "running"


def test_actions_need_the_csrf_token(operator, directory):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    assert client.post("/consumers/users_directory/pause").status_code == 403
    assert Consumer.objects.get(name="users_directory").state == "running"


# A stream's consumers


def test_stream_page_shows_each_following_consumers_applied_sequence_and_lag(browser_client, directory):
    users(1, start=7)
    run_projection("users_directory")
    append_events(
        stream="user-7", events=[{"type": "UserNameSet", "data": {"user_id": "u7", "name": "M"}}] * 1
    )
    append_events(stream="user-7", events=[{"type": "UserNameSet", "data": {"user_id": "u7", "name": "K"}}])
    run_projection("access")  # follows users too, has nothing to apply of this stream

    response = browser_client.get("/streams/user-7/")

    text = re.sub(r"\s+", " ", response.content.decode())
    rows = re.findall(
        r'<tr class="stream-consumer" data-consumer="(\w+)">.*?'
        r'<td class="num">(\d+) <span class="muted">of 3</span></td><td class="num">(\d+)</td>',
        text,
    )
    assert rows == [("access", "3", "0"), ("users_directory", "1", "2")]


# Figures


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0 s"), (0.3, "under 1 s"), (42, "42 s"), (192, "3 min 12 s"), (3600, "1 h"), (90_061, "1 d 1 h")],
)
def test_lag_age_reads_as_the_two_largest_units(seconds, shown):
    assert duration(seconds) == shown


def test_rate_without_samples_is_a_dash_not_zero():
    assert (per_second(None), per_second(0), per_second(0.25), per_second(12.34)) == (
        "—",
        "0.0/s",
        "0.25/s",
        "12.3/s",
    )


@pytest.mark.django_db(transaction=True)
def test_dashboard_names_an_append_left_open_and_what_it_holds_back(browser_client, monkeypatch):
    monkeypatch.setattr(dashboard, "OPEN_APPEND_NOTICE_SECONDS", 0.2)
    with append_held_open("user-1", "UserCreated"):
        append_events(stream="user-2", events=[{"type": "UserCreated", "data": {}}] * 2)
        time.sleep(0.3)
        held = browser_client.get(reverse("dashboard"))
    after = browser_client.get(reverse("dashboard"))

    assertContains(held, 'id="open-append-notice"')
    assertContains(held, "every consumer waits below its position, and 2 positions handed out after it")
    assertNotContains(after, 'id="open-append-notice"')
