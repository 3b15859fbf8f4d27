"""An entity's timeline on the stream page: what each event changed, field by field, and the state as of a
sequence or a time (GET /api/v1/streams/{stream}/state too), by the default fold or a projection's."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains

from streams import projections, selectors, timeline
from streams.models import Event
from streams.projections import Projection
from streams.services import ImportBatch, import_events

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 4, 1, 8, 0, tzinfo=dt.UTC)


def account_history() -> None:
    """An account opened, its plan changed and an address added, then its nickname changed."""
    import_events(
        batches=[
            ImportBatch(
                stream="account-7",
                events=[
                    {"type": "Opened", "data": {"plan": "free", "nickname": "kit"}, "recorded_at": T0},
                    {
                        "type": "Upgraded",
                        "data": {"plan": "pro", "address": {"city": "Lyon"}},
                        "recorded_at": T0 + dt.timedelta(days=1),
                    },
                    {
                        "type": "Renamed",
                        "data": {"nickname": "kat"},
                        "recorded_at": T0 + dt.timedelta(days=2),
                    },
                ],
            )
        ]
    )


def changes_of(html: str, sequence: int) -> list[tuple[str, str]]:
    """(field, what the row says about it) for the stream page's row of `sequence`."""
    row = re.search(rf'<tr class="event"[^>]*data-sequence="{sequence}">(.*?)</tr>', html, re.S).group(1)
    items = re.findall(r'<li class="change change-(\w+)" data-field="([^"]+)">(.*?)</li>', row, re.S)
    return [
        # The words after the field's name: "set to free", "free → pro", "removed, was acme".
        (field, kind + ": " + " ".join(re.sub(r"<[^>]+>", " ", text).split()[1:]))
        for kind, field, text in items
    ]


@pytest.fixture
def reader(client, support_agent):
    client.force_login(support_agent)
    return client


def test_each_event_on_the_stream_page_says_what_it_set_and_changed(reader):
    account_history()

    html = reader.get("/streams/account-7/").content.decode()

    assert changes_of(html, 1) == [("plan", "set: set to free"), ("nickname", "set: set to kit")]
    assert changes_of(html, 2) == [("plan", "changed: free → pro"), ("address.city", "set: set to Lyon")]
    assert changes_of(html, 3) == [("nickname", "changed: kit → kat")]


def test_a_later_page_of_the_timeline_still_diffs_against_everything_before_it(reader):
    account_history()

    html = reader.get("/streams/account-7/", {"limit": 1, "before": 3}).content.decode()

    assert changes_of(html, 2) == [("plan", "changed: free → pro"), ("address.city", "set: set to Lyon")]


def test_a_page_deep_in_a_long_stream_diffs_against_the_events_before_it_read_in_chunks(reader, monkeypatch):
    # The events before the page are read in queries of 2 events, each loaded one event at a time (a budget
    # of 1 byte, which always takes one event): the fold carries the state across both kinds of boundary.
    monkeypatch.setattr(timeline, "CHUNK", 2)
    monkeypatch.setattr(selectors, "CHUNK_BYTES", 1)
    import_events(
        batches=[
            ImportBatch(
                stream="account-9",
                events=[
                    {"type": "Noted", "data": {f"note{n}": n}, "recorded_at": T0 + dt.timedelta(minutes=n)}
                    for n in range(1, 8)
                ]
                + [{"type": "Noted", "data": {"note1": "again"}, "recorded_at": T0 + dt.timedelta(hours=1)}],
            )
        ]
    )

    html = reader.get("/streams/account-9/", {"limit": 1}).content.decode()
    state = reader.get(reverse("api:api-stream-state", args=["account-9"]), {"sequence": 7}).json()

    assert changes_of(html, 8) == [("note1", "changed: 1 → again")]
    assert state["state"] == {f"note{n}": n for n in range(1, 8)}


def test_the_event_page_shows_what_that_event_changed(reader):
    account_history()
    renamed = Event.objects.get(stream__name="account-7", sequence=3)

    response = reader.get(f"/events/{renamed.event_id}/")

    assertContains(response, 'data-field="nickname"')
    assert "kit" in response.content.decode() and "kat" in response.content.decode()


def test_state_as_of_a_sequence_on_the_page(reader):
    account_history()

    html = reader.get("/streams/account-7/", {"sequence": 2}).content.decode()

    state = dict(
        re.findall(
            r'<tr data-field="([^"]+)"><th scope="row"><code>[^<]+</code></th>'
            r'<td class="wrap"><code>([^<]*)</code>',
            html,
        )
    )
    assert state == {"plan": "pro", "nickname": "kit", "address.city": "Lyon"}
    assert "After sequence <strong>2</strong>" in html


