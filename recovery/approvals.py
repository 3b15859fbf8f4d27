"""Four-eyes approvals: a dangerous job runs only after someone other than its requester approves exactly
the parameters it will run with.

Every path (page, API, Django admin, bulk action) goes through these functions, so the rules hold
whatever the caller: the approver needs the approve permission, is not the requester, and approves the
sha256 of the parameters they saw. Approvals expire. The transaction that starts a job checks them again
(recovery/runner/slices.py), so a job forged into `queued` without them, or whose approvals lapsed while it
waited, goes back to pending_approval instead of running. Refusals are audited too.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from core.audit import AuditType
from core.roles import Can, can
from recovery import params as job_params
from recovery import services
from recovery.models import Approval, Job
from recovery.services import JobError

MAX_COMMENT = 2000
WAITING = (Job.State.PENDING_APPROVAL, Job.State.APPROVED)


class ApprovalRefused(JobError):
    """An approval or rejection that the rules do not allow; the message says which rule."""


class _Refusal(ApprovalRefused):
    """A refused attempt, carrying what its audit event needs."""

    def __init__(self, job: Job, name: str, request, why: str, attempted: str, data: dict):
        super().__init__(why)
        self.job, self.name, self.request, self.attempted, self.data = job, name, request, attempted, data


def _refuse(job: Job, name: str, request, why: str, attempted: str, **data: Any) -> None:
    raise _Refusal(job, name, request, why, attempted, data)


def _audited(decide):
    """Refusals are audited after the refused transaction has rolled back, in one of their own."""

    @functools.wraps(decide)
    def wrapper(**kwargs):
        try:
            return decide(**kwargs)
        except _Refusal as refusal:
            services.record(
                refusal.job,
                AuditType.JOB_APPROVAL_REFUSED,
                refusal.name,
                refusal.request,
                attempted=refusal.attempted,
                reason=str(refusal),
                **refusal.data,
            )
            raise ApprovalRefused(str(refusal)) from None

    return wrapper


def approval_lifetime() -> dt.timedelta:
    return dt.timedelta(hours=settings.REPLAYDESK_APPROVAL_HOURS)


def valid_approvals(job: Job, *, now: dt.datetime | None = None) -> list[Approval]:
    """The approvals that count now: yes, for these very parameters, unexpired, not the requester's."""
    return counting(job, list(job.approvals.all()), now=now)


def person(approval: Approval) -> str | int:
    """Who gave an approval: their account when known (a renamed account is still the same person)."""
    return approval.approver_user_id if approval.approver_user_id is not None else approval.approver


def is_requester(job: Job, *, name: str, user_id: int | None) -> bool:
    """Whether this account or name asked for the job (by account when both are known)."""
    if user_id is not None and job.requested_by_user_id is not None:
        return user_id == job.requested_by_user_id
    return name == job.requested_by


def counting(job: Job, decisions: list[Approval], *, now: dt.datetime | None = None) -> list[Approval]:
    """valid_approvals, picked from decisions already read (a page of jobs prefetches them all)."""
    now = now or timezone.now()
    return sorted(
        (
            a
            for a in decisions
            if a.decision == Approval.Decision.APPROVE
            and a.params_sha256 == job.params_sha256
            and a.expires_at > now
            and not is_requester(job, name=a.approver, user_id=a.approver_user_id)
        ),
        key=lambda a: a.created_at,
    )


def approvals_hold(job: Job) -> bool:
    needed = services.approvals_required(job.kind)
    return needed == 0 or len({person(a) for a in valid_approvals(job)}) >= needed


@_audited
def approve_job(
    *,
    job_id: int,
    approver: AbstractBaseUser,
    params_sha256: str,
    comment: str = "",
    request: HttpRequest | None = None,
) -> Job:
    """Approve the job whose parameters hash to `params_sha256` (what the approver was shown)."""
    name = approver.get_username()
    with transaction.atomic():
        job = _waiting(job_id)
        _check_approver(job, approver, "approve", request)
        if params_sha256 != job.params_sha256:
            _refuse(
                job,
                name,
                request,
                "the job's parameters changed since they were shown to you; look at them again and approve "
                "what will run now",
                attempted="approve",
                shown_sha256=params_sha256,
            )
        if job.state == Job.State.APPROVED:
            raise ApprovalRefused(f"job {job.pk} is approved already and waits for its target to be free")
        mine = Q(approver=name) | Q(approver_user_id=approver.pk)
        if job.approvals.filter(mine, params_sha256=job.params_sha256, decision="approve").exists():
            raise ApprovalRefused(f"you approved job {job.pk} already; it needs someone else's approval")
        try:
            with transaction.atomic():
                Approval.objects.create(
                    job=job,
                    approver=name,
                    approver_user_id=approver.pk,
                    decision=Approval.Decision.APPROVE,
                    params_sha256=job.params_sha256,
                    comment=_comment(comment),
                    expires_at=timezone.now() + approval_lifetime(),
                )
        except IntegrityError:
            raise ApprovalRefused(f"you approved job {job.pk} already") from None
        services.log(job, f"approved by {name}" + (f": {comment.strip()}" if comment.strip() else ""))
        services.record(job, AuditType.JOB_APPROVED, name, request, comment=_comment(comment))
        if approvals_hold(job):
            services.transition(job, to=Job.State.APPROVED)
            _queue_if_free(job, name, request)
    return job


