"""The job runner: slices, lanes, progress, failure, cancellation. Each kind only says what it does.

A job runs as a chain of slices (its main line) and, for parallel work, lanes. A slice holds a session
advisory lock named after the job (a lane, after the job and the lane) for as long as it works: a
duplicated delivery finds the lock taken, or finds the slice number moved on, and does nothing; a
killed worker's connection closes and its lock with it, so the next delivery (Celery's redelivery, or
the reconciler's) goes on from the last checkpoint. Checkpoints are written with the effects they
cover, in PostgreSQL; Celery carries only the nudges.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from recovery import services
from recovery.kinds.base import JobKind, Step, kind_of, kinds
from recovery.models import Job, JobLane, JobLogLine

logger = logging.getLogger(__name__)

MAX_FAILURES = 3
# Lost database sessions are retried, with pauses that grow, until they have gone on this long without
# the job making progress; then the job fails.
LOST_SESSIONS_GIVE_UP = dt.timedelta(minutes=15)
LOST_SESSION = "lost its database session,"
# A message that finds its job (or lane) held by another delivery comes back after this long.
BUSY_AGAIN_SECONDS = 1.0
# Parts of a job (lanes) that fail within this long of each other count as one failed attempt. Shorter
# than the pause before the first retry (2 s).
SAME_FAILURE = dt.timedelta(seconds=1)
# Progress and heartbeat are written at most this often per job, whoever writes them.
PROGRESS_EVERY_SECONDS = 0.5


def slice_seconds() -> float:
    return settings.REPLAYDESK_JOB_SLICE_SECONDS


def lock_key(job_id: int, lane: int | None = None) -> int:
    name = f"job:{job_id}" if lane is None else f"job:{job_id}:lane:{lane}"
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def held(key: int) -> Iterator[bool]:
    """A session advisory lock, tried once; released at the end (or with the connection, if it dies)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
            except Exception:  # noqa: BLE001 — a broken connection has released it already
                connection.close()


def run_slice(job_id: int, expected_slice: int) -> None:
    with held(lock_key(job_id)) as got:
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
            _failed_slice(job, exc, again, where="main line")
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
    with held(lock_key(job_id, lane_no)) as got:
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
            _failed_slice(
                job,
                exc,
                lambda delay: enqueue_lane(job_id, lane_no, expected_slice, countdown=delay),
                where=f"lane {lane_no}",
            )
            return
        JobLane.objects.filter(pk=lane.pk, slice=expected_slice).update(slice=F("slice") + 1)
        if not lane.finished:
            enqueue_lane(job_id, lane_no, expected_slice + 1)
        elif not JobLane.objects.filter(job_id=job_id, finished=False).exists():
            enqueue_slice(job_id, Job.objects.values_list("slice", flat=True).get(pk=job_id))


def cancel_requested(job: Job) -> bool:
    """Asked between batches: a cancel is honoured within a slice."""
    return Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).exists()


def report(job: Job, *, force: bool = False) -> bool:
    """Write the job's progress (done = its lanes' events; a job without lanes sets its own), the rate
    and ETA of the current stage, and the heartbeat, unless someone wrote them less than
    PROGRESS_EVERY_SECONDS ago. True when this call wrote them."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE recovery_job j
               SET done = x.done,
                   rate = CASE WHEN x.done > j.stage_done
                       THEN (x.done - j.stage_done)
                            / GREATEST(extract(epoch FROM now() - j.stage_started_at), 0.001) END,
                   eta_seconds = CASE WHEN x.done > j.stage_done AND j.total IS NOT NULL
                       THEN GREATEST(j.total - x.done, 0) * extract(epoch FROM now() - j.stage_started_at)
                            / (x.done - j.stage_done) END,
                   heartbeat_at = now(), progress_at = now()
              FROM (SELECT CASE WHEN count(*) > 0 THEN sum(done) END AS lanes_done
                      FROM recovery_joblane WHERE job_id = %s) l,
                   LATERAL (SELECT COALESCE(l.lanes_done, (SELECT done FROM recovery_job WHERE id = %s))
                              AS done) x
             WHERE j.id = %s
               AND (%s OR j.progress_at IS NULL OR j.progress_at <= now() - make_interval(secs => %s))
            """,
            [job.pk, job.pk, job.pk, force, PROGRESS_EVERY_SECONDS],
        )
        return cursor.rowcount == 1


