"""Personal data (REPLAYDESK_PII_PATHS) is masked for everyone by default, in pages, the API and exports;
those who may unmask do it one view at a time, by a POST that is audited with their IP and user agent."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

from streams.masking import MASK, mask_value
from streams.models import Event
from streams.services import append_events

pytestmark = pytest.mark.django_db

EMAIL, NAME, IP = "ann@example.com", "Ann Lee", "10.0.0.5"
BROWSER = {"HTTP_USER_AGENT": "Firefox/140 (support desk)", "REMOTE_ADDR": "192.0.2.44"}


@pytest.fixture
def ann() -> Event:
    """user-123 created with an email, a name and the IP it came from, then its email set again."""
    append_events(
        stream="user-123",
        events=[
            {
                "type": "UserCreated",
                "data": {"user_id": "123", "email": EMAIL, "name": NAME, "plan": "pro"},
                "metadata": {"actor": "alice.admin", "ip": IP},
            },
            {"type": "UserEmailSet", "data": {"user_id": "123", "email": "ann@new.example"}},
        ],
    )
    return Event.objects.get(stream__name="user-123", sequence=1)


def logged_in(user) -> Client:
    client = Client(**BROWSER)
    client.force_login(user)
    return client


def unmask_records() -> list[Event]:
    return list(Event.objects.filter(type="PiiUnmasked").order_by("position"))


def shows_nothing_personal(text: str) -> bool:
    return EMAIL not in text and NAME not in text and IP not in text and "ann@new.example" not in text


def test_a_masked_value_is_dots_and_a_stable_hint_that_does_not_reveal_it():
    assert mask_value(EMAIL) == mask_value(EMAIL)
    assert mask_value(EMAIL) != mask_value("ben@example.com")
    assert re.fullmatch(MASK + r"[0-9a-f]{6}", mask_value(EMAIL))


def test_the_hint_is_keyed_with_the_secret_key_in_force(settings):
    import hashlib
    import hmac

    def hint(key: str) -> str:
        return hmac.new(key.encode(), f'"{EMAIL}"'.encode(), hashlib.sha256).hexdigest()[:6]

    settings.SECRET_KEY = "one key " * 8
    first = mask_value(EMAIL)
    settings.SECRET_KEY = "another key " * 8

    assert first == MASK + hint("one key " * 8)
    assert mask_value(EMAIL) == MASK + hint("another key " * 8)
    assert (
        mask_value({"b": 1, "a": [2, "é"]})
        == MASK
        + hmac.new(settings.SECRET_KEY.encode(), '{"a":[2,"é"],"b":1}'.encode(), hashlib.sha256).hexdigest()[
            :6
        ]
    )


@pytest.mark.parametrize(
    "url",
    [
        "/streams/user-123/",
        "/streams/user-123/?sequence=2",
        "/events/",
        "/audit/?q=user-123",
        "/audit/export.csv?q=user-123",
        "/audit/export.json?q=user-123",
    ],
)
def test_support_sees_personal_data_masked_on_every_page(support_agent, ann, url):
    response = logged_in(support_agent).get(url)

    body = b"".join(response.streaming_content) if response.streaming else response.content
    text = body.decode()
    assert response.status_code == 200
    assert shows_nothing_personal(text)
    assert mask_value(EMAIL) in text
    assert "alice.admin" in text and "pro" in text


def test_support_sees_the_event_page_masked_with_no_way_to_unmask(support_agent, ann):
    response = logged_in(support_agent).get(f"/events/{ann.event_id}/")

    assert shows_nothing_personal(response.content.decode())
    assertContains(response, f"&quot;email&quot;: &quot;{mask_value(EMAIL)}&quot;")
    assertContains(response, f"&quot;ip&quot;: &quot;{mask_value(IP)}&quot;")
    assertContains(response, "Personal data masked")
    assertNotContains(response, "Unmask personal data")


def test_the_timeline_shows_that_a_masked_field_changed(support_agent, ann):
    html = logged_in(support_agent).get("/streams/user-123/").content.decode()

    row = re.search(r'data-sequence="2">(.*?)</tr>', html, re.S).group(1)
    assert mask_value(EMAIL) in row and mask_value("ann@new.example") in row and "→" in row


def test_a_later_page_of_the_timeline_folds_the_events_before_it_masked_unless_unmasked(
    support_agent, operator
):
    # A category that no projection folds: the default fold reads the data of the events before the page.
    append_events(
        stream="contact-5",
        events=[
            {"type": "ContactAdded", "data": {"email": EMAIL, "name": NAME}},
            {"type": "ContactMoved", "data": {"city": "Lyon"}},
            {"type": "ContactEmailSet", "data": {"email": "ann@new.example"}},
        ],
    )
    operator_client = logged_in(operator)
    operator_client.post("/audit/unmask", {"view": "stream", "target": "contact-5"})

    masked = logged_in(support_agent).get("/streams/contact-5/", {"limit": 1}).content.decode()
    unmasked = operator_client.get("/streams/contact-5/", {"limit": 1}).content.decode()

    masked_row = re.search(r'data-sequence="3">(.*?)</tr>', masked, re.S).group(1)
    unmasked_row = re.search(r'data-sequence="3">(.*?)</tr>', unmasked, re.S).group(1)
    assert 'data-sequence="2"' not in masked  # the page holds the last event only
    assert mask_value(EMAIL) in masked_row and shows_nothing_personal(masked)
    assert EMAIL in unmasked_row and "ann@new.example" in unmasked_row


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/events",
        "/api/v1/streams/user-123/events",
        "/api/v1/audit/search?q=user-123",
        "/api/v1/streams/user-123/state?sequence=1",
    ],
)
def test_the_api_masks_personal_data_for_support_and_operators_alike(support_agent, operator, ann, url):
    for user in (support_agent, operator):
        response = logged_in(user).get(url)

        assert response.status_code == 200
        text = json.dumps(response.json(), ensure_ascii=False)
        assert shows_nothing_personal(text)
        assert mask_value(EMAIL) in text


def test_the_api_event_is_masked_by_default(operator, ann):
    body = logged_in(operator).get(f"/api/v1/events/{ann.event_id}").json()

    assert body["data"] == {
        "user_id": "123",
        "email": mask_value(EMAIL),
        "name": mask_value(NAME),
        "plan": "pro",
    }
    assert body["metadata"]["ip"] == mask_value(IP) and body["metadata"]["actor"] == "alice.admin"


def test_support_cannot_unmask_by_page_or_api_and_nothing_is_recorded(support_agent, ann):
    client = logged_in(support_agent)

    page = client.post("/audit/unmask", {"view": "event", "target": str(ann.event_id)})
    api = client.post(f"/api/v1/events/{ann.event_id}/unmask")

    assert page.status_code == 403 and api.status_code == 403
    assert unmask_records() == []
    assert shows_nothing_personal(client.get(f"/events/{ann.event_id}/").content.decode())


def test_an_operator_sees_masked_data_until_unmasking_that_event_which_is_audited(operator, ann):
    client = logged_in(operator)
    page = f"/events/{ann.event_id}/"
    assertContains(client.get(page), "Unmask personal data")
    assert shows_nothing_personal(client.get(page).content.decode())

    response = client.post("/audit/unmask", {"view": "event", "target": str(ann.event_id), "next": page})

    assert response.status_code == 302 and response["Location"] == page
    shown = client.get(page)
    assertContains(shown, EMAIL)
    assertContains(shown, IP)
    assertContains(shown, "Personal data unmasked")
    [record] = unmask_records()
    assert record.stream.name == "console-pii.olivia"
    assert record.actor == "olivia"
    assert record.data["view"] == "event" and record.data["target"] == str(ann.event_id)
    assert record.data["stream"] == "user-123" and "data.email" in record.data["paths"]
    assert (
        record.metadata["ip"] == "192.0.2.44"
        and record.metadata["user_agent"] == "Firefox/140 (support desk)"
    )


def test_unmasking_is_for_that_view_only(operator, ann):
    client = logged_in(operator)
    second = Event.objects.get(stream__name="user-123", sequence=2)

    client.post("/audit/unmask", {"view": "event", "target": str(ann.event_id)})

    assert "ann@new.example" not in client.get(f"/events/{second.event_id}/").content.decode()
    assert shows_nothing_personal(client.get("/streams/user-123/").content.decode())
    assert shows_nothing_personal(client.get("/api/v1/events").content.decode())


def test_an_operator_unmasks_a_stream_timeline_and_masks_it_again(operator, ann):
    client = logged_in(operator)

    client.post("/audit/unmask", {"view": "stream", "target": "user-123"})
    unmasked = client.get("/streams/user-123/").content.decode()
    client.post("/audit/mask", {"view": "stream", "target": "user-123"})
    masked_again = client.get("/streams/user-123/").content.decode()

    assert EMAIL in unmasked and "ann@new.example" in unmasked
    assert shows_nothing_personal(masked_again)
    assert [r.data["view"] for r in unmask_records()] == ["stream"]


def test_an_unmasked_view_masks_itself_again_after_its_time(operator, ann, settings):
    settings.REPLAYDESK_UNMASK_SECONDS = 0
    client = logged_in(operator)

    client.post("/audit/unmask", {"view": "event", "target": str(ann.event_id)})

    assert shows_nothing_personal(client.get(f"/events/{ann.event_id}/").content.decode())


def test_a_get_never_unmasks_nor_records_anything(operator, ann):
    client = logged_in(operator)

    for url in (f"/events/{ann.event_id}/?unmask=1", "/audit/unmask", "/audit/?q=user-123&unmask=1"):
        response = client.get(url)
        assert response.status_code in (400, 405) or shows_nothing_personal(response.content.decode())

    assert unmask_records() == []


def test_an_unmask_post_without_the_csrf_token_is_refused(operator, ann):
    client = Client(enforce_csrf_checks=True, **BROWSER)
    client.force_login(operator)

    response = client.post("/audit/unmask", {"view": "event", "target": str(ann.event_id)})

    assert response.status_code == 403
    assert unmask_records() == []


@pytest.mark.parametrize(
    "form",
    [{"view": "event", "target": "not-a-uuid"}, {"view": "stream", "target": "user-404"}, {"view": "log"}],
)
def test_unmasking_nothing_is_a_400_and_records_nothing(operator, form):
    response = logged_in(operator).post("/audit/unmask", form)

    assert response.status_code == 400
    assert unmask_records() == []


def test_an_unmasked_search_exports_unmasked_and_each_export_is_audited(operator, ann):
    client = logged_in(operator)
    masked = json.loads(b"".join(client.get("/audit/export.json", {"q": "user-123"}).streaming_content))
    assert masked["masked"] is True and shows_nothing_personal(json.dumps(masked))

    client.post("/audit/unmask", {"view": "search", "target": "q=user-123"})
    page = client.get("/audit/", {"q": "user-123"})
    export = json.loads(b"".join(client.get("/audit/export.json", {"q": "user-123"}).streaming_content))

    assertContains(page, EMAIL)
    assert export["masked"] is False
    assert export["results"][-1]["data"]["email"] == EMAIL
    assert [(r.data["view"], r.data["target"]) for r in unmask_records()] == [
        ("search", "q=user-123"),
        ("search-export.json", "q=user-123"),
    ]


def test_the_api_unmasks_one_event_by_post_audited_with_ip_and_user_agent(operator, ann):
    response = logged_in(operator).post(reverse("api:api-event-unmask", args=[str(ann.event_id)]))

    assert response.status_code == 200
    assert response.json()["data"]["email"] == EMAIL and response.json()["metadata"]["ip"] == IP
    [record] = unmask_records()
    assert record.data["view"] == "api-event" and record.data["target"] == str(ann.event_id)
    assert record.metadata["ip"] == "192.0.2.44" and record.metadata["user_agent"].startswith("Firefox/140")


# -- masked fields are no oracle -----------------------------------------------------------------------


def token_client(user):
    from rest_framework.test import APIClient

    from tests.conftest import bearer_token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(user)}")
    return client


@pytest.mark.parametrize("field", ["data.email", "data.name", "data.email.domain"])
def test_support_may_not_filter_the_log_on_a_masked_field(ann, support_agent, operator, field):
    refused = token_client(support_agent).get("/api/v1/events", {field: EMAIL})

    assert refused.status_code == 400
    assert refused.json()["errors"][field] == [
        "is personal data, masked for your role: it cannot be searched or filtered on"
    ]
    allowed = token_client(operator).get("/api/v1/events", {field: EMAIL})
    assert allowed.status_code == 200


def test_support_may_filter_the_log_on_other_fields(ann, support_agent):
    found = token_client(support_agent).get("/api/v1/events", {"data.plan": "pro"})

    assert [event["stream"] for event in found.json()["results"]] == ["user-123"]


def test_the_log_page_refuses_a_masked_filter_to_support(ann, support_agent):
    response = logged_in(support_agent).get("/events/", {"data.email": EMAIL})

    assert response.status_code == 400
    assertContains(response, "is personal data, masked for your role", status_code=400)
    assertNotContains(response, 'href="/streams/user-123/"', status_code=400)


@pytest.mark.parametrize("query", [f"email={EMAIL}", f"data.name={NAME!r}".replace("'", '"')])
def test_support_may_not_search_a_masked_field(ann, support_agent, operator, query):
    refused = token_client(support_agent).get("/api/v1/audit/search", {"q": query})
    page = logged_in(support_agent).get(reverse("streams:audit"), {"q": query})

    assert refused.status_code == 400
    assert "masked for your role" in refused.json()["errors"]["q"][0]
    assert page.status_code == 400
    assert token_client(operator).get("/api/v1/audit/search", {"q": query}).status_code == 200


def test_a_bare_search_term_is_not_looked_for_in_masked_fields_for_support(support_agent, operator, settings):
    settings.REPLAYDESK_PII_PATHS = ["data.id"]
    append_events(stream="order-1", events=[{"type": "OrderPlaced", "data": {"id": "card-4242"}}])

    hidden = token_client(support_agent).get("/api/v1/audit/search", {"q": "card-4242"})
    shown = token_client(operator).get("/api/v1/audit/search", {"q": "card-4242"})

    assert hidden.status_code == 200 and hidden.json()["results"] == []
    assert [event["stream"] for event in shown.json()["results"]] == ["order-1"]


def test_a_correlation_id_kept_as_personal_data_is_not_a_filter_nor_a_look_up_for_support(
    support_agent, operator, settings
):
    settings.REPLAYDESK_PII_PATHS = ["metadata.correlation_id"]
    correlation = "5b0c7a1e-3f2d-4c8e-9a6b-1d2e3f4a5b6c"
    append_events(
        stream="order-1",
        events=[{"type": "OrderPlaced", "data": {"id": "1"}, "metadata": {"correlation_id": correlation}}],
    )

    refused = token_client(support_agent).get("/api/v1/events", {"correlation_id": correlation})
    looked_up = logged_in(support_agent).get(reverse("streams:lookup"), {"q": correlation})

    assert refused.status_code == 400
    assert refused.json()["errors"]["correlation_id"] == [
        "is personal data, masked for your role: it cannot be searched or filtered on"
    ]
    assert looked_up.status_code == 404  # as for a value nothing holds: whether one does is not said
    found = token_client(operator).get("/api/v1/events", {"correlation_id": correlation})
    assert [event["stream"] for event in found.json()["results"]] == ["order-1"]
    assert logged_in(operator).get(reverse("streams:lookup"), {"q": correlation}).status_code == 302
