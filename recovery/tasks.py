"""Thin Celery tasks for jobs, on the `recovery` queue (live consumers have their own).

Each task carries only the job (and lane) and the slice number it expects; what to do is read from the
job's row, so a duplicated, stale or lost message costs nothing (the reconciler re-sends lost ones).
"""

from __future__ import annotations

from celery import shared_task

from recovery import runner, schedule


def enqueue_job(job_id: int) -> None:
    from recovery.models import Job

    slice_no = Job.objects.values_list("slice", flat=True).get(pk=job_id)
    runner.enqueue_slice(job_id, slice_no)


@shared_task(queue="recovery", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job_slice(job_id: int, slice_no: int) -> None:
    runner.run_slice(job_id, slice_no)


@shared_task(queue="recovery", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job_lane(job_id: int, lane: int, slice_no: int) -> None:
    runner.run_lane(job_id, lane, slice_no)


@shared_task(queue="default", ignore_result=True)
def notify_approvers(job_id: int) -> None:
    """Tell who may approve that a job waits for them (recovery/notify.py)."""
    from recovery import notify

    notify.notify_waiting(job_id)


@shared_task(queue="default", ignore_result=True)
def reconcile() -> None:
    """Re-send the nudge of every job whose heartbeat stopped; of every active job at once when Redis
    lost its data since the last run (a restart without persistence, a failover), since their queued
    nudges went with it and a job that never started would otherwise wait out the stale period."""
    runner.reconcile(stale_seconds=0.0 if runner.broker_forgot() else 30.0)


@shared_task(queue="default", ignore_result=True)
def scheduled_jobs() -> None:
    """Scheduled snapshots (with retention) and the nightly verification, when turned on."""
    schedule.run_schedule()
