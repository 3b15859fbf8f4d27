"""Pages of consumers: the consumers list, one consumer with its lag chart and parking
lot (and a subscription's partitions), and the operator actions on them (pause, resume, retry and skip
a parked event).

The tables poll themselves through htmx; an action answers htmx with the consumer's panel re-rendered
(its outcome on top) and a plain form post with a redirect back and a message. Only those who may
operate see the actions' buttons; the actions refuse everyone else too (403).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from core.pages import not_found, render_page, role_required, stop_polling
from core.roles import Can, can
from streams import consumer_links, consumers, lag, subscription_status
from streams.lag_chart import RANGES, lag_chart, parse_range
from streams.models import Consumer, ParkedEvent, Subscription
from streams.subscription_status import SubscriptionStatus

PARKED_SHOWN = 100
RESOLVED_SHOWN = 20
LAGGING_STREAMS_SHOWN = 10
# The page's top lagging streams are those of the first so many events after the checkpoint: far
# behind, grouping the whole lag by stream reads millions of events (the API's list reads it all).
LAGGING_SCAN = 20_000


def parked_counts() -> dict[int, int]:
    rows = (
        ParkedEvent.objects.filter(state=ParkedEvent.State.PARKED).values("consumer").annotate(n=Count("pk"))
    )
    return {row["consumer"]: row["n"] for row in rows}


@require_safe
@role_required
def consumer_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    counts = parked_counts()
    ids = dict(Consumer.objects.values_list("name", "pk"))
    statuses = lag.consumer_statuses(now=now)
    context = {
        "section": "consumers",
        "statuses": statuses,
        "parked": {status.name: counts.get(ids.get(status.name), 0) for status in statuses},
        "now": now,
    }
    return render_page(request, "streams/consumers.html", "streams/partials/consumer_table.html", context)


@require_safe
@role_required
def consumer_detail(request: HttpRequest, name: str) -> HttpResponse:
    consumer = Consumer.objects.filter(name=name).first()
    if consumer is None:
        return not_found(request, f"No consumer is named “{name}”.")
    context = consumer_context(request, consumer)
    return render_page(
        request, "streams/consumer_detail.html", "streams/partials/consumer_panel.html", context
    )


def consumer_context(request: HttpRequest, consumer: Consumer) -> dict[str, Any]:
    now = timezone.now()
    range_key = parse_range(request.GET.get("range"))
    parked = ParkedEvent.objects.filter(consumer=consumer).select_related("event", "event__stream")
    # Parked, and a subscription's queued for redelivery: both wait for something.
    waiting = parked.filter(state__in=(ParkedEvent.State.PARKED, ParkedEvent.State.QUEUED)).order_by(
        "event__position"
    )
    status, subscription = measure(consumer, now)
    may_operate = can(request.user, Can.OPERATE)
    return {
        "section": "consumers",
        "consumer": consumer,
        # Links to what can be done (a new job's form): for those who may do it.
        "links": [link for link in consumer_links.links_for(consumer) if may_operate or not link.button],
        "status": status,
        "subscription": subscription,
        "may_operate": may_operate,
        "chart": lag_chart(consumer=consumer, range_key=range_key, now=now),
        "ranges": [(key, label) for key, (_, label) in RANGES.items()],
        "lagging_streams": lag.top_lagging_streams(
            consumer=consumer, limit=LAGGING_STREAMS_SHOWN, within=LAGGING_SCAN
        ),
        # A subscription's kind measures its partitions whole.
        "lagging_scan": (
            LAGGING_SCAN if subscription is None and status.head - status.checkpoint > LAGGING_SCAN else None
        ),
        "parked": list(waiting[:PARKED_SHOWN]),
        "parked_total": waiting.count(),
        "queued_total": waiting.filter(state=ParkedEvent.State.QUEUED).count() if subscription else 0,
        "resolved": list(
            parked.filter(state__in=(ParkedEvent.State.RETRIED, ParkedEvent.State.SKIPPED)).order_by(
                "-resolved_at"
            )[:RESOLVED_SHOWN]
        ),
        # What a sink's receiver said can hold what an internal service answered: operators only.
        "shows_error_detail": may_operate,
        "now": now,
    }


def measure(consumer: Consumer, now: dt.datetime) -> tuple[lag.ConsumerStatus, SubscriptionStatus | None]:
    """The consumer's status; a subscription's also per partition, with its lag and rate the partitions'
    own (exact, summed, as the subscriptions API gives them) instead of measured from the slowest one."""
    subscription = Subscription.objects.filter(pk=consumer.pk).first()
    if subscription is None:
        return lag.consumer_status(consumer=consumer, now=now), None
    subscription.consumer = consumer
    measured = subscription_status.subscription_status(subscription=subscription, now=now)
    status = dataclasses.replace(
        measured.consumer,
        lag_events=measured.lag_events,
        lag_exact=True,
        lag_seconds=max((p.lag_seconds for p in measured.partitions), default=0.0),
        rate=measured.rate,
    )
    return status, measured


@require_safe
@role_required
def subscription_live(request: HttpRequest, name: str) -> HttpResponse:
    """A subscription's facts and partitions, polled by its page (and its health badge, out of band)."""
    now = timezone.now()
    consumer = Consumer.objects.filter(name=name).first()
    status, subscription = measure(consumer, now) if consumer else (None, None)
    if subscription is None:
        response = render(request, "streams/partials/subscription_gone.html", {"name": name})
        return stop_polling(response)
    context = {
        "consumer": consumer,
        "status": status,
        "subscription": subscription,
        "shows_error_detail": can(request.user, Can.OPERATE),
        "now": now,
    }
    return render(request, "streams/partials/subscription_poll.html", context)


