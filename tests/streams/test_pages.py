"""The stream browser pages, through Django's test client: what a person sees, and what a bad query gets."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from streams.masking import mask_value
from streams.models import Event
from streams.services import append_events
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def append(stream: str, type_: str = "Noted", data: dict | None = None, **event) -> int:
    """Append one event; its position."""
    result = append_events(stream=stream, events=[{"type": type_, "data": data or {}, **event}])
    return result.last_position


def positions(response) -> list[int]:
    return [int(p) for p in re.findall(r'data-position="(\d+)"', response.content.decode())]


def sequences(response) -> list[int]:
    return [int(s) for s in re.findall(r'data-sequence="(\d+)"', response.content.decode())]


def stream_names(response) -> list[str]:
    return re.findall(
        r'<tr class="stream">\s*<td class="wrap"><a href="[^"]+">([^<]+)</a>', response.content.decode()
    )


# Login and layout


@pytest.mark.parametrize(
    "url",
    [
        "/streams/",
        "/streams/user-1/",
        "/events/",
        "/events/5f20ff9b-d771-4930-8f9e-df02f7ab0010/",
        "/events/?after=0",
    ],
)
def test_anonymous_user_is_sent_to_login_with_the_page_to_come_back_to(client, url):
    response = client.get(url)
    assertRedirects(response, f"{reverse('login')}?next={url.replace('?', '%3F').replace('=', '%3D')}")


def test_anonymous_tail_poll_sends_the_whole_window_to_login_instead_of_swapping_the_form_in(client):
    response = client.get(
        "/events/?after=5", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/events/"
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login/?next=/events/"
    assert response.content == b""


def test_login_with_the_right_password_lands_on_the_dashboard(client, operator):
    response = client.post("/login/", {"username": "olivia", "password": PASSWORD}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assertContains(response, "Dashboard")


def test_login_with_a_wrong_password_says_so_and_keeps_the_username(client, operator):
    response = client.post("/login/", {"username": "olivia", "password": "wrong"})

    assert response.status_code == 200
    assertContains(response, "Please enter a correct username and password")
    assertContains(response, 'value="olivia"')
    assert "_auth_user_id" not in client.session


def test_layout_has_skip_link_navigation_and_a_logout_form_that_posts(browser_client):
    html = browser_client.get("/streams/").content.decode()

    assert '<a class="skip-link" href="#main">' in html
    assert '<main id="main"' in html
    for link in ('href="/streams/"', 'href="/events/"', 'href="/api/docs/"'):
        assert link in html
    logout = re.search(r'<form class="account" method="post" action="/logout/">(.*?)</form>', html, re.S)
    assert logout and "csrfmiddlewaretoken" in logout.group(1) and "olivia" in logout.group(1)


def test_htmx_is_served_from_this_site_not_a_cdn(browser_client):
    html = browser_client.get("/streams/").content.decode()

    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == [
        "/static/django_htmx/htmx-2.min.js",
        "/static/js/polling.js",
        "/static/js/busy.js",
        "/static/js/nav.js",
        "/static/js/refusals.js",
    ]


def test_logout_posts_and_ends_the_session(browser_client):
    browser_client.post("/logout/")

    assert browser_client.get("/streams/").status_code == 302


# Streams list


def test_stream_list_finds_streams_by_name_prefix(browser_client):
    for name in ("user-1", "user-12", "user-2", "group-1"):
        append(name)

    response = browser_client.get("/streams/", {"prefix": "user-1"})

    assert stream_names(response) == ["user-1", "user-12"]


def test_stream_list_finds_streams_by_category(browser_client):
    for name in ("user-1", "user-2", "group-1", "usergroup-1"):
        append(name)

    response = browser_client.get("/streams/", {"category": "user"})

    assert stream_names(response) == ["user-1", "user-2"]


def test_stream_list_shows_version_and_time_of_last_event(browser_client):
    append("user-1")
    append("user-1")
    last = Event.objects.get(stream__name="user-1", sequence=2)
    Event.objects.filter(pk=last.pk).update(recorded_at=dt.datetime(2026, 1, 31, 12, 30, 5, tzinfo=dt.UTC))

    html = browser_client.get("/streams/").content.decode()

    row = re.search(r'<tr class="stream">(?:(?!</tr>).)*?>user-1</a>.*?</tr>', html, re.S).group(0)
    assert '<td class="num">2</td>' in row
    assert '<time datetime="2026-01-31T12:30:05+00:00"' in row and "2026-01-31 12:30:05</time>" in row


def test_stream_list_pages_by_name_after_the_last_one_shown(browser_client):
    for n in range(1, 6):
        append(f"user-{n}")

    first = browser_client.get("/streams/", {"prefix": "user", "limit": 2})
    assert stream_names(first) == ["user-1", "user-2"]
    assertContains(first, 'href="?prefix=user&amp;limit=2&amp;after=user-2"')

    second = browser_client.get("/streams/", {"prefix": "user", "limit": 2, "after": "user-2"})
    assert stream_names(second) == ["user-3", "user-4"]

    last = browser_client.get("/streams/", {"prefix": "user", "limit": 2, "after": "user-4"})
    assert stream_names(last) == ["user-5"]
    assertNotContains(last, "Next page")
    assertContains(last, "First page")


def test_stream_list_sorts_names_with_numbers_as_numbers_and_says_how_many(browser_client):
    for name in ("user-10", "user-2", "user-100", "user-1", "group-9", "user-11"):
        append(name)

    listed = browser_client.get("/streams/", {"category": "user"})
    found = browser_client.get("/streams/", {"prefix": "user-1"})
    paged = browser_client.get("/streams/", {"prefix": "user", "limit": 2, "after": "user-2"})

    assert stream_names(listed) == ["user-1", "user-2", "user-10", "user-11", "user-100"]
    assertContains(listed, "5 streams match; by name, numbers as numbers.")
    assert stream_names(found) == ["user-1", "user-10", "user-11", "user-100"]
    assertContains(found, "4 streams match")
    # The cursor is a name in the same order: after user-2 come user-10 and user-11.
    assert stream_names(paged) == ["user-10", "user-11"]
    assertContains(paged, "after=user-11")


def test_a_prefix_finds_every_name_that_starts_with_it_in_the_natural_order(browser_client):
    names = ("a-007-x", "a-7-y", "a-70", "a-0", "a-00", "a-1-b2", "a-1-b10", "a-", "a-b", "ab-1", "b-7")
    for name in names:
        append(name)

    def listed(prefix: str) -> list[str]:
        return stream_names(browser_client.get("/streams/", {"prefix": prefix}))

    everything = listed("")
    assert set(names) <= set(everything)
    # Prefixes ending in a run of digits or of letters that longer names continue, or in a separator.
    for prefix in ("a-", "a-7", "a-00", "a-0", "a-1-b", "a-1-b1", "a", "ab", "b-7", "a-1-"):
        assert listed(prefix) == [name for name in everything if name.startswith(prefix)], prefix


def test_stream_list_sorts_by_last_event_newest_first_and_pages_back(browser_client):
    for name in ("user-1", "user-2", "user-3", "user-1", "user-4", "user-2"):
        append(name)

    query = {"prefix": "user", "sort": "recent", "limit": 2}
    first = browser_client.get("/streams/", query)
    cursor = re.search(r'href="\?[^"]*before=(\d+)"', first.content.decode()).group(1)
    second = browser_client.get("/streams/", {**query, "before": cursor})

    assert stream_names(first) == ["user-2", "user-4"]
    assert stream_names(second) == ["user-1", "user-3"]
    assertNotContains(second, "Next page")
    assertContains(first, '<option value="recent" selected>Last event, newest first</option>', html=True)
    assertContains(first, "4 streams match; by last event, newest first.")


def test_stream_list_offers_only_the_sorts_an_index_serves(browser_client):
    response = browser_client.get("/streams/", {"sort": "version"})

    assertContains(response, "<code>sort</code> must be one of natural, recent", status_code=400)


def test_the_natural_order_is_an_index_range(browser_client):
    from django.db import connection

    from streams import selectors

    # Enough streams of another category, counted by ANALYZE, that walking the whole natural
    # order and filtering costs more than the category's own range: on a table of one row the
    # planner may pick either index.
    for n in range(200):
        append(f"order-{n}")
    append("user-1")
    page = selectors._filtered_streams().alias(n=selectors.NaturalKey("name")).order_by("n")[:51]
    category = selectors._filtered_streams(category="user").alias(n=selectors.NaturalKey("name"))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE streams_stream")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")

    assert "streams_stream_natural" in page.explain()
    assert "streams_stream_category_natural" in category.order_by("n")[:51].explain()


def test_the_stream_page_says_since_when_the_stream_is_here_not_created(browser_client):
    from streams.services import ImportBatch, import_events

    old = dt.datetime(2020, 5, 1, 8, 0, tzinfo=dt.UTC)
    import_events(
        batches=[ImportBatch(stream="user-7", events=[{"type": "Noted", "data": {}, "recorded_at": old}])]
    )

    html = browser_client.get("/streams/user-7/").content.decode()

    since = re.search(r'<dt id="stream-since" title="([^"]+)">([^<]+)</dt>', html)
    assert since.group(2) == "In Replaydesk since (UTC)"
    assert "imported" in since.group(1) and "first event can be earlier" in since.group(1)
    assert "<dt>Created (UTC)</dt>" not in html
    assert html.index("2020-05-01 08:00:00") < html.index("In Replaydesk since")


def test_stream_search_from_htmx_gets_only_the_results(browser_client):
    append("user-1")

    response = browser_client.get("/streams/", {"prefix": "user"}, **HTMX)

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="stream-results"')
    assert "<html" not in html and "user-1" in html
    assert "HX-Request" in response["Vary"]


def test_stream_list_with_a_bad_limit_shows_the_problem_with_400(browser_client):
    response = browser_client.get("/streams/", {"limit": "lots"})

    assert response.status_code == 400
    assertContains(response, "<code>limit</code> must be a whole number", status_code=400)
    assertContains(response, 'id="prefix"', status_code=400)


def test_stream_list_with_nothing_found_says_so(browser_client):
    response = browser_client.get("/streams/", {"prefix": "nobody"})

    assertContains(response, "No streams match")


# Stream page


def test_stream_page_shows_events_newest_first_with_everything_a_row_needs(browser_client):
    first = append("user-1", "UserRegistered", {"email": "a@example.com"}, metadata={"actor": "signup"})
    second = append("user-1", "EmailChanged", {"email": "b@example.com"}, metadata={"actor": "olivia"})

    response = browser_client.get("/streams/user-1/")

    html = response.content.decode()
    assert sequences(response) == [2, 1]
    assert positions(response) == [second, first]
    event = Event.objects.get(position=second)
    assert f'href="/events/{event.event_id}/">EmailChanged</a>' in html
    # The actor the event claims, and who the store recorded appending it (the tests, in-process).
    appender = '<span class="appender">appended by <code>system:tests</code></span>'
    assert f'<td class="wrap">olivia {appender}</td>' in html
    # The data is there, personal data masked until someone unmasks it (audited).
    assert "<details>" in html and f"&quot;email&quot;: &quot;{mask_value('b@example.com')}&quot;" in html
    assert "b@example.com" not in html
    assert "<h1" in html and "user-1</h1>" in html


def test_stream_page_pages_older_and_back_newer_by_sequence(browser_client):
    for _ in range(5):
        append("user-1")

    newest = browser_client.get("/streams/user-1/", {"limit": 2})
    assert sequences(newest) == [5, 4]
    assertContains(newest, 'href="?limit=2&amp;before=4"', count=2)
    assertNotContains(newest, "Newer")

    older = browser_client.get("/streams/user-1/", {"limit": 2, "before": 4})
    assert sequences(older) == [3, 2]
    assertContains(older, 'href="?limit=2&amp;after=3"', count=2)

    oldest = browser_client.get("/streams/user-1/", {"limit": 2, "before": 2})
    assert sequences(oldest) == [1]
    assertNotContains(oldest, "Older")

    back = browser_client.get("/streams/user-1/", {"limit": 2, "after": 3})
    assert sequences(back) == [5, 4]
    assertNotContains(back, "‹ Newer")


def test_stream_page_oldest_link_shows_the_first_events(browser_client):
    for _ in range(5):
        append("user-1")

    response = browser_client.get("/streams/user-1/", {"limit": 2, "after": 0})

    assert sequences(response) == [2, 1]
    assertContains(response, 'href="?limit=2&amp;after=2"', count=2)


def test_stream_page_paging_from_htmx_gets_only_the_events_section(browser_client):
    for _ in range(3):
        append("user-1")

    response = browser_client.get("/streams/user-1/", {"limit": 2, "before": 2}, **HTMX)

    html = response.content.decode()
    assert html.lstrip().startswith('<section id="stream-events"')
    assert sequences(response) == [1]


def test_stream_page_with_both_cursors_shows_the_problem_with_400(browser_client):
    append("user-1")

    response = browser_client.get("/streams/user-1/", {"before": 3, "after": 1})

    assertContains(response, "give before or after, not both", status_code=400)


def test_unknown_stream_is_a_404_page_that_names_it(browser_client):
    response = browser_client.get("/streams/user-404/")

    assertContains(response, "No stream is named “user-404”", status_code=404)


# Event page


def test_event_page_shows_data_metadata_and_links_to_correlation_and_causation_events(browser_client):
    cause = append("order-1", "OrderPlaced", {"total": 12})
    cause_event = Event.objects.get(position=cause)
    effect = append(
        "invoice-1",
        "InvoiceIssued",
        {"invoice": "INV-1", "note": "<b>not markup</b>"},
        metadata={"correlation_id": str(cause_event.event_id), "causation_id": str(cause_event.event_id)},
    )
    event = Event.objects.get(position=effect)

    response = browser_client.get(f"/events/{event.event_id}/")

    html = response.content.decode()
    assert html.count(f'<a href="/events/{cause_event.event_id}/">OrderPlaced</a>') == 2
    assert "&quot;invoice&quot;: &quot;INV-1&quot;" in html
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html
    assert f"&quot;causation_id&quot;: &quot;{cause_event.event_id}&quot;" in html
    assert str(event.event_id) in html and f'href="/streams/invoice-1/?before={event.sequence + 1}"' in html


def test_event_page_shows_correlation_ids_that_are_not_events_without_a_link(browser_client):
    missing = uuid.uuid4()
    position = append("order-1", "OrderPlaced", {}, metadata={"correlation_id": str(missing)})
    # Appends insist on UUIDs; rows written straight to the table (an import) may hold anything.
    Event.objects.filter(position=position).update(
        metadata={"correlation_id": str(missing), "causation_id": "cli"}
    )
    event = Event.objects.get(position=position)

    response = browser_client.get(f"/events/{event.event_id}/")

    html = response.content.decode()
    assert f"<code>{missing}</code>" in html and f'href="/events/{missing}/"' not in html
    assert "<code>cli</code>" in html
    assert html.count("an id, not an event of this store") == 2
    assert f'href="/events/?correlation_id={missing}">every event of this correlation</a>' in html


def test_the_log_lists_every_event_of_one_correlation(browser_client):
    request_id = uuid.uuid4()
    append("user-1", "UserCreated", {}, metadata={"correlation_id": str(request_id)})
    append("user-2", "UserCreated", {})
    append("group-1", "MemberAdded", {}, metadata={"correlation_id": str(request_id)})

    html = browser_client.get(f"/events/?correlation_id={request_id}").content.decode()

    assert "group-1" in html and "user-1" in html and 'href="/streams/user-2/"' not in html
    assert f'value="{request_id}"' in html
    assert browser_client.get("/events/?correlation_id=nope").status_code == 400


def test_event_page_says_when_an_event_starts_its_own_correlation(browser_client):
    event_id = uuid.uuid4()
    append("order-1", "OrderPlaced", {}, id=str(event_id), metadata={"correlation_id": str(event_id)})

    response = browser_client.get(f"/events/{event_id}/")

    assertContains(response, "this event")


def test_unknown_event_is_a_404_page(browser_client):
    missing = uuid.uuid4()

    response = browser_client.get(f"/events/{missing}/")

    assertContains(response, f"No event has the id {missing}", status_code=404)


# The global log


def test_log_shows_newest_first_and_pages_older_with_before(browser_client):
    appended = [append(f"user-{n}") for n in range(5)]

    newest = browser_client.get("/events/", {"limit": 2})
    assert positions(newest) == [appended[4], appended[3]]
    assertContains(newest, f'href="?limit=2&amp;before={appended[3]}"', count=2)

    older = browser_client.get("/events/", {"limit": 2, "before": appended[3]})
    assert positions(older) == [appended[2], appended[1]]
    assertContains(older, f'href="?limit=2&amp;after={appended[2]}"', count=2)

    newer = browser_client.get("/events/", {"limit": 2, "after": appended[2]})
    assert positions(newer) == [appended[4], appended[3]]


def test_log_shows_the_live_tail_only_on_the_newest_page(browser_client):
    appended = [append("user-1") for _ in range(3)]

    newest = browser_client.get("/events/", {"limit": 2})
    older = browser_client.get("/events/", {"limit": 2, "before": appended[1]})

    assertContains(newest, 'id="log-tail"')
    assertContains(newest, 'id="tail-toggle"')
    assertNotContains(older, 'id="log-tail"')


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"type": "EmailChanged"}, ["b"]),
        ({"type": "EmailChanged,UserRegistered"}, ["c", "b", "a"]),
        ({"actor": "olivia"}, ["c"]),
        ({"category": "group"}, ["c"]),
        ({"stream": "user-2"}, ["b"]),
        ({"data.email": "a@example.com"}, ["a"]),
        ({"recorded_after": "2026-02-01T00:00:00Z"}, ["c", "b"]),
        ({"recorded_before": "2026-02-01"}, ["a"]),
        ({"type": "UserRegistered", "actor": "signup"}, ["a"]),
    ],
)
def test_log_filters_events(browser_client, query, expected):
    tags = {
        "a": append(
            "user-1", "UserRegistered", {"email": "a@example.com", "tag": "a"}, metadata={"actor": "signup"}
        ),
        "b": append(
            "user-2", "EmailChanged", {"email": "b@example.com", "tag": "b"}, metadata={"actor": "signup"}
        ),
        "c": append("group-1", "UserRegistered", {"tag": "c"}, metadata={"actor": "olivia"}),
    }
    Event.objects.filter(position=tags["a"]).update(recorded_at=dt.datetime(2026, 1, 15, tzinfo=dt.UTC))
    Event.objects.filter(position__in=[tags["b"], tags["c"]]).update(
        recorded_at=dt.datetime(2026, 2, 15, tzinfo=dt.UTC)
    )

    response = browser_client.get("/events/", query)

    assert response.status_code == 200
    # The log also holds the console's own audit of olivia's login (category console), now.
    login = set(Event.objects.filter(stream__category="console").values_list("position", flat=True))
    assert [p for p in positions(response) if p not in login] == [tags[tag] for tag in expected]


def test_log_filter_form_shows_the_filters_in_use(browser_client):
    response = browser_client.get("/events/", {"type": "EmailChanged", "data.resource": "issueABC"})

    assertContains(response, 'name="type" value="EmailChanged"')
    assertContains(response, 'name="data" value="resource=issueABC"')
    assertContains(response, "match these filters")


def test_log_form_sends_data_conditions_to_the_same_data_field_query_the_api_uses(browser_client):
    response = browser_client.get(
        "/events/", {"type": "", "actor": "olivia", "stream": "", "data": ["resource=issueABC", ""]}
    )

    assertRedirects(response, "/events/?actor=olivia&data.resource=issueABC", fetch_redirect_response=False)


def test_log_offers_to_clear_filters_only_while_filtering(browser_client):
    appended = [append("user-1") for _ in range(3)]

    paging = browser_client.get("/events/", {"limit": 1, "before": appended[2]})
    filtering = browser_client.get("/events/", {"limit": 1, "data.resource": "x"})

    assertNotContains(paging, "Clear filters")
    assertContains(filtering, "Clear filters")


def test_log_form_with_a_data_condition_without_equals_shows_the_problem_with_400(browser_client):
    response = browser_client.get("/events/", {"data": "issueABC"})

    assertContains(response, "write &lt;field&gt;=&lt;value&gt;", status_code=400)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"type": "1st"}, "is not an event type"),
        ({"recorded_after": "yesterday"}, "must be an ISO 8601 time"),
        (
            {"recorded_after": "2026-02-01", "recorded_before": "2026-01-01"},
            "must be later than recorded_after",
        ),
        ({"before": "-3"}, "must be at least 1"),
        ({"limit": "0"}, "must be from 1 to 1000"),
        ({"colour": "red"}, "unknown parameter"),
        ({"data.": "x"}, "write data.&lt;field&gt;=&lt;value&gt;"),
    ],
)
def test_log_with_a_bad_filter_shows_the_problem_with_400(browser_client, query, message):
    append("user-1")

    response = browser_client.get("/events/", query)

    assertContains(response, message, status_code=400)
    assertContains(response, 'role="alert"', status_code=400)
    assert positions(response) == []


# The live tail


def test_tail_returns_only_events_after_the_position_newest_first(browser_client):
    seen = append("user-1")
    new = [append("user-1"), append("user-2")]

    response = browser_client.get("/events/", {"after": seen}, **HTMX)

    assert response.status_code == 200
    assert positions(response) == [new[1], new[0]]
    assert "<html" not in response.content.decode()


def test_tail_moves_its_poll_past_the_newest_event_it_returned(browser_client):
    seen = append("user-1")
    newest = append("user-2")

    response = browser_client.get("/events/", {"after": seen, "type": "Noted"}, **HTMX)

    html = response.content.decode()
    poller = re.search(r'<div id="log-tail"[^>]*>', html, re.S).group(0)
    assert 'hx-swap-oob="true"' in poller
    assert f'hx-get="/events/?after={newest}&amp;type=Noted"' in poller


def test_tail_respects_the_filters(browser_client):
    seen = append("user-1")
    wanted = append("user-2", "EmailChanged", {"resource": "issueABC"})
    append("user-3", "EmailChanged", {"resource": "other"})
    append("group-1", "EmailChanged", {"resource": "issueABC"})

    response = browser_client.get(
        "/events/", {"after": seen, "category": "user", "data.resource": "issueABC"}, **HTMX
    )

    assert positions(response) == [wanted]


def test_tail_with_nothing_new_answers_204_so_nothing_is_swapped(browser_client):
    seen = append("user-1")
    append("group-1")

    response = browser_client.get("/events/", {"after": seen, "category": "user"}, **HTMX)

    assert response.status_code == 204


def test_log_page_starts_its_tail_at_the_head_even_when_the_filter_matches_nothing(browser_client):
    append("user-1")
    head = append("user-2")

    response = browser_client.get("/events/", {"type": "Missing"})

    assertContains(response, f'hx-get="/events/?type=Missing&amp;after={head}"')
    assertContains(response, "No events match these filters yet")


def test_log_page_tail_polls_every_two_seconds_into_the_top_of_the_table_while_switched_on(browser_client):
    head = append("user-1")

    html = browser_client.get("/events/").content.decode()

    poller = re.search(r'<div id="log-tail"[^>]*>', html, re.S).group(0)
    assert f'hx-get="/events/?after={head}"' in poller
    # The switch is read by static/js/polling.js: htmx's [expression] filters need eval (CSP refuses it).
    assert 'hx-trigger="every 2s"' in poller and 'data-poll-if="tail-toggle"' in poller
    assert 'hx-target="#log-rows"' in poller and 'hx-swap="afterbegin"' in poller
    assert '<tbody id="log-rows">' in html
