"""The job runner: slices, lanes, progress, failure, cancellation. Each kind (recovery/kinds) only says
what it does; this package does the rest.

A job runs as a chain of slices (its main line) and, for parallel work, lanes (runner/slices.py). A slice
holds a session advisory lock named after the job (a lane, after the job and the lane) for as long as it
works: a duplicated delivery finds the lock taken, or finds the slice number moved on, and does nothing;
a killed worker's connection closes and its lock with it, so the next delivery (Celery's redelivery, or
the reconciler's, runner/reconcile.py) goes on from the last checkpoint. Checkpoints are written with
the effects they cover, in PostgreSQL; Celery carries only the nudges. Progress is runner/progress.py,
failures and retries runner/failures.py.
"""

from recovery.kinds.base import Step
from recovery.runner.failures import LOST_SESSION, LOST_SESSIONS_GIVE_UP, MAX_FAILURES, record_failure
from recovery.runner.progress import PROGRESS_EVERY_SECONDS, cancel_requested, finish, report, set_stage
from recovery.runner.reconcile import BROKER_MARK_KEY, broker_forgot, reconcile
from recovery.runner.slices import (
    enqueue_lane,
    enqueue_slice,
    inline,
    job_lock,
    run_inline,
    run_lane,
    run_slice,
    slice_seconds,
)

__all__ = [
    "BROKER_MARK_KEY",
    "LOST_SESSION",
    "LOST_SESSIONS_GIVE_UP",
    "MAX_FAILURES",
    "PROGRESS_EVERY_SECONDS",
    "Step",
    "broker_forgot",
    "cancel_requested",
    "enqueue_lane",
    "enqueue_slice",
    "finish",
    "inline",
    "job_lock",
    "record_failure",
    "reconcile",
    "report",
    "run_inline",
    "run_lane",
    "run_slice",
    "set_stage",
    "slice_seconds",
]