@require_safe
@role_required
def consumer_live(request: HttpRequest, name: str) -> HttpResponse:
    """A consumer's facts (state, health, checkpoint, head, lag, rate, last error), polled by its page,
    and its health badge out of band."""
    now = timezone.now()
    consumer = Consumer.objects.filter(name=name).first()
    if consumer is None:
        return stop_polling(render(request, "streams/partials/consumer_gone.html", {"name": name}))
    status, _ = measure(consumer, now)
    context = {
        "consumer": consumer,
        "status": status,
        "subscription": None,
        "shows_error_detail": can(request.user, Can.OPERATE),
        "now": now,
    }
    return render(request, "streams/partials/consumer_poll.html", context)


# --- operator actions


@require_POST
@role_required(can=Can.OPERATE)
def pause(request: HttpRequest, name: str) -> HttpResponse:
    return act(
        request,
        name,
        lambda actor: consumers.pause_consumer(name=name, actor=actor, request=request),
        f"Paused {name}: it applies nothing until resumed.",
    )


@require_POST
@role_required(can=Can.OPERATE)
def resume(request: HttpRequest, name: str) -> HttpResponse:
    return act(
        request,
        name,
        lambda actor: consumers.resume_consumer(name=name, actor=actor, request=request),
        f"Resumed {name}: it goes on from its checkpoint.",
    )


@require_POST
@role_required(can=Can.OPERATE)
def retry(request: HttpRequest, name: str, parked_id: int) -> HttpResponse:
    if not ParkedEvent.objects.filter(pk=parked_id, consumer__name=name).exists():
        return not_found(request, f"{name} has no parked event {parked_id}.")
    return act(
        request,
        name,
        lambda actor: consumers.retry_parked(parked_id=parked_id, actor=actor, request=request),
        lambda parked: (
            "Queued the parked event for redelivery: the next fetch of its partition delivers it first, "
            "and a reader's acknowledgement retries it."
            if parked.state == ParkedEvent.State.QUEUED
            else "Retried the parked event: it is applied now."
        ),
    )


@require_POST
@role_required(can=Can.OPERATE)
def skip(request: HttpRequest, name: str, parked_id: int) -> HttpResponse:
    if not ParkedEvent.objects.filter(pk=parked_id, consumer__name=name).exists():
        return not_found(request, f"{name} has no parked event {parked_id}.")
    return act(
        request,
        name,
        lambda actor: consumers.skip_parked(parked_id=parked_id, actor=actor, request=request),
        f"Skipped the parked event: {name} will never apply it.",
    )


def act(
    request: HttpRequest, name: str, action: Callable[[str], Any], done: str | Callable[[Any], str]
) -> HttpResponse:
    """Run one operator action and say how it went (`done`, or what `done` says of the action's result):
    htmx gets the consumer's panel re-rendered with the message on top, a plain form post a redirect
    back to the consumer's page."""
    consumer = Consumer.objects.filter(name=name).first()
    if consumer is None:
        return not_found(request, f"No consumer is named “{name}”.")
    try:
        result = action(request.user.get_username())
    except consumers.ConsumerError as exc:
        messages.error(request, f"Not done: {exc}.")
    else:
        messages.success(request, done if isinstance(done, str) else done(result))
    if not request.htmx:
        return redirect("streams:consumer", name=name)
    consumer.refresh_from_db()
    return render(request, "streams/partials/consumer_panel.html", consumer_context(request, consumer))
