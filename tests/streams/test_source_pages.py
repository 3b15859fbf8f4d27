"""The source pages through Django's test client: the sources list, one source (its configuration, its
numbers, its parked events), what each role sees and may do there, the admins' form that adds a source,
and where sources show elsewhere (a stream's page, the streams list, the dashboard)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from core.audit import AuditType
from streams import source_services
from streams.models import Event, Source, SourceParkedEvent
from tests.conftest import person
from tests.streams.source_helpers import TABLE_OPTIONS, add_table_source, copy_all

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET_BODY = {"card": "4111-1111-1111-1111"}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def support(support_agent):
    return signed_in(support_agent)


@pytest.fixture
def operating(operator):
    return signed_in(operator)


@pytest.fixture
def admin(db):
    return signed_in(person("ada", "admin"))


@pytest.fixture
def orders(source_db):
    """A source with two copied events of order-1 and one parked event (a type the log refuses)."""
    source_db.append("order-1", 1)
    source_db.append("order-1", 2)
    source_db.append("order-2", 1, "not a type!", body=SECRET_BODY)
    add_table_source(source_db)
    copy_all()
    return Source.objects.get(name="orders_store")


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def row_of(response, name: str) -> str:
    return re.search(rf'<tr class="source" data-source="{name}".*?</tr>', text_of(response)).group(0)


def audited(name: str = "orders_store") -> list[tuple[str, str]]:
    trail = Event.objects.filter(stream__name=f"console-source.{name}").order_by("position")
    return list(trail.values_list("type", "actor"))


# The sources list


def test_every_reader_finds_sources_in_the_navigation(support):
    response = support.get("/sources/")

    assertContains(response, '<a href="/sources/" aria-current="page">Sources</a>', html=True)
    assertContains(response, "No sources yet.")
    assertContains(support.get("/dashboard/"), '<a href="/sources/">Sources</a>', html=True)


def test_the_list_shows_each_source_with_its_copy_lag_health_and_parked_events(support, orders):
    row = row_of(support.get("/sources/"), "orders_store")

    assert 'data-health="healthy"' in row and ">healthy</span>" in row
    assert '<td data-label="Kind">table</td>' in row and '<td data-label="State">running</td>' in row
    assert '<span class="source-position">3</span> <span class="muted">/ 3</span>' in row
    assert '<td class="num source-copied" data-label="Copied">2</td>' in row
    assert '<a href="/sources/orders_store/#parked-title">1</a>' in row


def test_the_list_poll_answers_htmx_with_the_table_only_and_new_copies_in_it(support, orders, source_db):
    source_db.append("order-1", 3)
    copy_all()

    response = support.get("/sources/", **HTMX)

    assertContains(response, 'id="source-table"')
    assertContains(response, 'hx-trigger="every 2s"')
    assertNotContains(response, "<html")
    assert '<td class="num source-copied" data-label="Copied">3</td>' in row_of(response, "orders_store")


def test_the_list_shows_a_sources_last_error_and_failing_health(support, orders):
    from django.utils import timezone

    Source.objects.filter(pk=orders.pk).update(
        last_error="the source has no table named events", last_error_at=timezone.now()
    )

    row = row_of(support.get("/sources/"), "orders_store")

    assert 'data-health="failing"' in row and "the source has no table named events" in row


def test_only_admins_see_add_a_source(support, operating, admin):
    assertNotContains(support.get("/sources/"), "/sources/new")
    assertNotContains(operating.get("/sources/"), "/sources/new")
    assertContains(
        admin.get("/sources/"), '<a class="button" href="/sources/new">Add a source</a>', html=True
    )


# One source


def test_support_sees_a_source_and_its_parked_events_without_buttons_or_payloads(support, orders):
    response = support.get("/sources/orders_store/")
    text = text_of(response)

    assert '<dd class="source-kind">table</dd>' in text
    assert "stored encrypted; never shown" in text
    assert '<tr class="source-option" data-option="position">' in text and "<code>seq</code>" in text
    assert '<dd class="figure source-copied">2</dd>' in text
    parked = re.search(r'<tr class="parked-event".*?</tr>', text).group(0)
    assert "order-2</span>@1" in parked and "not a type!" in parked and "type:" in parked
    assert "4111" not in text and "Payload" not in text
    assert "<button" not in text.split('id="source-panel"')[1]


def test_an_operator_sees_pause_retry_skip_and_the_payload(operating, orders):
    text = text_of(operating.get("/sources/orders_store/"))

    assert '<button type="submit">Pause</button>' in text
    parked = re.search(r'<tr class="parked-event".*?</tr>', text).group(0)
    assert "Retry<span" in parked and "Skip<span" in parked
    assert "4111-1111-1111-1111" in parked
    assert 'href="/streams/order-2/"' not in parked  # its stream never reached the log: no link


def test_a_failed_source_offers_resume_which_tries_it_again(operating, orders):
    Source.objects.filter(pk=orders.pk).update(state=Source.State.FAILED)

    assertContains(operating.get("/sources/orders_store/"), "Resume</button>")
    operating.post("/sources/orders_store/resume")

    assert Source.objects.get(pk=orders.pk).state == "running"


def test_a_source_whose_dsn_is_in_the_environment_names_the_variable(support, source_db, monkeypatch):
    monkeypatch.setenv("ORDERS_STORE_DSN", source_db.reader_url)
    source_services.add_source(
        name="orders_store", kind="table", dsn_env="ORDERS_STORE_DSN", options=TABLE_OPTIONS, actor="ada"
    )

    text = text_of(support.get("/sources/orders_store/"))

    assert "from the environment variable <code>ORDERS_STORE_DSN</code>" in text
    assert source_db.reader_url not in text


def test_the_page_never_shows_the_dsn(admin, operating, orders, source_db):
    for client in (admin, operating):
        for url in ("/sources/", "/sources/orders_store/", "/sources/orders_store/live"):
            assert source_db.reader_url not in client.get(url).content.decode()


def test_an_unknown_source_is_a_404_page_that_names_it(support):
    response = support.get("/sources/nope/")

    assert response.status_code == 404
    assertContains(response, "No source is named “nope”.", status_code=404)


def test_the_numbers_poll_with_the_health_badge(support, orders, source_db):
    source_db.append("order-1", 3)
    copy_all()

    response = support.get("/sources/orders_store/live?shown=running")

    assert response.status_code == 200
    assertContains(response, '<dd class="figure source-copied">3</dd>')
    assertContains(response, '<span id="source-health" hx-swap-oob="true">')
    assertNotContains(response, 'id="source-actions"')  # its state is the one the page shows


def test_the_numbers_stop_polling_once_the_source_is_gone(support, source_db):
    add_table_source(source_db, name="short_lived")
    Source.objects.filter(name="short_lived").delete()

    gone = support.get("/sources/short_lived/live?shown=running")

    assert gone.status_code == 286
    assertContains(gone, "No source is named “short_lived” now", status_code=286)


def test_a_pause_made_elsewhere_swaps_the_buttons_on_the_next_poll(operating, orders):
    source_services.set_state(name="orders_store", state=Source.State.PAUSED, actor="olivia")

    response = operating.get("/sources/orders_store/live?shown=running")

    actions = re.search(
        r'<div class="actions" id="source-actions" hx-swap-oob="true">.*?</div>', text_of(response)
    )
    assert actions and "Resume</button>" in actions.group(0)


# Operator actions


def test_pause_and_resume_from_the_page_are_audited(operating, orders):
    assertRedirects(operating.post("/sources/orders_store/pause"), "/sources/orders_store/")
    assert Source.objects.get(pk=orders.pk).state == "paused"

    panel = operating.post("/sources/orders_store/resume", **HTMX)

    assertContains(panel, "Resumed orders_store: it is copied again from where it stopped.")
    assertContains(panel, '<button type="submit">Pause</button>', html=True)
    assertNotContains(panel, "<html")
    assert Source.objects.get(pk=orders.pk).state == "running"
    assert audited()[-2:] == [(AuditType.SOURCE_PAUSED, "olivia"), (AuditType.SOURCE_RESUMED, "olivia")]


def test_support_cannot_pause_or_decide_about_parked_events(support, orders):
    parked = SourceParkedEvent.objects.get()

    assert support.post("/sources/orders_store/pause").status_code == 403
    assert support.post(f"/sources/orders_store/parked/{parked.pk}/skip").status_code == 403
    assert Source.objects.get(pk=orders.pk).state == "running"
    assert SourceParkedEvent.objects.get().state == "parked"


def test_a_retry_still_in_conflict_says_why_and_a_retry_after_the_fix_copies_it(operating, orders, source_db):
    parked = SourceParkedEvent.objects.get()

    still = operating.post(f"/sources/orders_store/parked/{parked.pk}/retry", **HTMX)

    assertContains(still, "Not done: it is still in conflict: type:")
    assertContains(still, 'class="notice notice-error" role="alert"')
    assert SourceParkedEvent.objects.get().state == "parked"
    source_db.execute("UPDATE events SET event_type = 'OrderPlaced' WHERE stream_name = 'order-2'")

    fixed = operating.post(f"/sources/orders_store/parked/{parked.pk}/retry", follow=True)

    assertContains(fixed, "Retried the parked event")
    assertContains(fixed, "No parked events.")
    resolved = re.search(r'<tr class="resolved-event".*?</tr>', text_of(fixed)).group(0)
    assert "retried" in resolved and "olivia" in resolved
    assert list(Event.objects.filter(stream__name="order-2").values_list("type", flat=True)) == [
        "OrderPlaced"
    ]
    assert audited()[-1] == (AuditType.SOURCE_PARKED_RETRIED, "olivia")


def test_skip_from_the_page_leaves_the_event_out_for_good(operating, orders):
    parked = SourceParkedEvent.objects.get()

    panel = operating.post(f"/sources/orders_store/parked/{parked.pk}/skip", **HTMX)

    assertContains(panel, "Skipped the parked event: it is left out of the log for good.")
    assert SourceParkedEvent.objects.get().state == "skipped"
    assert not Event.objects.filter(stream__name="order-2").exists()
    again = operating.post(f"/sources/orders_store/parked/{parked.pk}/skip", **HTMX)
    assertContains(again, "Not done: source orders_store has no parked event")
    assert operating.post("/sources/orders_store/parked/999999/skip").status_code == 404


# Adding a source


def form_data(source_db, **overrides) -> dict:
    options = "\n".join(f"{key}={value}" for key, value in TABLE_OPTIONS.items())
    return {
        "name": "orders_store",
        "kind": "table",
        "dsn": source_db.reader_url,
        "options": options,
        **overrides,
    }


def test_the_form_offers_each_kind_with_its_options(admin):
    response = admin.get("/sources/new")

    text = text_of(response)
    assert 'type="radio" name="kind" value="table"' in text
    assert '<h3 id="kind-table-title">Options of <code>table</code></h3>' in text
    assert "<dt><code>first_sequence</code></dt><dd>the sequence of a stream&#x27;s first event" in text
    assert 'type="password" name="dsn"' in text


def test_an_admin_adds_a_source_from_the_form_and_lands_on_its_page(admin, source_db):
    source_db.append("order-1", 1)

    options = "# the shop's table\n\n" + form_data(source_db)["options"]

    response = admin.post("/sources/new", form_data(source_db, options=options), follow=True)

    assertRedirects(response, "/sources/orders_store/")
    assertContains(response, "Added the source orders_store: it is copied from its start.")
    source = Source.objects.get()
    assert (source.kind, source.options["table"], source.options["id"], source.created_by) == (
        "table",
        "events",
        "event_id",
        "ada",
    )
    assert source.dsn_encrypted and source_db.reader_url not in source.dsn_encrypted
    assert audited() == [(AuditType.SOURCE_ADDED, "ada")]


def test_the_form_shows_the_services_errors_next_to_the_fields_and_saves_nothing(admin, source_db):
    before = Event.objects.count()
    options = form_data(source_db)["options"].replace("table=events", "table=no such") + "\ncolour=blue"

    response = admin.post("/sources/new", form_data(source_db, name="Bad Name", options=options))

    assert response.status_code == 400
    text = text_of(response)
    assert "Nothing was saved" in text
    name_errors = re.search(r'id="id_name_error">(.*?)</ul>', text).group(1)
    assert "1–40 lowercase letters" in name_errors
    option_errors = re.search(r'id="id_options_error">(.*?)</ul>', text).group(1)
    assert (
        "table: name the table" in option_errors and "colour: a table source takes no option" in option_errors
    )
    assert source_db.reader_url not in text and 'value="Bad Name"' in text
    assert not Source.objects.exists() and Event.objects.count() == before


def test_a_dsn_that_may_not_be_reached_is_refused_on_the_dsn_field_and_never_echoed(admin, source_db):
    secret_dsn = "postgresql://reader:hunter2-password@10.1.2.3/shop"

    response = admin.post("/sources/new", form_data(source_db, dsn=secret_dsn))

    assert response.status_code == 400
    dsn_errors = re.search(r'id="id_dsn_error">(.*?)</ul>', text_of(response)).group(1)
    assert "may not be reached" in dsn_errors
    assert "hunter2" not in response.content.decode()
    assert not Source.objects.exists()


def test_option_lines_that_are_not_key_value_are_refused_by_line(admin, source_db):
    response = admin.post("/sources/new", form_data(source_db, options="table=events\nposition seq\ntable=x"))

    assert response.status_code == 400
    errors = re.search(r'id="id_options_error">(.*?)</ul>', text_of(response)).group(1)
    assert "line 2: write KEY=VALUE" in errors and "line 3: table is given twice" in errors
    assert not Source.objects.exists()


def test_neither_a_dsn_nor_a_variable_is_refused(admin, source_db):
    response = admin.post("/sources/new", form_data(source_db, dsn=""))

    assert response.status_code == 400
    assertContains(response, "give the DSN, or the name of the environment variable", status_code=400)
    assert not Source.objects.exists()


def test_operators_may_not_add_sources(operating, source_db):
    assert operating.get("/sources/new").status_code == 403
    assert operating.post("/sources/new", form_data(source_db)).status_code == 403
    assert not Source.objects.exists()


# Sources elsewhere


def test_a_copied_streams_page_says_which_source_it_is_copied_from(support, orders):
    response = support.get("/streams/order-1/")

    assertContains(response, 'Copied from source <a href="/sources/orders_store/">orders_store</a>')


def test_a_streams_own_page_says_nothing_of_sources(support):
    from streams.services import append_events

    append_events(stream="cart-1", events=[{"type": "Added", "data": {}}])

    assertNotContains(support.get("/streams/cart-1/"), "Copied from source")


def test_the_streams_list_filters_by_source(support, orders):
    from streams.services import append_events

    append_events(stream="order-99", events=[{"type": "Added", "data": {}}])

    everything = text_of(support.get("/streams/?prefix=order"))
    copied = text_of(support.get("/streams/?source=orders_store"))

    assert "/streams/order-99/" in everything and "/streams/order-1/" in everything
    assert "/streams/order-1/" in copied and "/streams/order-99/" not in copied
    assert '<option value="orders_store" selected>orders_store</option>' in copied
    assert "No streams match" in text_of(support.get("/streams/?source=another"))


def test_the_streams_api_filters_by_source_and_names_each_streams_source(api, orders):
    from streams.services import append_events

    append_events(stream="order-99", events=[{"type": "Added", "data": {}}])

    everything = api.get("/api/v1/streams?prefix=order").json()["results"]
    copied = api.get("/api/v1/streams?source=orders_store").json()["results"]

    assert {(s["name"], s["source"]) for s in everything} == {("order-1", "orders_store"), ("order-99", None)}
    assert [s["name"] for s in copied] == ["order-1"]
    assert api.get("/api/v1/streams/order-1").json()["source"] == "orders_store"


def test_the_dashboard_counts_sources_by_health_worst_first(support, source_db):
    for name in ("alpha", "beta", "gamma"):
        add_table_source(source_db, name=name)
    source_services.set_state(name="beta", state=Source.State.PAUSED, actor="olivia")
    Source.objects.filter(name="gamma").update(state=Source.State.FAILED)

    text = text_of(support.get("/dashboard/", **HTMX))

    counts = re.findall(
        r'<li class="source-health" data-health="(\w+)">.*?<span class="figure">(\d+)</span>', text
    )
    assert counts == [("failing", "1"), ("paused", "1"), ("healthy", "1")]
    assert '<a class="section-link" href="/sources/">' in text


def test_the_dashboard_says_nothing_of_sources_when_there_are_none(support):
    assertNotContains(support.get("/dashboard/"), "dashboard-sources-title")
