"""The reconciler: nudges work whose owner died or whose message Redis lost. Redis carries nudges only;
what to do is read from the rows."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from recovery.kinds.base import kinds
from recovery.models import Job, JobLane
from recovery.runner.slices import enqueue_lane, enqueue_slice

# Left in Redis by the reconciler: when it is gone, so is everything else Redis held.
BROKER_MARK_KEY = "replaydesk:reconciler-mark"


def broker_forgot() -> bool:
    """True when Redis no longer holds the mark the last call left (it restarted empty, or this is the
    first call); the mark is set again, so one caller sees it."""
    from core.redis import client

    return bool(client().set(BROKER_MARK_KEY, timezone.now().isoformat(), nx=True))


def reconcile(*, stale_seconds: float = 30.0) -> list[int]:
    """Nudge every queued or running job whose heartbeat stopped (its worker died, or Redis lost its
    message), and every lane that stopped moving while the others went on. A nudge to work that is in
    fact going on finds its lock taken and does nothing. Returns the ids of the jobs nudged."""
    now = timezone.now()
    cutoff = now - timezone.timedelta(seconds=stale_seconds)
    stale = list(
        Job.objects.filter(state__in=Job.ACTIVE)
        .exclude(heartbeat_at__gt=cutoff)
        .exclude(heartbeat_at__isnull=True, queued_at__gt=cutoff)
        .values_list("pk", "slice")
    )
    for job_id, slice_no in stale:
        Job.objects.filter(pk=job_id).update(heartbeat_at=now)  # one nudge per stale period
        enqueue_slice(job_id, slice_no)
    in_lanes = Q(pk__in=[])
    for kind in kinds():
        in_lanes |= Q(job__kind=kind.name, job__stage__in=kind.lane_stages)
    stuck = list(
        JobLane.objects.filter(
            in_lanes, job__state=Job.State.RUNNING, finished=False, moved_at__lte=cutoff
        ).exclude(job_id__in=[job_id for job_id, _ in stale])
    )
    for lane in stuck:
        JobLane.objects.filter(pk=lane.pk).update(moved_at=now)
        enqueue_lane(lane.job_id, lane.lane, lane.slice)
    from recovery.approvals import queue_approved

    queue_approved()  # approved jobs whose projection or sink has come free
    return [job_id for job_id, _ in stale] + sorted({lane.job_id for lane in stuck})
