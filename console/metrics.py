"""/metrics for Prometheus: the head, open appends, each consumer's checkpoint, lag, health and parked
events, each source's position, lag, copies, parked events and health, jobs (waiting, running, their
progress, failures of the last hour), approvals waiting, the last drill, and /readyz's checks; read
from the database at scrape time (nothing is kept in process memory, so every web process answers the
same). deploy/prometheus has alert rules and deploy/grafana a dashboard built on these.

Access: a logged-in session, an API token (`Authorization: Bearer <token>`), or, for a scraper without
a user, the token in REPLAYDESK_METRICS_TOKEN (`bearer_token` in the Prometheus scrape config). Consumer
and source names and lag are operational data; they are not served to anyone who asks.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from rest_framework.exceptions import AuthenticationFailed

from console.auth import BearerTokenAuthentication
from console.views import ready_checks
from core.problems import problem_response
from core.roles import Can, can, refusal
from recovery.models import Job
from streams import lag, selectors, source_status
from streams.consumer_views import parked_counts
from streams.models import Consumer, Source

METRICS_TOKEN_ENV = "REPLAYDESK_METRICS_TOKEN"


# Jobs that failed this recently are counted in replaydesk_jobs_failed_last_hour.
FAILED_WINDOW = dt.timedelta(hours=1)
# Jobs in these states are counted in replaydesk_jobs (finished ones are history, not a figure to watch).
OPEN_STATES = (Job.State.PENDING_APPROVAL, Job.State.APPROVED, Job.State.QUEUED, Job.State.RUNNING)


class StoreCollector:
    """Reads the store on each collect(); registered in a registry of its own (no process metrics).
    `console_url` is where the console is reached (as the scraper asked for it), for the alerts' links."""

    def __init__(self, console_url: str):
        self.console_url = console_url

    def collect(self) -> Iterator[Metric]:
        yield self._info()
        yield from self._store()
        yield from consumer_extras()
        yield from source_metrics()
        yield from job_metrics(timezone.now())
        yield from readiness_metrics()

    def _info(self) -> Metric:
        info = GaugeMetricFamily(
            "replaydesk_console_info",
            "Always 1; its console_url label is the console's address, which alerts link to.",
            labels=["console_url"],
        )
        info.add_metric([self.console_url], 1)
        return info

    def _store(self) -> Iterator[Metric]:
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


def consumer_extras() -> Iterator[Metric]:
    """Each consumer's kind (an info metric to join on: a subscription's alerts say "subscription") and
    its parked events waiting for a retry or a skip."""
    info = GaugeMetricFamily(
        "replaydesk_consumer_info", "Always 1; the consumer's kind.", labels=["consumer", "kind"]
    )
    parked = GaugeMetricFamily(
        "replaydesk_consumer_parked_events",
        "The consumer's parked events waiting for a retry or a skip.",
        labels=["consumer"],
    )
    counts = parked_counts()
    for name, kind, pk in Consumer.objects.order_by("name").values_list("name", "kind", "pk"):
        info.add_metric([name, kind], 1)
        parked.add_metric([name], counts.get(pk, 0))
    yield info
    yield parked


def job_metrics(now: dt.datetime) -> Iterator[Metric]:
    """Jobs waiting or running by kind and state, each running job's progress, the jobs of each kind
    that failed in the last hour, approvals waiting and the oldest wait, and the last drill job."""
    jobs = GaugeMetricFamily(
        "replaydesk_jobs",
        "Jobs waiting for approval, approved, queued or running.",
        labels=["kind", "state"],
    )
    counted = {
        (row["kind"], row["state"]): row["n"]
        for row in Job.objects.filter(state__in=OPEN_STATES).values("kind", "state").annotate(n=Count("pk"))
    }
    for kind in Job.Kind.values:
        for state in OPEN_STATES:
            jobs.add_metric([kind, state], counted.get((kind, state), 0))
    yield jobs

    progress = GaugeMetricFamily(
        "replaydesk_job_progress_ratio",
        "A running job's work done, 0 to 1 (only jobs whose total is known).",
        labels=["job_id", "kind", "target"],
    )
    running = Job.objects.filter(state=Job.State.RUNNING, total__gt=0).values_list(
        "pk", "kind", "target", "done", "total"
    )
    for pk, kind, target, done, total in running:
        progress.add_metric([str(pk), kind, target], min(done / total, 1.0))
    yield progress

    failed = GaugeMetricFamily(
        "replaydesk_jobs_failed_last_hour", "Jobs that failed in the last hour.", labels=["kind"]
    )
    recent = dict(
        Job.objects.filter(state=Job.State.FAILED, finished_at__gte=now - FAILED_WINDOW)
        .values_list("kind")
        .annotate(n=Count("pk"))
    )
    for kind in Job.Kind.values:
        failed.add_metric([kind], recent.get(kind, 0))
    yield failed

    waiting = Job.objects.filter(state=Job.State.PENDING_APPROVAL).aggregate(
        n=Count("pk"), oldest=Min("created_at")
    )
    yield GaugeMetricFamily("replaydesk_approvals_waiting", "Jobs waiting for approval.", value=waiting["n"])
    yield GaugeMetricFamily(
        "replaydesk_approval_oldest_wait_seconds",
        "How long the oldest job waiting for approval has waited; 0 when none waits.",
        value=(now - waiting["oldest"]).total_seconds() if waiting["oldest"] else 0,
    )

    last = (
        Job.objects.filter(kind=Job.Kind.DRILL, state__in=Job.FINISHED, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", "state")
        .first()
    )
    # No drill has run: no sample, and the "no drill for too long" alert says so (absent()).
    if last is not None:
        yield GaugeMetricFamily(
            "replaydesk_drill_last_finished_timestamp_seconds",
            "When the last drill job ended (Unix time).",
            value=last[0].timestamp(),
        )
        yield GaugeMetricFamily(
            "replaydesk_drill_last_passed",
            "1 when the last drill job passed, 0 when not.",
            value=int(last[1] == Job.State.SUCCEEDED),
        )


def readiness_metrics() -> Iterator[Metric]:
    """/readyz's checks (the database, Redis, a live Celery worker), each 1 when it passes."""
    _, checks = ready_checks()
    ready = GaugeMetricFamily(
        "replaydesk_ready_check", "1 when /readyz's check passes, 0 when not.", labels=["check"]
    )
    for name, check in checks.items():
        ready.add_metric([name], 1 if check["ok"] else 0)
    yield ready


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
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(request.build_absolute_uri("/").rstrip("/")))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
