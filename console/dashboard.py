"""The dashboard: the head, appends per minute, every consumer's lag and health, how many sources are in
each health, the jobs that run and the approvals that wait. Its live part polls itself through htmx
(console/partials/dashboard_live.html).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from core.pages import render_page, role_required
from recovery import approvals
from recovery import selectors as recovery_selectors
from streams import lag, selectors, source_status
from streams.models import Event

# An append open this long is named on the dashboard: every consumer waits below its position.
OPEN_APPEND_NOTICE_SECONDS = 5.0


@dataclass(frozen=True)
class AppendRate:
    """Events recorded in the last minute and the last ten, by recorded_at: an import that keeps the
    original times of its events adds nothing here, which is the truth about appends now."""

    last_minute: int
    last_ten_minutes: int
    last_recorded_at: dt.datetime | None

    @property
    def per_second_minute(self) -> float:
        return self.last_minute / 60

    @property
    def per_second_ten_minutes(self) -> float:
        return self.last_ten_minutes / 600


def append_rate(*, now: dt.datetime) -> AppendRate:
    found = Event.objects.filter(recorded_at__gt=now - dt.timedelta(minutes=10)).aggregate(
        ten=Count("position"), one=Count("position", filter=Q(recorded_at__gt=now - dt.timedelta(minutes=1)))
    )
    newest = Event.objects.aggregate(at=Max("recorded_at"))["at"]
    return AppendRate(found["one"], found["ten"], newest)


@require_safe
@role_required
def dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    open_appends = selectors.open_appends()
    context = {
        "section": "dashboard",
        "head": selectors.head(),
        "open_appends": open_appends,
        "appends_held": open_appends.oldest_seconds >= OPEN_APPEND_NOTICE_SECONDS,
        "rate": append_rate(now=now),
        "statuses": lag.consumer_statuses(now=now),
        "source_healths": source_status.health_counts(source_status.source_statuses()),
        "now": now,
        "running_jobs": recovery_selectors.running_jobs(),
        "pending_approvals": approvals.pending_count(),
    }
    return render_page(request, "console/dashboard.html", "console/partials/dashboard_live.html", context)
