"""The sink pages through Django's test client: a new sink from the form, its settings edited, and the
service's refusals shown next to the fields they name with nothing written."""

from __future__ import annotations

import json

import pytest
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from streams import selectors, sink_config
from streams.models import Consumer, Event, Sink
from streams.services import append_events

pytestmark = pytest.mark.django_db

SECRET = "s3cret-signing-key-0123456789"
URL = "https://hooks.example.com/replaydesk"
PASSWORD_URL = "https://hook:hunter2hunter2@hooks.example.com/replaydesk"


def form(**changes) -> dict[str, str]:
    """What an operator types into the new-sink form."""
    return {
        "name": "crm_hook",
        "url": URL,
        "secret": SECRET,
        "categories": "order, invoice",
        "types": "",
        "rate_per_second": "50",
        "start": "beginning",
        "batch_size": "100",
        "timeout_seconds": "5",
        "max_attempts": "8",
        "breaker_threshold": "5",
        "breaker_cooldown_seconds": "30",
        **changes,
    }


@pytest.fixture
def crm_hook() -> Sink:
    return sink_config.create_sink(
        name="crm_hook", url=URL, secret=SECRET, rate_per_second=50, categories=["order"], actor="olivia"
    )


@pytest.fixture
def password_hook(crm_hook) -> Sink:
    """A sink saved before URLs with a password in them were refused."""
    Sink.objects.filter(pk=crm_hook.pk).update(url=PASSWORD_URL)
    crm_hook.refresh_from_db()
    return crm_hook


def audit_events(name: str) -> list[Event]:
    return list(Event.objects.filter(stream__name=f"console-consumer.{name}").order_by("position"))


def field_errors(response, field: str) -> str:
    """The error list rendered under one field."""
    html = response.content.decode()
    start = html.find(f'id="id_{field}_error"')
    return html[start : html.find("</ul>", start)] if start != -1 else ""


def test_new_sink_form_shows_the_defaults_and_the_start_choice(browser_client):
    response = browser_client.get("/consumers/sinks/new")

    assertContains(response, "New sink")
    assertContains(response, 'name="batch_size" value="100"')
    assertContains(response, "The beginning of the log")
    assertContains(response, "<legend>Advanced</legend>", html=True)


def test_consumers_page_links_to_the_new_sink_form(browser_client):
    assertContains(browser_client.get("/consumers/"), 'href="/consumers/sinks/new"')


def test_creating_a_sink_writes_it_audits_it_and_never_shows_the_secret(browser_client):
    append_events(stream="order-1", events=[{"type": "OrderPlaced", "data": {}}])

    response = browser_client.post("/consumers/sinks/new", form(), follow=True)

    assertRedirects(response, "/consumers/crm_hook/")
    assertContains(response, "Created the sink crm_hook: it delivers from the beginning of the log.")
    sink = Sink.objects.select_related("consumer").get(consumer__name="crm_hook")
    assert (sink.url, sink.secret, sink.categories, sink.types) == (URL, SECRET, ["order", "invoice"], [])
    assert (sink.rate_per_second, sink.consumer.kind, sink.consumer.position) == (50, "sink", 0)
    assertContains(response, URL)
    assertContains(response, "categories order, invoice")
    assertContains(response, 'href="/consumers/crm_hook/sink"')
    assertNotContains(response, SECRET)
    [created] = audit_events("crm_hook")
    assert (created.type, created.actor, created.stream.category) == ("SinkCreated", "olivia", "console")
    assert SECRET not in json.dumps(created.data) and created.data["url"] == URL


def test_a_sink_started_now_begins_at_the_head(browser_client):
    append_events(stream="order-1", events=[{"type": "OrderPlaced", "data": {}}])
    head = selectors.head()

    response = browser_client.post("/consumers/sinks/new", form(start="now"), follow=True)

    assertContains(response, "it delivers from now")
    assert Consumer.objects.get(name="crm_hook").position == head > 0


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"url": "ftp://hooks.example.com"}, "url", "an http:// or https:// URL"),
        ({"url": PASSWORD_URL}, "url", "the URL holds a user name or password"),
        ({"rate_per_second": "0"}, "rate_per_second", "events per second: more than 0"),
        ({"rate_per_second": "fast"}, "rate_per_second", "Enter a number."),
        ({"name": "CRM Hook"}, "name", "a sink name is 1–40 lowercase letters"),
        ({"secret": "short"}, "secret", "the signing secret is 16–500 characters"),
        ({"types": "Order Placed"}, "types", "is not an event type"),
        ({"batch_size": "0"}, "batch_size", "a whole number from 1 to 1000"),
    ],
)
def test_bad_input_is_shown_next_to_its_field_and_writes_nothing(browser_client, changes, field, message):
    events = Event.objects.count()  # the audit of the login that opened the session
    response = browser_client.post("/consumers/sinks/new", form(**changes))

    assert response.status_code == 400
    assert message in field_errors(response, field)
    assertContains(response, "Nothing was saved", status_code=400)
    assertNotContains(response, SECRET, status_code=400)
    assert not Consumer.objects.exists()
    assert Event.objects.count() == events


