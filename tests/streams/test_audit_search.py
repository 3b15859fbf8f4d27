"""The audit search box (/audit/ and GET /api/v1/audit/search): streams and events by stream name or prefix,
entity id, actor, type and JSON containment, within a time range, keyset paged, and exported."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

from streams.models import Event
from streams.services import ImportBatch, append_events, import_events

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def event(type_: str, data: dict, actor: str, hours: float, **metadata) -> dict:
    return {"type": type_, "data": data, "metadata": {"actor": actor, **metadata}, "recorded_at": at(hours)}


def permissions_history() -> None:
    """Ann (user-123) and Ben (user-456) are granted write on issueABC by different admins; Ben loses it;
    user-1234 is another person whose id starts like Ann's; the admins group takes Ann in."""
    grant = {"resource": "issueABC", "permission": "write"}
    import_events(
        batches=[
            ImportBatch(
                stream="user-123",
                events=[
                    event(
                        "UserCreated",
                        {"user_id": "123", "name": "Ann Lee", "email": "ann@example.com"},
                        "alice.admin",
                        0,
                        ip="10.0.0.5",
                    ),
                    event("PermissionGranted", {"user_id": "123", **grant}, "alice.admin", 1),
                ],
            ),
            ImportBatch(
                stream="user-456",
                events=[
                    event(
                        "UserCreated",
                        {"user_id": "456", "name": "Ben Ode", "email": "ben@example.com"},
                        "bob",
                        0.5,
                    ),
                    event("PermissionGranted", {"user_id": "456", **grant}, "bob.admin", 2),
                    event("PermissionRevoked", {"user_id": "456", **grant}, "alice.admin", 5),
                ],
            ),
            ImportBatch(
                stream="user-1234",
                events=[
                    event(
                        "UserCreated", {"user_id": "1234", "name": "Cy", "email": "cy@example.com"}, "bob", 3
                    )
                ],
            ),
            ImportBatch(
                stream="group-admins",
                events=[event("MemberAdded", {"group_id": "admins", "user_id": "123"}, "carol.admin", 4)],
            ),
        ]
    )


def found(payload: dict) -> list[tuple[str, str]]:
    """(stream, type) of each event in an API answer, in its order."""
    return [(e["stream"], e["type"]) for e in payload["results"]]


@pytest.fixture
def support_api(client, support_agent):
    client.force_login(support_agent)
    return client


def search(client, q: str, **params) -> dict:
    response = client.get(reverse("api:api-audit-search"), {"q": q, **params})
    assert response.status_code == 200, response.content
    return response.json()


def every_page(client, q: str, *, limit: int) -> tuple[list, int]:
    """Each result's `data.n` over every page of the search, following its cursor; and how many pages."""
    seen, cursor, pages = [], None, 0
    while True:
        payload = search(client, q, limit=limit, **({"cursor": cursor} if cursor else {}))
        seen += [e["data"]["n"] for e in payload["results"]]
        pages += 1
        cursor = payload["next"]
        if cursor is None:
            return seen, pages


def test_stream_prefix_finds_those_streams_first_and_their_events_newest_first(support_api):
    permissions_history()

    payload = search(support_api, "user-")

    assert [s["name"] for s in payload["streams"]] == ["user-123", "user-1234", "user-456"]
    # Newest first is the log's order, by position (this history was imported stream by stream).
    assert found(payload) == [
        ("user-1234", "UserCreated"),
        ("user-456", "PermissionRevoked"),
        ("user-456", "PermissionGranted"),
        ("user-456", "UserCreated"),
        ("user-123", "PermissionGranted"),
        ("user-123", "UserCreated"),
    ]


def test_an_entity_id_finds_its_stream_in_every_category_and_events_naming_it_in_data(support_api):
    permissions_history()

    payload = search(support_api, "123")

    assert [s["name"] for s in payload["streams"]] == ["user-123"]
    assert found(payload) == [
        ("group-admins", "MemberAdded"),
        ("user-123", "PermissionGranted"),
        ("user-123", "UserCreated"),
    ]


