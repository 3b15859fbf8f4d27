"""/metrics for Prometheus: the head, open appends, each consumer's checkpoint, lag and health, and each
source's position, lag, copies, parked events and health, read from the database at scrape time (nothing
is kept in process memory, so every web process answers the same).

Access: a logged-in session, an API token (`Authorization: Bearer <token>`), or, for a scraper without
a user, the token in REPLAYDESK_METRICS_TOKEN (`bearer_token` in the Prometheus scrape config). Consumer
and source names and lag are operational data; they are not served to anyone who asks.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from rest_framework.exceptions import AuthenticationFailed

from console.auth import BearerTokenAuthentication
from core.problems import problem_response
from core.roles import Can, can, refusal
from streams import lag, selectors, source_status
from streams.models import Consumer, Source

METRICS_TOKEN_ENV = "REPLAYDESK_METRICS_TOKEN"


class StoreCollector:
    """Reads the store on each collect(); registered in a registry of its own (no process metrics)."""

    def collect(self) -> Iterator[Metric]:
        head = selectors.head()
        statuses = lag.consumer_statuses(with_rate=False)
        yield GaugeMetricFamily(
            "replaydesk_head_position",
            "The position of the last event readers of the log may go up to (the settled head).",
            value=head,
        )
        appends = selectors.open_appends()
        yield GaugeMetricFamily(
            "replaydesk_open_appends", "Appends whose transactions are still open.", value=appends.count
        )
        yield GaugeMetricFamily(
            "replaydesk_oldest_open_append_seconds",
            "Age of the oldest transaction holding an append open; consumers wait below its position.",
            value=appends.oldest_seconds,
        )
        yield GaugeMetricFamily(
            "replaydesk_unsettled_positions",
            "Positions handed out that readers cannot read yet: open appends and what committed after them.",
            value=appends.unsettled_positions,
        )
        gauges = {
            "checkpoint": GaugeMetricFamily(
                "replaydesk_consumer_checkpoint",
                "Position up to which the consumer has read.",
                labels=["consumer"],
            ),
            "lag_events": GaugeMetricFamily(
                "replaydesk_consumer_lag_events",
                "Events the consumer follows committed after its checkpoint (exact count).",
                labels=["consumer"],
            ),
            "lag_seconds": GaugeMetricFamily(
                "replaydesk_consumer_lag_seconds",
                "Age of the oldest event the consumer has yet to apply; 0 when caught up.",
                labels=["consumer"],
            ),
        }
        health = GaugeMetricFamily(
            "replaydesk_consumer_health",
            "1 for the consumer's current health, 0 for the others.",
            labels=["consumer", "health"],
        )
        state = GaugeMetricFamily(
            "replaydesk_consumer_state",
            "1 for the consumer's current state (running, paused, failed), 0 for the others.",
            labels=["consumer", "state"],
        )
        for status in statuses:
            for field, gauge in gauges.items():
                gauge.add_metric([status.name], getattr(status, field))
            for name in lag.HEALTHS:
                health.add_metric([status.name, name], 1 if status.health == name else 0)
            for name in Consumer.State.values:
                state.add_metric([status.name, name], 1 if status.state == name else 0)
        yield from gauges.values()
        yield health
        yield state
        yield from source_metrics()


def source_metrics() -> Iterator[Metric]:
    """Each source as its consumers' metrics say a consumer: where the copy is, how far behind, what it
    copied and parked, its health and state."""
    statuses = source_status.source_statuses()
    waiting = source_status.parked_waiting()
    labels = ["source"]
    position = GaugeMetricFamily(
        "replaydesk_source_position",
        "Position in the source's own order up to which it is copied.",
        labels=labels,
    )
    head = GaugeMetricFamily(
        "replaydesk_source_head", "The source's last position when the follower last looked.", labels=labels
    )
    lag_events = GaugeMetricFamily(
        "replaydesk_source_lag_events",
        "Positions of the source after the copied one (an upper bound: rolled-back positions count).",
        labels=labels,
    )
    lag_seconds = GaugeMetricFamily(
        "replaydesk_source_lag_seconds",
        "How long the copy has been behind the source; 0 when caught up.",
        labels=labels,
    )
    copied = CounterMetricFamily(
        "replaydesk_source_events_copied", "Events copied from the source into the log.", labels=labels
    )
    parked = GaugeMetricFamily(
        "replaydesk_source_events_parked",
        "Events of the source parked and waiting for a decision (retry or skip).",
        labels=labels,
    )
    health = GaugeMetricFamily(
        "replaydesk_source_health",
        "1 for the source's current health, 0 for the others.",
        labels=["source", "health"],
    )
    state = GaugeMetricFamily(
        "replaydesk_source_state",
        "1 for the source's current state (running, paused, failed), 0 for the others.",
        labels=["source", "state"],
    )
    for status in statuses:
        source = status.source
        position.add_metric([source.name], source.position)
        # Unknown until the follower first looks: no sample rather than a made-up one.
        if source.head is not None:
            head.add_metric([source.name], source.head)
            lag_events.add_metric([source.name], status.lag_events)
        lag_seconds.add_metric([source.name], status.lag_seconds)
        copied.add_metric([source.name], source.events_copied)
        parked.add_metric([source.name], waiting.get(source.pk, 0))
        for name in source_status.HEALTHS:
            health.add_metric([source.name, name], 1 if status.health == name else 0)
        for name in Source.State.values:
            state.add_metric([source.name, name], 1 if source.state == name else 0)
    yield from (position, head, lag_events, lag_seconds, copied, parked, health, state)


_registry = CollectorRegistry(auto_describe=False)
_registry.register(StoreCollector())


def _allowed(request: HttpRequest) -> bool:
    if request.user.is_authenticated:
        return can(request.user, Can.READ)
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return False
    expected = settings.REPLAYDESK_METRICS_TOKEN
    if expected and hmac.compare_digest(credential.strip().encode(), expected.encode()):
        return True
    try:
        found = BearerTokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        return False
    return found is not None and can(found[0], Can.READ)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and not can(request.user, Can.READ):
        return problem_response(
            status_code=403, problem_type="forbidden", title="Forbidden", detail=refusal(Can.READ)
        )
    if not _allowed(request):
        response = problem_response(
            status_code=401,
            problem_type="not-authenticated",
            title="Not authenticated",
            detail=f"send an API token or the {METRICS_TOKEN_ENV} token as `Authorization: Bearer …`, "
            "or log in",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
