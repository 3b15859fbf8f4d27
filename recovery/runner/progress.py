"""Progress, heartbeat, stages and success: what a kind reports while it works, written at most every
PROGRESS_EVERY_SECONDS per job whoever writes it."""

from __future__ import annotations

import time

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from core.audit import AuditType
from recovery import services
from recovery.kinds.base import kind_of
from recovery.models import Job, JobLane

# Progress and heartbeat are written at most this often per job, whoever writes them.
PROGRESS_EVERY_SECONDS = 0.5
# When this process last wrote each job's progress (time.monotonic()): within PROGRESS_EVERY_SECONDS of
# it, report knows without asking the database that it is too soon, so a loop of small batches pays for
# one statement in half a second rather than one a batch.
_written_at: dict[int, float] = {}


def cancel_requested(job: Job) -> bool:
    """Asked between batches: a cancel is honoured within a slice."""
    return Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).exists()


def report(job: Job, *, force: bool = False) -> bool:
    """Write the job's progress (done = its lanes' events; a job without lanes sets its own), the rate
    and ETA of the current stage, and the heartbeat, unless someone wrote them less than
    PROGRESS_EVERY_SECONDS ago. True when this call wrote them."""
    now, written_at = time.monotonic(), _written_at.get(job.pk)
    if not force and written_at is not None and now - written_at < PROGRESS_EVERY_SECONDS:
        return False
    own_transaction = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if own_transaction:
            # Progress and heartbeat alone: a write lost to a crash of the server is written again by
            # the next report, so it need not wait for the disk. Inside a caller's transaction (a job's
            # finish) the caller's durability holds.
            cursor.execute("SET LOCAL synchronous_commit TO off")
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
        written = cursor.rowcount == 1
    if written:
        if len(_written_at) > 100:  # a long-lived worker forgets the jobs it ran before
            _written_at.clear()
        _written_at[job.pk] = now
    return written


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
    report(job, force=True)
    services.transition(
        job,
        to=Job.State.SUCCEEDED,
        values={"finished_at": now, "result": result, "stage": "done", "heartbeat_at": now},
        message=message,
        audit=AuditType.JOB_SUCCEEDED,
        result=result,
    )