def test_an_actor_is_found_by_prefix_or_by_its_bare_name(support_api):
    permissions_history()

    by_prefix = search(support_api, "actor:alice.admin")
    bare = search(support_api, "alice.admin")

    expected = [
        ("user-456", "PermissionRevoked"),
        ("user-123", "PermissionGranted"),
        ("user-123", "UserCreated"),
    ]
    assert found(by_prefix) == found(bare) == expected
    assert {e["actor"] for e in by_prefix["results"]} == {"alice.admin"}


def test_a_type_finds_every_event_of_it(support_api):
    permissions_history()

    payload = search(support_api, "type:PermissionGranted")

    assert found(payload) == [("user-456", "PermissionGranted"), ("user-123", "PermissionGranted")]
    assert payload["streams"] == []


def test_containment_on_data_within_a_time_range_says_who_granted_and_revoked_and_when(support_api):
    permissions_history()

    payload = search(
        support_api,
        "resource=issueABC",
        recorded_after=at(1.5).isoformat(),
        recorded_before=at(6).isoformat(),
    )

    rows = [(e["stream"], e["type"], e["actor"], e["recorded_at"]) for e in payload["results"]]
    assert rows == [
        ("user-456", "PermissionRevoked", "alice.admin", "2026-03-02T14:00:00Z"),
        ("user-456", "PermissionGranted", "bob.admin", "2026-03-02T11:00:00Z"),
    ]


def test_terms_combine_with_and(support_api):
    permissions_history()

    payload = search(support_api, "resource=issueABC type:PermissionGranted actor:alice.admin")

    assert found(payload) == [("user-123", "PermissionGranted")]
    assert payload["results"][0]["data"] == {"user_id": "123", "resource": "issueABC", "permission": "write"}


def test_the_search_page_lists_streams_then_events_with_who_when_what(support_api):
    permissions_history()

    response = support_api.get("/audit/", {"q": "resource=issueABC type:PermissionGranted"})

    html = response.content.decode()
    assert response.status_code == 200
    rows = re.findall(r'<tr class="event" data-position="\d+">(.*?)</tr>', html, re.S)
    assert len(rows) == 2
    assert (
        "2026-03-02 11:00:00" in rows[0] and "bob.admin" in rows[0] and 'href="/streams/user-456/"' in rows[0]
    )
    assert "2026-03-02 10:00:00" in rows[1] and "alice.admin" in rows[1] and "PermissionGranted" in rows[1]
    assertContains(response, "No stream is named by this search.")


def test_a_stream_name_means_that_stream_though_longer_names_start_with_it(support_api):
    permissions_history()

    payload = search(support_api, "user-123")

    # Only that stream: user-1234 is another person, whose name only starts like Ann's.
    assert [s["name"] for s in payload["streams"]] == ["user-123"]
    assert found(payload) == [
        ("group-admins", "MemberAdded"),
        ("user-123", "PermissionGranted"),
        ("user-123", "UserCreated"),
    ]


def test_a_stream_named_exactly_is_listed_alone_on_the_page(support_api):
    permissions_history()
    for n in range(1230, 1233):
        append_events(stream=f"user-{n}", events=[{"type": "UserCreated", "data": {"user_id": str(n)}}])

    exact = support_api.get("/audit/", {"q": "user-123"})
    prefix = support_api.get("/audit/", {"q": "user-12"})

    named = re.findall(r'<ul class="audit-streams">(.*?)</ul>', exact.content.decode(), re.S)[0]
    assert re.findall(r">(user-\d+)</a>", named) == ["user-123"]
    # With no stream of that very name, the names that start with it are listed.
    named = re.findall(r'<ul class="audit-streams">(.*?)</ul>', prefix.content.decode(), re.S)[0]
    listed = re.findall(r">(user-\d+)</a>", named)
    assert listed == ["user-123", "user-1230", "user-1231", "user-1232", "user-1234"]


def test_a_bare_value_finds_the_events_whose_data_holds_it_under_any_key(support_api):
    permissions_history()
    append_events(
        stream="ticket-7", events=[{"type": "TicketLinked", "data": {"links": [{"to": "issueABC"}], "n": 41}}]
    )

    payload = search(support_api, "issueABC")
    by_number = search(support_api, "41")

    assert found(payload) == [
        ("ticket-7", "TicketLinked"),
        ("user-456", "PermissionRevoked"),
        ("user-456", "PermissionGranted"),
        ("user-123", "PermissionGranted"),
    ]
    assert payload["streams"] == []
    assert found(by_number) == [("ticket-7", "TicketLinked")]


