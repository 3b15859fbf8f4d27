"""The approvals endpoints: approve or reject a job, the password asked again when due."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import problems
from core.problems import Problem
from core.roles import Allows, Can
from recovery import approvals, reauth
from recovery.api.common import checked_body, job_or_404
from recovery.api.serializers import ApproveIn, JobOut, RejectIn
from recovery.models import Job


@extend_schema(
    operation_id="jobs_approve",
    request=ApproveIn,
    responses={200: JobOut, **problems(400, 401, 403, 404, 409)},
    description="Approve the job's params as you read them (`params_sha256`), audited. Once it has the "
    "approvals its kind needs it is queued (or waits, `approved`, while another job holds its target). "
    "403: your own request (four-eyes rule, and the attempt is audited), no approve permission, or a "
    "missing or wrong password when re-authentication is due. 409: the params changed since you read "
    "them, the job is not waiting for approval, or you approved it already.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.APPROVE)])
def job_approve(request: Request, job_id: int) -> Response:
    job = job_or_404(job_id)
    body = checked_body(request, ApproveIn)
    _reauthenticate(request, body["password"], action=f"approve job {job.pk}")
    return _decide(
        request,
        job,
        lambda: approvals.approve_job(
            job_id=job.pk,
            approver=request.user,
            params_sha256=body["params_sha256"],
            comment=body["comment"],
            request=request,
        ),
    )


@extend_schema(
    operation_id="jobs_reject",
    request=RejectIn,
    responses={200: JobOut, **problems(400, 401, 403, 404, 409)},
    description="Reject the job (final; audited); the comment says why. 403 and 409 as for approve.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.APPROVE)])
def job_reject(request: Request, job_id: int) -> Response:
    job = job_or_404(job_id)
    body = checked_body(request, RejectIn)
    _reauthenticate(request, body["password"], action=f"reject job {job.pk}")
    return _decide(
        request,
        job,
        lambda: approvals.reject_job(
            job_id=job.pk, approver=request.user, comment=body["comment"], request=request
        ),
    )


def _reauthenticate(request: Request, password: str, *, action: str) -> None:
    try:
        reauth.confirm(request, password, action=action)
    except reauth.ReauthFailed as exc:
        raise Problem(
            status_code=403,
            problem_type="wrong-password" if exc.wrong else "password-required",
            title="Wrong password" if exc.wrong else "Password required",
            detail=str(exc),
            errors={"password": [str(exc)]},
        ) from exc


def _decide(request: Request, job: Job, decide) -> Response:
    try:
        decided = decide()
    except approvals.ApprovalRefused as exc:
        status_code = reauth.refusal_status(job, request.user)
        raise Problem(
            status_code=status_code,
            problem_type="approval-forbidden" if status_code == 403 else "approval-conflict",
            title="Not yours to decide" if status_code == 403 else "Cannot decide this job now",
            detail=str(exc),
        ) from exc
    decided = job_or_404(decided.pk)
    return Response(JobOut(decided).data)