def test_state_as_of_a_time_takes_the_last_event_recorded_by_then(reader):
    account_history()

    response = reader.get(reverse("api:api-stream-state", args=["account-7"]), {"at": "2026-04-02T12:00:00Z"})

    assert response.json() == {
        "stream": "account-7",
        "sequence": 2,
        "recorded_at": "2026-04-02T08:00:00Z",
        "fold": "merge",
        "state": {"plan": "pro", "nickname": "kit", "address": {"city": "Lyon"}},
    }


def test_state_as_of_a_sequence_over_the_api_and_before_the_first_event(reader):
    account_history()
    url = reverse("api:api-stream-state", args=["account-7"])

    first = reader.get(url, {"sequence": 1}).json()
    before_anything = reader.get(url, {"at": "2026-03-01T00:00:00Z"}).json()
    latest = reader.get(url).json()

    assert first["state"] == {"plan": "free", "nickname": "kit"} and first["sequence"] == 1
    assert before_anything["state"] == {} and before_anything["sequence"] == 0
    assert latest["state"]["nickname"] == "kat" and latest["sequence"] == 3


@pytest.mark.parametrize(
    ("params", "field", "message", "status"),
    [
        # Of the form the schema states, but past the stream's end, or two answers asked for at once.
        ({"sequence": "9"}, "sequence", "must be from 0 to 3", 422),
        ({"sequence": "1", "at": "2026-04-02T00:00:00Z"}, "at", "not both", 422),
        ({"sequence": "two"}, "sequence", "must be a whole number", 400),
        ({"at": "noon"}, "at", "must be an ISO 8601 time", 400),
    ],
)
def test_a_bad_state_question_gets_a_clear_error(reader, params, field, message, status):
    account_history()

    api = reader.get(reverse("api:api-stream-state", args=["account-7"]), params)
    page = reader.get("/streams/account-7/", params)

    assert api.status_code == status and message in " ".join(api.json()["errors"][field])
    assertContains(page, message, status_code=400)


def test_the_state_of_an_unknown_stream_is_a_404(reader):
    response = reader.get(reverse("api:api-stream-state", args=["account-404"]))

    assert response.status_code == 404


class _Ledger(Projection, register=False):
    """Folds its category its own way: a closed ledger forgets its owner."""

    name = "ledger_fold_test"
    categories = ("ledger",)
    tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

    def apply(self, cursor, events):  # never run: this test projection only folds
        raise NotImplementedError

    def fold_stream(self, state: dict, event: Event) -> dict:
        if event.type == "Closed":
            return {k: v for k, v in state.items() if k != "owner"} | {"open": False}
        return {**state, **event.data, "open": True}


@pytest.fixture
def ledger_projection():
    projections.add(_Ledger)
    yield
    projections.remove(_Ledger.name)


def test_a_projection_fold_decides_the_state_and_a_removed_field_shows_as_removed(reader, ledger_projection):
    import_events(
        batches=[
            ImportBatch(
                stream="ledger-1",
                events=[
                    {"type": "Opened", "data": {"owner": "acme"}, "recorded_at": T0},
                    {"type": "Closed", "data": {}, "recorded_at": T0 + dt.timedelta(hours=1)},
                ],
            )
        ]
    )

    html = reader.get("/streams/ledger-1/", {"sequence": 2}).content.decode()
    state = reader.get(reverse("api:api-stream-state", args=["ledger-1"])).json()

    assert changes_of(html, 2) == [("owner", "removed: removed, was acme"), ("open", "changed: true → false")]
    assert state["fold"] == "ledger_fold_test" and state["state"] == {"open": False}
    assert "folded by the ledger_fold_test projection" in html


def test_a_projection_fold_also_folds_the_events_before_the_page(reader, ledger_projection):
    import_events(
        batches=[
            ImportBatch(
                stream="ledger-2",
                events=[
                    {"type": "Opened", "data": {"owner": "acme"}, "recorded_at": T0},
                    {"type": "Noted", "data": {"note": "late"}, "recorded_at": T0 + dt.timedelta(hours=1)},
                    {"type": "Closed", "data": {}, "recorded_at": T0 + dt.timedelta(hours=2)},
                ],
            )
        ]
    )

    html = reader.get("/streams/ledger-2/", {"limit": 1}).content.decode()
    event = reader.get(f"/events/{Event.objects.get(stream__name='ledger-2', sequence=3).event_id}/")

    assert changes_of(html, 3) == [("owner", "removed: removed, was acme"), ("open", "changed: true → false")]
    assertContains(event, 'data-field="open"')