def test_a_bare_value_is_looked_up_in_an_index_not_by_reading_the_log(support_api):
    from django.db import connection

    from streams import audit_search

    permissions_history()
    # The expression the search filters on must be the index's to the letter, or the log is read whole.
    wanted = Event.objects.filter(audit_search.data_values("issueABC", masked=True)).values("position")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = wanted.explain()

    assert "Bitmap Index Scan on streams_event_data_values" in plan, plan


def test_a_masked_searcher_does_not_find_events_through_a_personal_value(support_api, client, operator):
    permissions_history()

    masked = search(support_api, "ann@example.com")
    masked_name = search(support_api, '"Ann Lee"')
    page = support_api.get("/audit/", {"q": "ann@example.com"})
    client.force_login(operator)
    may_unmask = search(client, "ann@example.com")

    # Which events match would tell Sam whose email that is: nothing matches for him.
    assert found(masked) == found(masked_name) == []
    assertContains(page, "No events match")
    assertNotContains(page, "Ann Lee")
    # Olivia may unmask, so she may search on it; what she sees is still masked until she unmasks.
    assert found(may_unmask) == [("user-123", "UserCreated")]
    assert may_unmask["results"][0]["data"]["email"].startswith("•••")


def test_paging_walks_every_match_newest_first_once_by_position(support_api):
    append_events(stream="ticket-9", events=[{"type": "Touched", "data": {"n": n}} for n in range(130)])
    append_events(stream="ticket-10", events=[{"type": "Touched", "data": {"n": 0}}])

    seen, pages = every_page(support_api, "stream:ticket-9", limit=50)

    assert seen == list(range(129, -1, -1))
    assert pages == 3


def test_matches_before_and_within_the_newest_positions_page_together_newest_first(support_api, monkeypatch):
    from streams import audit_search

    # The search walks the newest RECENT_SCAN positions first and asks the indexes for the rest: a page
    # may take matches from both, and paging crosses the boundary without losing or repeating one.
    monkeypatch.setattr(audit_search, "RECENT_SCAN", 12)
    for n in range(30):
        append_events(stream=f"ticket-{n}", events=[{"type": "Touched", "data": {"n": n, "odd": n % 2}}])
        append_events(stream=f"other-{n}", events=[{"type": "Touched", "data": {"n": n}}])

    seen, _ = every_page(support_api, "odd=1", limit=4)

    assert seen == list(range(29, 0, -2))


def test_one_actors_events_page_newest_first_from_the_end_of_the_actor_and_position_index(support_api):
    from django.db import connection

    from streams import audit_search
    from streams.selectors import LogFilter

    # Carol acted early and rarely; thousands of others' events came after hers.
    for n in range(40):
        append_events(
            stream=f"ticket-{n}",
            events=[{"type": "Touched", "data": {"n": n}, "metadata": {"actor": "carol"}}],
        )
    for batch in range(5):
        append_events(
            stream=f"bulk-{batch}",
            events=[
                {"type": "Touched", "data": {"n": i}, "metadata": {"actor": "dave"}} for i in range(1000)
            ],
        )

    seen, _ = every_page(support_api, "actor:carol", limit=15)
    assert seen == list(range(39, -1, -1))

    # Her page is read from the end of her entries in (actor, position), not picked by sorting all of them.
    with connection.cursor() as db:
        db.execute("ANALYZE streams_event")
    query = audit_search.AuditQuery(text="actor:carol", log_filter=LogFilter(actor="carol"))
    plan = audit_search.search_candidates(query, limit=16).explain()
    assert "Index Only Scan Backward using streams_event_actor_position" in plan, plan
    assert 'Sort Key: ((streams_event."position" + 0))' not in plan, plan