def set_stage(job: Job, stage: str, *, total: int | None = None, work: dict | None = None) -> None:
    """Enter a stage (in the caller's transaction): progress counts from here."""
    job.stage, job.stage_started_at = stage, timezone.now()
    # The stage's rate counts from what was done when it began.
    lanes = JobLane.objects.filter(job=job).aggregate(done=Sum("done"))["done"]
    job.stage_done = lanes if lanes is not None else Job.objects.values_list("done", flat=True).get(pk=job.pk)
    fields = ["stage", "stage_started_at", "stage_done"]
    if total is not None:
        job.total = total
        fields.append("total")
    if work is not None:
        job.work = work
        fields.append("work")
    Job.objects.filter(pk=job.pk).update(**{field: getattr(job, field) for field in fields})
    services.log(job, f"stage: {stage}" + (f" ({total} {kind_of(job).unit})" if total is not None else ""))


def finish(job: Job, *, result: dict, message: str) -> None:
    """Succeeded (in the caller's transaction, with whatever made it so)."""
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        state=Job.State.SUCCEEDED, finished_at=now, result=result, stage="done", heartbeat_at=now
    )
    job.state, job.result = Job.State.SUCCEEDED, result
    report(job, force=True)
    services.log(job, message)
    services.record(job, "JobSucceeded", "system", result=result)


def _start(job: Job) -> bool:
    """queued → running, in one transaction that checks the approvals again: a job forged into queued,
    or whose approvals lapsed or no longer match its parameters, goes back to waiting for approval."""
    from recovery.approvals import approvals_hold

    with transaction.atomic():
        current = Job.objects.select_for_update().filter(pk=job.pk, state=Job.State.QUEUED).first()
        if current is None:
            return False
        if not approvals_hold(current):
            Job.objects.filter(pk=job.pk).update(state=Job.State.PENDING_APPROVAL, queued_at=None)
            services.log(
                current,
                "not started: its approvals are missing, expired or for other parameters; approve it again",
                level="warning",
            )
            services.record(current, "JobStartRefused", "system", reason="approvals do not hold")
            return False
        now = timezone.now()
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.RUNNING, heartbeat_at=now, started_at=current.started_at or now
        )
        job.refresh_from_db()
        services.log(job, "started")
        services.record(job, "JobStarted", "system")
    return True


def _cancel(job: Job, kind: JobKind) -> None:
    kind.cancelled(job)
    with transaction.atomic():
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.CANCELLED, finished_at=timezone.now(), stage="cancelled"
        )
        services.log(job, f"cancelled (asked by {job.cancel_requested_by}) during {job.stage or 'start'}")
        services.record(job, "JobCancelled", job.cancel_requested_by or "system")


