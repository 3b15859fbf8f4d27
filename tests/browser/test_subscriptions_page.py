"""What an operator watches and does about a subscription in the browser, on a phone (390 px) and a
desktop (1280 px): its partitions with their readers and leases, updating as readers fetch; pause and
resume, with fetches stopped between; a parked event retried from the page and redelivered."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from core.audit import AuditType
from streams import consumers, subscriptions
from streams.models import Event, ParkedEvent
from streams.services import append_events
from streams.subscriptions import partition_of
from tests.browser.test_journeys import has_no_horizontal_scroll

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def billing(operator):
    """A subscription to invoices in two partitions, that parks an event at its first nack."""
    return subscriptions.create_subscription(
        name="billing", actor="olivia", categories=["invoice"], partitions=2, max_nacks=1
    )


def invoices(stream: str, count: int) -> list[int]:
    events = [{"type": "InvoiceIssued", "data": {"n": n}} for n in range(count)]
    return append_events(stream=stream, events=events, actor="olivia").positions


def fetch(subscription, reader: str = "worker-1") -> subscriptions.Batch:
    return subscriptions.fetch(
        subscription=subscription, reader=reader, max_events=100, wait_seconds=0, user_id="tests"
    )


def test_the_page_shows_each_partition_with_its_reader_and_lease_as_readers_fetch(
    operator_page, width, billing
):
    page = operator_page
    invoices("invoice-1", 3)
    number = partition_of("invoice-1", 2)

    page.goto("/consumers/billing/")
    page.evaluate("window.notReloaded = true")
    rows = page.locator("tr.partition")
    expect(rows).to_have_count(2)
    row = page.locator(f'tr.partition[data-partition="{number}"]')
    expect(row.locator(".partition-reader")).to_have_text("free")
    expect(page.locator(".subscription-filter")).to_have_text("categories invoice")

    batch = fetch(billing)

    expect(row.locator(".partition-reader")).to_have_text("worker-1")
    expect(row.locator(".partition-lease time")).to_be_visible()
    subscriptions.ack(subscription=billing, lease=batch.lease, position=batch.events[-1].position)
    expect(row.locator('td[data-label="Checkpoint"]')).to_have_text(str(batch.events[-1].position))
    expect(row.locator('td[data-label="Lag (events)"]')).to_have_text("0")
    # Paused elsewhere (the API): the page's facts and health badge follow without a reload.
    consumers.pause_consumer(name="billing", actor="olivia")
    expect(page.locator("#consumer-health .badge")).to_have_text("paused")
    expect(row.locator("td[data-label='Health'] .badge")).to_have_text("paused")
    assert page.evaluate("window.notReloaded") is True, "the partitions refresh in place"
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/subscription-{width}.png", full_page=True)


def test_pause_then_resume_from_the_page_stops_fetches_between(operator_page, width, billing):
    page = operator_page
    positions = invoices("invoice-1", 2)
    page.goto("/consumers/billing/")

    page.get_by_role("button", name="Pause").click()

    expect(page.get_by_role("status")).to_contain_text("Paused billing")
    expect(page.locator("#consumer-health .badge")).to_have_text("paused")
    assert fetch(billing).events == ()
    assert has_no_horizontal_scroll(page)

    page.get_by_role("button", name="Resume").click()

    expect(page.get_by_role("status")).to_contain_text("Resumed billing")
    assert [event.position for event in fetch(billing).events] == positions
    trail = Event.objects.filter(stream__name="console-consumer.billing").values_list("type", "actor")
    assert list(trail)[-2:] == [(AuditType.CONSUMER_PAUSED, "olivia"), (AuditType.CONSUMER_RESUMED, "olivia")]


def test_a_parked_event_is_retried_from_the_page_and_redelivered_to_the_next_fetch(
    operator_page, width, billing
):
    page = operator_page
    positions = invoices("invoice-1", 2)
    batch = fetch(billing)
    subscriptions.nack(
        subscription=billing, lease=batch.lease, position=positions[0], reason="tax service down"
    )
    parked = ParkedEvent.objects.get()
    page.goto("/consumers/billing/")
    row = page.locator(f'tr.parked-event[data-parked="{parked.pk}"]')
    expect(row).to_contain_text("tax service down")
    assert has_no_horizontal_scroll(page)

    row.get_by_role("button", name="Retry").click()

    expect(page.get_by_role("status")).to_contain_text("Queued the parked event for redelivery")
    expect(row).to_contain_text("Queued for redelivery by olivia")
    expect(row.get_by_role("button", name="Retry")).to_have_count(0)
    expect(page.locator("tr.resolved-event")).to_have_count(0)
    again = fetch(billing)
    assert again.redelivery and [event.position for event in again.events] == positions[:1]
    page.reload()
    expect(row).to_contain_text("delivered to worker-1")
    expect(
        page.locator(f'tr.partition[data-partition="{again.partition}"] td[data-label="Redeliveries"]')
    ).to_have_text("1")
    assert has_no_horizontal_scroll(page)
    page.screenshot(path=f"/tmp/subscription-parked-{width}.png", full_page=True)

    subscriptions.ack(subscription=billing, lease=again.lease, position=positions[0])
    page.reload()

    expect(page.locator(f'tr.resolved-event[data-parked="{parked.pk}"]')).to_contain_text("retried")
    expect(page.locator("tr.resolved-event")).to_have_count(1)
    expect(page.locator("tr.parked-event")).to_have_count(0)
    parked.refresh_from_db()
    assert (parked.state, parked.resolved_by) == ("retried", "olivia")