def test_the_page_pages_older_by_position_and_back_to_the_newest(support_api):
    append_events(stream="ticket-9", events=[{"type": "Touched", "data": {"n": n}} for n in range(5)])
    positions = list(
        Event.objects.filter(stream__name="ticket-9").order_by("-position").values_list("position", flat=True)
    )

    first = support_api.get("/audit/", {"q": "ticket-9", "limit": 2})
    assert [int(p) for p in re.findall(r'data-position="(\d+)"', first.content.decode())] == positions[:2]
    assertContains(first, f"before={positions[1]}")

    second = support_api.get("/audit/", {"q": "ticket-9", "limit": 2, "before": positions[1]})
    assert [int(p) for p in re.findall(r'data-position="(\d+)"', second.content.decode())] == positions[2:4]
    assertContains(second, "« Newest")
    assertNotContains(second, "audit-streams-title")


@pytest.mark.parametrize(
    ("params", "field", "message", "status"),
    [
        # The search's own language, and rules between parameters: 422 (the schema says only "a string").
        ({"q": "colour:red"}, "q", "colour: is not a search prefix", 422),
        ({"q": "type:1bad"}, "q", "is not an event type", 422),
        ({"q": 'name="Ann'}, "q", "a quote is not closed", 422),
        ({"q": "=x"}, "q", "write field=value", 422),
        ({"q": "actor:a actor:b"}, "q", "give one actor: term", 422),
        (
            {"q": "user-", "recorded_after": "2026-03-02", "recorded_before": "2026-03-01"},
            "recorded_before",
            "later",
            422,
        ),
        ({"q": ""}, "q", "say what to look for", 422),
        # Not of the form the schema states: 400.
        ({"q": "user-", "recorded_after": "yesterday"}, "recorded_after", "must be an ISO 8601 time", 400),
        ({"q": "user-", "page": "2"}, "page", "unknown parameter", 400),
    ],
)
def test_bad_input_gets_a_problem_naming_it_and_no_results(support_api, params, field, message, status):
    permissions_history()

    response = support_api.get(reverse("api:api-audit-search"), params)

    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    assert message in " ".join(response.json()["errors"][field])


def test_bad_input_on_the_page_says_what_to_fix_and_lists_nothing(support_api):
    permissions_history()

    response = support_api.get("/audit/", {"q": "colour:red user-123"})

    assert response.status_code == 400
    assertContains(response, "colour: is not a search prefix", status_code=400)
    assertNotContains(response, 'class="event"', status_code=400)


def test_anonymous_search_is_refused(client):
    assert client.get(reverse("api:api-audit-search"), {"q": "user-"}).status_code in (401, 403)
    assert client.get("/audit/", {"q": "user-"}).status_code == 302


# Exports


def test_csv_export_has_every_matching_event_newest_first_with_personal_data_masked(support_api):
    permissions_history()

    response = support_api.get("/audit/export.csv", {"q": "user-123"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["stream"], r["type"], r["actor"]) for r in rows] == [
        ("group-admins", "MemberAdded", "carol.admin"),
        ("user-123", "PermissionGranted", "alice.admin"),
        ("user-123", "UserCreated", "alice.admin"),
    ]
    created = json.loads(rows[2]["data"])
    assert (
        created["user_id"] == "123"
        and created["email"].startswith("•••")
        and created["name"].startswith("•••")
    )
    assert json.loads(rows[2]["metadata"])["ip"].startswith("•••")
    assert "ann@example.com" not in body and "Ann Lee" not in body and "10.0.0.5" not in body
    assert rows[2]["recorded_at"] == "2026-03-02T09:00:00+00:00"


def test_json_export_is_the_same_events_masked_and_says_so(support_api):
    permissions_history()

    response = support_api.get(
        "/audit/export.json", {"q": "resource=issueABC", "recorded_after": at(1.5).isoformat()}
    )

    payload = json.loads(b"".join(response.streaming_content))
    assert payload["masked"] is True and payload["truncated"] is False
    assert [(e["stream"], e["type"], e["actor"]) for e in payload["results"]] == [
        ("user-456", "PermissionRevoked", "alice.admin"),
        ("user-456", "PermissionGranted", "bob.admin"),
    ]


