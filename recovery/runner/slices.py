"""Slices and lanes: a job's main line runs as a chain of slices, its parallel work as lanes, each under
a session advisory lock named after it. A duplicated delivery finds the lock taken, or finds the slice
number moved on, and does nothing; a killed worker's connection closes and its lock with it, so the next
delivery (Celery's redelivery, or the reconciler's) goes on from the last checkpoint."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.audit import AuditType
from core.locks import held, lock_key
from recovery import services
from recovery.kinds.base import JobKind, Step, kind_of
from recovery.models import Job, JobLane
from recovery.runner.failures import record_failure

# A message that finds its job (or lane) held by another delivery comes back after this long.
BUSY_AGAIN_SECONDS = 1.0


def slice_seconds() -> float:
    return settings.REPLAYDESK_JOB_SLICE_SECONDS


def job_lock(job_id: int, lane: int | None = None) -> int:
    """The advisory lock a slice of the job (or of one of its lanes) holds while it works."""
    return lock_key("job", job_id) if lane is None else lock_key("job", job_id, "lane", lane)


def run_slice(job_id: int, expected_slice: int) -> None:
    with held(job_lock(job_id)) as got:
        if not got:
            # Another delivery holds the job. It may be a stale duplicate that stops at once, so the
            # message of the current slice comes back in a moment instead of being lost.
            if Job.objects.filter(pk=job_id, slice=expected_slice, state__in=Job.ACTIVE).exists():
                enqueue_slice(job_id, expected_slice, countdown=BUSY_AGAIN_SECONDS)
            return
        job = Job.objects.filter(pk=job_id).first()
        if job is None or job.state not in Job.ACTIVE or job.slice != expected_slice:
            return
        if job.state == Job.State.QUEUED and not _start(job):
            return
        kind = kind_of(job)
        if job.cancel_requested_at is not None:
            _cancel(job, kind)
            return
        try:
            step = kind.main(job, time.monotonic() + slice_seconds())
        except Exception as exc:
            again = lambda delay: enqueue_slice(job.pk, expected_slice, countdown=delay)  # noqa: E731
            record_failure(job, exc, retry=again, where="main line")
            return
        advanced = Job.objects.filter(pk=job.pk, slice=expected_slice).update(
            slice=F("slice") + 1, failures=0
        )
        if not advanced or step is Step.DONE:
            return
        if step is Step.LANES:
            for lane in JobLane.objects.filter(job=job, finished=False):
                enqueue_lane(job.pk, lane.lane, lane.slice)
            if not JobLane.objects.filter(job=job, finished=False).exists():
                enqueue_slice(job.pk, expected_slice + 1)
        elif step is Step.AGAIN:
            enqueue_slice(job.pk, expected_slice + 1)


def run_lane(job_id: int, lane_no: int, expected_slice: int) -> None:
    with held(job_lock(job_id, lane_no)) as got:
        if not got:
            # As for a slice: the holder may be a stale duplicate of this lane's message.
            if JobLane.objects.filter(
                job_id=job_id,
                lane=lane_no,
                slice=expected_slice,
                finished=False,
                job__state=Job.State.RUNNING,
            ).exists():
                enqueue_lane(job_id, lane_no, expected_slice, countdown=BUSY_AGAIN_SECONDS)
            return
        job = Job.objects.filter(pk=job_id).first()
        lane = JobLane.objects.filter(job_id=job_id, lane=lane_no).first()
        if job is None or lane is None or job.state != Job.State.RUNNING:
            return
        if lane.slice != expected_slice or lane.finished:
            return
        if job.cancel_requested_at is not None:
            enqueue_slice(job.pk, job.slice)  # the main line finishes the cancellation
            return
        try:
            kind_of(job).lane(job, lane, time.monotonic() + slice_seconds())
        except Exception as exc:
            record_failure(
                job,
                exc,
                retry=lambda delay: enqueue_lane(job_id, lane_no, expected_slice, countdown=delay),
                where=f"lane {lane_no}",
            )
            return
        JobLane.objects.filter(pk=lane.pk, slice=expected_slice).update(slice=F("slice") + 1)
        if not lane.finished:
            enqueue_lane(job_id, lane_no, expected_slice + 1)
        elif not JobLane.objects.filter(job_id=job_id, finished=False).exists():
            enqueue_slice(job_id, Job.objects.values_list("slice", flat=True).get(pk=job_id))


def _start(job: Job) -> bool:
    """queued → running, in one transaction that checks the approvals again: a job forged into queued,
    or whose approvals lapsed or no longer match its parameters, goes back to waiting for approval."""
    from recovery.approvals import approvals_hold

    with transaction.atomic():
        current = Job.objects.select_for_update().filter(pk=job.pk, state=Job.State.QUEUED).first()
        if current is None:
            return False
        if not approvals_hold(current):
            services.transition(
                current,
                to=Job.State.PENDING_APPROVAL,
                values={"queued_at": None},
                message="not started: its approvals are missing, expired or for other parameters; "
                "approve it again",
                level="warning",
                audit=AuditType.JOB_START_REFUSED,
                reason="approvals do not hold",
            )
            return False
        now = timezone.now()
        services.transition(
            current,
            to=Job.State.RUNNING,
            values={"heartbeat_at": now, "started_at": current.started_at or now},
            message="started",
            audit=AuditType.JOB_STARTED,
        )
        job.refresh_from_db()
    return True


def _cancel(job: Job, kind: JobKind) -> None:
    kind.cancelled(job)
    with transaction.atomic():
        services.transition(
            job,
            to=Job.State.CANCELLED,
            values={"finished_at": timezone.now(), "stage": "cancelled"},
            message=f"cancelled (asked by {job.cancel_requested_by}) during {job.stage or 'start'}",
            audit=AuditType.JOB_CANCELLED,
            actor=job.cancel_requested_by or "system",
        )


# While set, nudges are not sent: run_inline does the work in this process instead.
_inline: contextvars.ContextVar[bool] = contextvars.ContextVar("recovery_inline", default=False)


@contextmanager
def inline() -> Iterator[None]:
    """Within it, jobs are not handed to Celery (request one here, then run_inline it)."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


def runs_here() -> bool:
    """Whether a job requested now is to run in this process (within inline(), or run_inline)."""
    return _inline.get()


def run_inline(job_id: int, *, max_steps: int = 100_000) -> Job:
    """Run a job to its end in this process, reading what to do next from its row as the reconciler
    does (the command line's --inline, and tests). Returns the finished job."""
    token = _inline.set(True)
    try:
        for _ in range(max_steps):
            job = Job.objects.get(pk=job_id)
            if job.state not in Job.ACTIVE:
                return job
            lanes = list(JobLane.objects.filter(job=job, finished=False).order_by("lane"))
            if job.state == Job.State.RUNNING and job.stage in kind_of(job).lane_stages and lanes:
                for lane in lanes:
                    run_lane(job.pk, lane.lane, lane.slice)
            else:
                run_slice(job.pk, job.slice)
        raise RuntimeError(f"job {job_id} did not finish in {max_steps} steps")
    finally:
        _inline.reset(token)


def enqueue_slice(job_id: int, slice_no: int, *, countdown: float = 0) -> None:
    from recovery.tasks import run_job_slice

    if _inline.get():
        return
    run_job_slice.apply_async((job_id, slice_no), queue="recovery", countdown=countdown or None)


def enqueue_lane(job_id: int, lane: int, slice_no: int, *, countdown: float = 0) -> None:
    from recovery.tasks import run_job_lane

    if _inline.get():
        return
    run_job_lane.apply_async((job_id, lane, slice_no), queue="recovery", countdown=countdown or None)