def _failed_slice(job: Job, exc: Exception, again: Callable[[float], None], *, where: str) -> None:
    """A slice raised: try it again (with a pause) up to MAX_FAILURES times in a row, then fail the job.
    A lost database session is no failure of the work: it is tried again, with a pause of a tenth of the
    time sessions have been lost without progress (1 to 30 s), until that is LOST_SESSIONS_GIVE_UP.
    A failed job keeps its checkpoints; retrying it goes on from them."""
    error = _describe(exc)
    logger.warning("job %s: slice failed: %s", job.pk, error)
    lost = _session_lost(exc)
    try:
        connection.close()  # whatever the error did to the connection, the next step starts clean
    except Exception:  # noqa: BLE001
        pass
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.state != Job.State.RUNNING:
            return
        if lost:
            # The database ended the session (a restart, a failover, pg_terminate_backend): the work did
            # not fail, and parallel lanes losing their sessions at once must not use up the attempts.
            # But a database that goes on ending sessions must not keep a job retrying for ever.
            streak = _lost_sessions_for(current)
            if streak < LOST_SESSIONS_GIVE_UP.total_seconds():
                pause = min(max(1.0, streak / 10), 30.0)
                services.log(job, f"{LOST_SESSION} trying again in {pause:.0f} s: {error}", level="warning")
                transaction.on_commit(lambda: again(pause))
                return
            error = (
                f"the database ended this job's sessions again and again for {streak / 60:.0f} minutes "
                f"without progress; retry the job once the database is stable. The last: {error}"
            )
        final = lost or getattr(exc, "final", False)
        if not final and _same_failure_elsewhere(current, where):
            # Another lane failed a moment ago and this one had not: most likely one cause (a database
            # error, a poisoned batch of the same kind). One attempt of the job, not one per lane, or
            # parallel lanes would use the attempts up at once.
            services.log(job, f"{where} failed too: {error}", level="warning")
            transaction.on_commit(lambda: again(min(2.0**current.failures, 30.0)))
            return
        failures = current.failures + 1
        if failures < MAX_FAILURES and not final:
            Job.objects.filter(pk=job.pk).update(failures=failures, error=error)
            services.log(job, f"attempt {failures} failed ({where}), trying again: {error}", level="warning")
            transaction.on_commit(lambda: again(min(2.0**failures, 30.0)))
            return
        Job.objects.filter(pk=job.pk).update(
            state=Job.State.FAILED, failures=failures, error=error, finished_at=timezone.now()
        )
        services.log(job, f"failed: {error}", level="error")
        services.record(job, "JobFailed", "system", error=error[:2000])


def _same_failure_elsewhere(job: Job, where: str) -> bool:
    """Whether another part of the job counted a failure within SAME_FAILURE, while this part did not
    fail in that time. SAME_FAILURE is shorter than the first retry's pause, so a part's own retry
    failing again always counts."""
    if not job.failures:
        return False
    recent = JobLogLine.objects.filter(job=job, level="warning", at__gte=timezone.now() - SAME_FAILURE)
    own = recent.filter(
        Q(message__startswith="attempt ", message__contains=f"({where})")
        | Q(message__startswith=f"{where} failed too:")
    )
    counted = recent.filter(message__startswith="attempt ").exclude(message__contains=f"({where})")
    return counted.exists() and not own.exists()


def _lost_sessions_for(job: Job) -> float:
    """Seconds since the first session this job lost after its last progress (0: this is the first)."""
    since = job.progress_at or job.started_at or timezone.now()
    first = (
        JobLogLine.objects.filter(job=job, at__gt=since, message__startswith=LOST_SESSION)
        .order_by("at")
        .values_list("at", flat=True)
        .first()
    )
    return 0.0 if first is None else (timezone.now() - first).total_seconds()


def _session_lost(exc: BaseException) -> bool:
    """Whether the error, or one it came from, says the database session went away: a connection
    exception (SQLSTATE class 08), a server shutting sessions down (57P0x), or a connection psycopg found
    closed (no SQLSTATE). A cancelled statement or a failed query is not."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.OperationalError) and (
            exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _describe(exc: Exception) -> str:
    if exc.__class__.__module__.startswith("recovery"):
        return str(exc)[:4000]
    return "".join(traceback.format_exception_only(exc)).strip()[:4000]


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


# Left in Redis by the reconciler: when it is gone, so is everything else Redis held.
BROKER_MARK_KEY = "replaydesk:reconciler-mark"


def broker_forgot() -> bool:
    """True when Redis no longer holds the mark the last call left (it restarted empty, or this is the
    first call); the mark is set again, so one caller sees it."""
    from console.redis import client

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