def test_an_export_stops_at_its_bound_and_says_it_was_truncated(support_api, monkeypatch):
    from streams import audit_search

    monkeypatch.setattr(audit_search, "EXPORT_MAX", 7)
    monkeypatch.setattr(audit_search, "EXPORT_CHUNK", 3)
    append_events(stream="ticket-9", events=[{"type": "Touched", "data": {"n": n}} for n in range(10)])

    payload = json.loads(b"".join(support_api.get("/audit/export.json", {"q": "ticket-9"}).streaming_content))
    rows = list(
        csv.reader(
            io.StringIO(
                b"".join(support_api.get("/audit/export.csv", {"q": "ticket-9"}).streaming_content).decode()
            )
        )
    )

    assert [e["data"]["n"] for e in payload["results"]] == [9, 8, 7, 6, 5, 4, 3]
    assert payload["truncated"] is True
    assert len(rows) == 1 + 7 + 1 and rows[-1][0].startswith("# truncated: the first 7 events")


def test_an_export_of_a_bad_query_is_a_400_that_says_why(support_api):
    response = support_api.get("/audit/export.csv", {"q": "colour:red"})

    assert response.status_code == 400
    assert "colour: is not a search prefix" in response.content.decode()


def test_csv_cells_that_look_like_formulas_are_kept_as_text(support_api):
    append_events(
        stream="ticket-1", events=[{"type": "Touched", "data": {}, "metadata": {"actor": "=HYPERLINK(1)"}}]
    )

    body = b"".join(support_api.get("/audit/export.csv", {"q": "ticket-1"}).streaming_content).decode()

    assert list(csv.DictReader(io.StringIO(body)))[0]["actor"] == "'=HYPERLINK(1)"


