"""Writes about jobs: request, cancel, retry, and the rollback of a swapped projection.

Each runs in one transaction with its audit event (category `console`); Celery is nudged on commit.
State machine: pending_approval → approved → queued → running → succeeded | failed | cancelled, with
rejected from pending_approval. A kind that needs no approval starts at queued. Every change of a job's
state, whoever makes it (these services, the approvals, the runner), goes through `transition`, which
checks it against TRANSITIONS.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from core.audit import AuditType
from core.locks import lock_key
from recovery import params as job_params
from recovery.kinds import base as registry
from recovery.models import Job, JobLogLine
from streams import audit
from streams.projections import get_projection, quote

logger = logging.getLogger(__name__)

MAX_REASON = 2000
# Who asks for the jobs the console starts by itself (recovery/schedule.py); they are told apart by
# Job.scheduled, not by this name, which a person may have too.
SCHEDULER = "schedule"

_S = Job.State
TRANSITIONS: dict[str, frozenset[str]] = {
    _S.PENDING_APPROVAL: frozenset({_S.APPROVED, _S.REJECTED, _S.CANCELLED}),
    # Back to waiting when its parameters change; rejected while it waits for its target.
    _S.APPROVED: frozenset({_S.QUEUED, _S.PENDING_APPROVAL, _S.REJECTED, _S.CANCELLED}),
    # Back to waiting when the approvals no longer hold as it starts.
    _S.QUEUED: frozenset({_S.RUNNING, _S.PENDING_APPROVAL, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED}),
    # A retry goes on from the last checkpoint.
    _S.FAILED: frozenset({_S.QUEUED}),
    _S.SUCCEEDED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
}


class JobError(Exception):
    """An action on a job that cannot be done now; the message says why."""


class JobConflict(JobError):
    """Another job holds the same projection or sink."""

    def __init__(self, message: str, job: Job):
        super().__init__(message)
        self.job = job


def approvals_required(kind: str) -> int:
    """Approvals (by people other than the requester) a kind needs before it may run: the kind's own
    default unless REPLAYDESK_APPROVALS overrides it (an unknown kind needs one, to be safe)."""
    found = registry.get(kind)
    default = found.approvals if found is not None else 1
    return int(settings.REPLAYDESK_APPROVALS_REQUIRED.get(kind, default))


class TransitionRefused(JobError):
    """A change of state the state machine does not allow, or one another writer got to first."""


def transition(
    job: Job,
    *,
    to: str,
    values: dict[str, Any] | None = None,
    message: str = "",
    level: str = "info",
    audit: AuditType | None = None,
    actor: str = "system",
    request: HttpRequest | None = None,
    **audit_data: Any,
) -> None:
    """Move `job` from the state it was read in to `to` (in the caller's transaction): checked against
    TRANSITIONS, written only if the row is still in that state (TransitionRefused if not), with the
    other columns in `values`; then the log line `message` and the audit event `audit`, when given."""
    source = job.state
    if to not in TRANSITIONS[source]:
        raise TransitionRefused(f"job {job.pk} cannot go from {source} to {to}")
    changes = {"state": to, **(values or {})}
    if not Job.objects.filter(pk=job.pk, state=source).update(**changes):
        raise TransitionRefused(f"job {job.pk} is no longer {source}")
    for field, value in changes.items():
        setattr(job, field, value)
    if message:
        log(job, message, level=level)
    if audit is not None:
        record(job, audit, actor, request, **audit_data)


def request_job(
    *,
    kind: str,
    params: dict[str, Any],
    requested_by: str,
    reason: str,
    request: HttpRequest | None = None,
    scheduled: bool = False,
) -> Job:
    reason = (reason or "").strip()
    errors: dict[str, list[str]] = {}
    if not reason:
        errors["reason"] = ["say why this job should run (it is shown to whoever approves it)"]
    elif len(reason) > MAX_REASON:
        errors["reason"] = [f"at most {MAX_REASON} characters"]
    try:
        canonical = job_params.check(kind, params)
    except job_params.JobParamsError as exc:
        raise job_params.JobParamsError({**errors, **exc.errors}) from None
    if errors:
        raise job_params.JobParamsError(errors)
    target = job_params.target_of(kind, canonical)
    queued = approvals_required(kind) == 0  # else it waits for approval (recovery/approvals.py)
    try:
        with transaction.atomic():
            if queued:
                _refuse_if_busy(target)
            job = Job.objects.create(
                kind=kind,
                target=target,
                params=canonical,
                params_sha256=job_params.params_sha256(canonical),
                state=Job.State.QUEUED if queued else Job.State.PENDING_APPROVAL,
                reason=reason,
                requested_by=requested_by,
                requested_by_user=_account(request, requested_by),
                scheduled=scheduled,
                queued_at=timezone.now() if queued else None,
            )
            record(job, AuditType.JOB_REQUESTED, requested_by, request, reason=reason, params=canonical)
            if queued:
                record(job, AuditType.JOB_QUEUED, requested_by, request)
                transaction.on_commit(lambda: nudge(job))
            else:
                transaction.on_commit(lambda: tell_approvers(job))
    except IntegrityError:
        # Two requests raced past the check; the constraint let one through.
        _refuse_if_busy(target)
        raise JobError(
            f"another job took {target} at the same moment and has finished since; try again"
        ) from None
    return job


def cancel_job(*, job_id: int, actor: str, request: HttpRequest | None = None) -> Job:
    """A job not yet running is cancelled at once; a running one stops at its next batch."""
    with transaction.atomic():
        job = _locked(job_id)
        if job.finished:
            raise JobError(f"job {job.pk} has {job.state} already")
        if job.cancel_requested_at is not None:
            raise JobError(f"job {job.pk} is being cancelled already (asked by {job.cancel_requested_by})")
        asked = {"cancel_requested_at": timezone.now(), "cancel_requested_by": actor}
        if job.state == Job.State.RUNNING:
            # Not a change of state yet: the runner stops at its next batch and cancels it then.
            Job.objects.filter(pk=job.pk).update(**asked)
            job.cancel_requested_at, job.cancel_requested_by = asked.values()
            log(job, f"cancel asked by {actor}; stopping at the next batch")
            record(job, AuditType.JOB_CANCEL_REQUESTED, actor, request)
            transaction.on_commit(lambda: nudge(job))
        else:
            transition(
                job,
                to=Job.State.CANCELLED,
                values={**asked, "finished_at": timezone.now()},
                message=f"cancelled by {actor} before it started",
                audit=AuditType.JOB_CANCELLED,
                actor=actor,
                request=request,
            )
    return job


def retry_job(*, job_id: int, actor: str, request: HttpRequest | None = None) -> Job:
    """Queue a failed job again; it goes on from its last checkpoint, not from the start."""
    try:
        with transaction.atomic():
            job = _locked(job_id)
            if job.state != Job.State.FAILED:
                raise JobError(f"only a failed job can be retried; job {job.pk} is {job.state}")
            _refuse_if_busy(job.target)
            transition(
                job,
                to=Job.State.QUEUED,
                values={
                    "failures": 0,
                    "finished_at": None,
                    "queued_at": timezone.now(),
                    "heartbeat_at": None,
                },
                message=f"retried by {actor} from its last checkpoint (stage {job.stage or 'start'})",
                audit=AuditType.JOB_RETRIED,
                actor=actor,
                request=request,
                previous_error=job.error[:500],
            )
            transaction.on_commit(lambda: nudge(job))
    except IntegrityError:
        _refuse_if_busy(job.target)
        raise JobError(
            f"another job took {job.target} at the same moment and has finished since; try again"
        ) from None
    return job


def rollback_projection(
    *, projection: str, actor: str, reason: str = "", request: HttpRequest | None = None
) -> str:
    """Swap a projection back to the schema the last replay or restore replaced (and that one becomes the
    previous, so a rollback can itself be rolled back). The live runner catches it up from its own
    checkpoint. Returns the name of the schema now live."""
    found = get_projection(projection)
    if found is None:
        raise JobError(f"no projection is named {projection!r}")
    live, previous = found.schema, previous_schema(found.schema)
    with transaction.atomic(), connection.cursor() as cursor:
        if Job.objects.filter(target=projection, state__in=Job.ACTIVE).exists():
            raise JobError(f"a job is working on {projection}; wait for it or cancel it first")
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("consumer", projection)])
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [previous])
        if cursor.fetchone() is None:
            raise JobError(f"{projection} has no previous schema to roll back to (no replay has swapped it)")
        swap_aside = f"{live}__swap"
        cursor.execute(f"ALTER SCHEMA {quote(live)} RENAME TO {quote(swap_aside)}")
        cursor.execute(f"ALTER SCHEMA {quote(previous)} RENAME TO {quote(live)}")
        cursor.execute(f"ALTER SCHEMA {quote(swap_aside)} RENAME TO {quote(previous)}")
        audit.record(
            subject=f"consumer.{projection}",
            type=AuditType.PROJECTION_ROLLED_BACK,
            actor=actor,
            data={"consumer": projection, "reason": reason.strip()[:MAX_REASON]},
            request=request,
        )
    from streams.tasks import enqueue_consumer

    transaction.on_commit(lambda: enqueue_consumer(projection))
    return live


def previous_schema(live: str) -> str:
    return f"{live}__previous"


def log(job: Job, message: str, *, level: str = "info") -> None:
    JobLogLine.objects.create(job=job, message=message[:4000], level=level)


def record(job: Job, type: AuditType, actor: str, request: HttpRequest | None = None, **data: Any) -> None:
    """The audit event of a job's state change, in the caller's transaction."""
    payload = {"job": job.pk, "kind": job.kind, "target": job.target, "params_sha256": job.params_sha256}
    audit.record(subject=f"job.{job.pk}", type=type, actor=actor, data={**payload, **data}, request=request)


def _account(request: HttpRequest | None, name: str) -> Any:
    """The signed-in account behind a request made in its own name (pages and API), else None."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.get_username() == name:
        return user
    return None


def _refuse_if_busy(target: str) -> None:
    busy = Job.objects.filter(target=target, state__in=Job.ACTIVE).order_by("pk").first()
    if busy is not None:
        raise JobConflict(
            f"job {busy.pk} ({busy.kind}, {busy.state}) is working on {target}; one job at a time per "
            "projection or sink: wait for it or cancel it",
            busy,
        )


def _locked(job_id: int) -> Job:
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        raise JobError(f"no job has id {job_id}")
    return job


def tell_approvers(job: Job) -> None:
    """A Celery task tells them (recovery/notify.py); a broker that is down costs the notice, not the
    request, which the inbox and the menu's count show anyway."""
    from recovery.tasks import notify_approvers

    try:
        notify_approvers.delay(job.pk)
    except Exception:  # kombu's errors of an unreachable broker
        logger.warning("approvers of job %s were not told: the broker is unreachable", job.pk, exc_info=True)


def nudge(job: Job) -> None:
    from recovery.tasks import enqueue_job

    enqueue_job(job.pk)