def test_a_taken_name_is_refused_next_to_the_name(browser_client, crm_hook):
    response = browser_client.post("/consumers/sinks/new", form(url="https://other.example.com/"))

    assert response.status_code == 400
    assert "a consumer named &#x27;crm_hook&#x27; exists already" in field_errors(response, "name")
    assert Sink.objects.get().url == URL
    assert len(audit_events("crm_hook")) == 1


def test_edit_form_is_prefilled_without_the_secret(browser_client, crm_hook):
    response = browser_client.get("/consumers/crm_hook/sink")

    assertContains(response, "Sink settings: crm_hook")
    assertContains(response, 'name="categories" value="order"')
    assertContains(response, "Blank keeps the current secret.")
    assertContains(response, f'name="url" value="{URL}"')
    assertNotContains(response, 'name="name"')
    assertNotContains(response, SECRET)


def test_a_url_saved_with_a_password_is_shown_masked_and_said_to_fail(browser_client, password_hook):
    response = browser_client.get("/consumers/crm_hook/sink")

    assertContains(response, 'name="url" value="https://hook:***@hooks.example.com/replaydesk"')
    assertContains(response, "which sinks no longer send: deliveries fail")
    assertNotContains(response, "hunter2")
    assertContains(
        browser_client.get("/consumers/crm_hook/"), "https://hook:***@hooks.example.com/replaydesk"
    )


def test_editing_with_a_blank_secret_keeps_it_and_changes_the_url(browser_client, crm_hook):
    response = browser_client.post(
        "/consumers/crm_hook/sink",
        form(url="https://new.example.com/hook", secret="", categories="order", rate_per_second="20"),
        follow=True,
    )

    assertRedirects(response, "/consumers/crm_hook/")
    assertContains(response, "Saved the settings of crm_hook.")
    crm_hook.refresh_from_db()
    assert (crm_hook.url, crm_hook.secret, crm_hook.rate_per_second) == (
        "https://new.example.com/hook",
        SECRET,
        20,
    )
    updated = audit_events("crm_hook")[-1]
    assert (updated.type, updated.data["changed"]) == ("SinkUpdated", ["rate_per_second", "url"])


def test_editing_with_a_new_secret_replaces_it_without_auditing_it(browser_client, crm_hook):
    new_secret = "another-secret-9876543210"
    browser_client.post("/consumers/crm_hook/sink", form(categories="order", secret=new_secret))

    crm_hook.refresh_from_db()
    assert crm_hook.secret == new_secret
    updated = audit_events("crm_hook")[-1]
    assert updated.data["changed"] == ["secret"] and new_secret not in json.dumps(updated.data)


def test_saving_the_form_as_shown_keeps_the_masked_password_and_audits_nothing(browser_client, password_hook):
    masked = "https://hook:***@hooks.example.com/replaydesk"
    response = browser_client.post(
        "/consumers/crm_hook/sink", form(url=masked, categories="order", secret=""), follow=True
    )

    assertContains(response, "Nothing changed.")
    password_hook.refresh_from_db()
    assert password_hook.url == PASSWORD_URL
    assert len(audit_events("crm_hook")) == 1


def test_a_bad_edit_is_a_400_next_to_the_field_and_changes_nothing(browser_client, crm_hook):
    response = browser_client.post("/consumers/crm_hook/sink", form(url="not a url", rate_per_second="0"))

    assert response.status_code == 400
    assert "an http:// or https:// URL" in field_errors(response, "url")
    assert "more than 0" in field_errors(response, "rate_per_second")
    crm_hook.refresh_from_db()
    assert (crm_hook.url, crm_hook.rate_per_second) == (URL, 50)
    assert len(audit_events("crm_hook")) == 1


def test_a_projection_has_no_sink_settings(browser_client):
    Consumer.objects.create(name="users_directory", kind=Consumer.Kind.PROJECTION)

    response = browser_client.get("/consumers/users_directory/sink")

    assertContains(response, "No sink is named “users_directory”.", status_code=404)
    assertNotContains(browser_client.get("/consumers/users_directory/"), "Edit sink")


@pytest.mark.parametrize("path", ["/consumers/sinks/new", "/consumers/crm_hook/sink"])
def test_anonymous_sink_pages_send_to_login_and_write_nothing(client, crm_hook, path):
    assertRedirects(client.get(path), f"/login/?next={path}", fetch_redirect_response=False)
    response = client.post(path, form(name="other", url="https://evil.example.com/"))

    assertRedirects(response, f"/login/?next={path}", fetch_redirect_response=False)
    assert list(Sink.objects.values_list("url", flat=True)) == [URL]