@_audited
def reject_job(
    *, job_id: int, approver: AbstractBaseUser, comment: str, request: HttpRequest | None = None
) -> Job:
    name = approver.get_username()
    if not comment.strip():
        raise ApprovalRefused("say why the job is rejected (the requester reads it)")
    with transaction.atomic():
        job = _waiting(job_id)
        _check_approver(job, approver, "reject", request)
        Approval.objects.create(
            job=job,
            approver=name,
            approver_user_id=approver.pk,
            decision=Approval.Decision.REJECT,
            params_sha256=job.params_sha256,
            comment=_comment(comment),
            expires_at=timezone.now(),
        )
        services.transition(
            job,
            to=Job.State.REJECTED,
            values={"finished_at": timezone.now()},
            message=f"rejected by {name}: {comment.strip()}",
            audit=AuditType.JOB_REJECTED,
            actor=name,
            request=request,
            comment=_comment(comment),
        )
    return job


def change_job(*, job_id: int, params: dict[str, Any], actor: str, request: HttpRequest | None = None) -> Job:
    """New parameters for a job still waiting for approval: the approvals given so far were for the old
    ones and no longer count."""
    with transaction.atomic():
        job = _waiting(job_id)
        if actor != job.requested_by:
            raise JobError(f"only {job.requested_by}, who asked for job {job.pk}, can change it")
        canonical = job_params.check(job.kind, params)
        target = job_params.target_of(job.kind, canonical)
        if target != job.target:
            raise job_params.JobParamsError(
                {"params": [f"job {job.pk} works on {job.target}; ask for a new job for {target}"]}
            )
        previous = job.params_sha256
        job.params, job.params_sha256 = canonical, job_params.params_sha256(canonical)
        job.save(update_fields=["params", "params_sha256"])
        if job.state != Job.State.PENDING_APPROVAL and services.approvals_required(job.kind):
            services.transition(job, to=Job.State.PENDING_APPROVAL)
        services.log(job, f"parameters changed by {actor}; approvals given before no longer count")
        services.record(
            job, AuditType.JOB_CHANGED, actor, request, previous_params_sha256=previous, params=canonical
        )
    return job


def queue_approved() -> list[int]:
    """Queue approved jobs whose projection or sink has come free (the reconciler calls this)."""
    queued = []
    for job_id in Job.objects.filter(state=Job.State.APPROVED).order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id, state=Job.State.APPROVED).first()
            if job is not None and _queue_if_free(job, "system", None):
                queued.append(job_id)
    return queued


def pending_count() -> int:
    return Job.objects.filter(state=Job.State.PENDING_APPROVAL).count()


# --- rules


def _waiting(job_id: int) -> Job:
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        raise JobError(f"no job has id {job_id}")
    if job.state not in WAITING:
        raise ApprovalRefused(f"job {job.pk} is {job.state}; only a job waiting for approval can be decided")
    return job


def _check_approver(
    job: Job, approver: AbstractBaseUser, attempted: str, request: HttpRequest | None
) -> None:
    name = approver.get_username()
    if not can(approver, Can.APPROVE):
        _refuse(job, name, request, "this needs the approve permission (role approver or admin)", attempted)
    if is_requester(job, name=name, user_id=approver.pk):
        _refuse(
            job,
            name,
            request,
            f"you asked for job {job.pk}: someone else must {attempted} it (four-eyes rule)",
            attempted,
        )


def _queue_if_free(job: Job, actor: str, request: HttpRequest | None) -> bool:
    if Job.objects.filter(target=job.target, state__in=Job.ACTIVE).exists():
        services.log(job, f"approved; waits for the job working on {job.target} to finish")
        return False
    services.transition(
        job,
        to=Job.State.QUEUED,
        values={"queued_at": timezone.now()},
        audit=AuditType.JOB_QUEUED,
        actor=actor,
        request=request,
    )
    transaction.on_commit(lambda: services.nudge(job))
    return True


def _comment(comment: str) -> str:
    return (comment or "").strip()[:MAX_COMMENT]