def rows_read() -> int:
    """The rows of streams_event this transaction has read so far."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
            " WHERE relname = 'streams_event'"
        )
        return cursor.fetchone()[0]


def skip_spans(spans: int, *, short_of: int = 0) -> int:
    """The log's next position is the first of a span `spans` after the present one (2**16 positions
    each), or `short_of` positions before it: events appended next are in another span of the bare
    values' spans index. Returns that span's start."""
    from django.db import connection

    from streams.audit_search import SPAN_BITS

    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(max(position), 0) FROM streams_event")
        last = cursor.fetchone()[0]
        start = ((last >> SPAN_BITS) + spans) << SPAN_BITS
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('streams_event', 'position'), %s)", [start - short_of]
        )
    return start


def spans_of(positions) -> set[int]:
    from streams.audit_search import SPAN_BITS

    return {position >> SPAN_BITS for position in positions}


def old_matches_in_two_spans_under_newer_events(monkeypatch, *, value: dict, count: int = 500) -> None:
    """`count` events that hold the value in one span and as many in the next (data.n 0 to 2*count-1),
    then, spans later, 1,000 newer events that do not; the search's walk of the newest positions
    (RECENT_SCAN) reaches none of them."""
    from streams import audit_search

    monkeypatch.setattr(audit_search, "RECENT_SCAN", 100)
    for half in range(2):
        skip_spans(1)
        append_events(
            stream=f"ticket-{half}",
            events=[{"type": "Touched", "data": {"n": half * count + n, **value}} for n in range(count)],
        )
    skip_spans(3)
    append_events(stream="ticket-9", events=[{"type": "Touched", "data": {"n": n}} for n in range(1000)])


def test_a_value_many_old_events_hold_pages_from_its_newest_span_not_from_all_of_them(
    support_api, monkeypatch
):
    from django.db import connection

    from streams import audit_search

    old_matches_in_two_spans_under_newer_events(monkeypatch, value={"resource": "issueABC"})
    holding = spans_of(Event.objects.filter(data__resource="issueABC").values_list("position", flat=True))
    assert len(holding) == 2
    assert min(
        spans_of(Event.objects.filter(stream__name="ticket-9").values_list("position", flat=True))
    ) > max(holding)

    seen, _ = every_page(support_api, "issueABC", limit=50)
    assert seen == list(range(999, -1, -1))

    # Its newest 50 are read from the newest span that holds it (500 rows), not picked from all 1,000.
    holders = Event.objects.filter(data__resource="issueABC").order_by("-position")
    expected = list(holders.values_list("position", flat=True)[:50])
    with connection.cursor() as db:
        db.execute("ANALYZE streams_event")
        # As on a log of millions: a table of 3,000 rows is read whole where its indexes would serve.
        db.execute("SET LOCAL enable_seqscan = off")
    before = rows_read()
    below = Event.objects.order_by("-position").values_list("position", flat=True)[0]
    newest = audit_search._newest_values(Event.objects.all(), "issueABC", masked=False, below=below, need=50)
    assert newest == expected
    assert rows_read() - before < 600


def test_one_term_pages_its_stream_and_the_events_that_hold_it_as_a_value_together(support_api, monkeypatch):
    from streams import audit_search

    monkeypatch.setattr(audit_search, "RECENT_SCAN", 10)
    # ticket-7's own events and others' that name it (linked to it, commented on), in three spans; a number
    # in a fourth.
    for n in range(0, 90, 3):
        if n % 30 == 0:
            skip_spans(1)
        append_events(stream="ticket-7", events=[{"type": "Touched", "data": {"n": n}}])
        append_events(stream="note-1", events=[{"type": "Linked", "data": {"n": n + 1, "to": "ticket-7"}}])
        append_events(stream="note-2", events=[{"type": "Commented", "data": {"n": n + 2, "on": "ticket-7"}}])
        append_events(stream="note-3", events=[{"type": "Linked", "data": {"m": n, "to": "ticket-8"}}])
    append_events(stream="count-1", events=[{"type": "Counted", "data": {"n": 90, "seen": 410}}])
    skip_spans(1)
    append_events(stream="filler", events=[{"type": "Touched", "data": {"m": n}} for n in range(20)])

    named, _ = every_page(support_api, "ticket-7", limit=7)
    linked, _ = every_page(support_api, "ticket-7 type:Linked", limit=7)
    by_number, _ = every_page(support_api, "410", limit=7)

    assert named == list(range(89, -1, -1))
    assert linked == [n for n in range(89, -1, -1) if n % 3 == 1]
    assert by_number == [90]


def test_the_newest_positions_walked_first_take_the_value_from_each_span_they_reach_into(
    support_api, monkeypatch
):
    from streams import audit_search

    monkeypatch.setattr(audit_search, "RECENT_SCAN", 50)
    # Ten events that hold it end a span; twenty newer ones that do not begin the next.
    boundary = skip_spans(2, short_of=16)
    append_events(
        stream="ticket-1", events=[{"type": "Touched", "data": {"n": n, "r": "edge"}} for n in range(10)]
    )
    append_events(stream="ticket-2", events=[{"type": "Touched", "data": {"n": n}} for n in range(20)])
    assert (
        len(spans_of(Event.objects.filter(position__gte=boundary - 16).values_list("position", flat=True)))
        == 2
    )

    seen, _ = every_page(support_api, "edge", limit=4)

    assert seen == list(range(9, -1, -1))


def test_a_masked_searcher_pages_past_the_newest_events_that_hold_the_value_only_as_personal_data(
    support_api, client, operator, monkeypatch
):
    from streams import audit_search

    monkeypatch.setattr(audit_search, "RECENT_SCAN", 100)
    # Old notes name the address in the open; newer accounts hold it as their email, personal data.
    append_events(
        stream="ticket-1",
        events=[{"type": "Noted", "data": {"n": n, "note": "ann@example.com"}} for n in range(60)],
    )
    append_events(
        stream="user-1",
        events=[{"type": "EmailSet", "data": {"n": 100 + n, "email": "ann@example.com"}} for n in range(900)],
    )
    append_events(stream="ticket-2", events=[{"type": "Touched", "data": {"n": n}} for n in range(300)])
    append_events(
        stream="user-2",
        events=[{"type": "EmailSet", "data": {"n": 1000 + n, "email": "ann@example.com"}} for n in range(5)],
    )

    masked, _ = every_page(support_api, "ann@example.com", limit=50)
    client.force_login(operator)
    unmasked, _ = every_page(client, "ann@example.com", limit=50)

    assert masked == list(range(59, -1, -1))
    assert unmasked == list(range(1004, 99, -1)) + list(range(59, -1, -1))
