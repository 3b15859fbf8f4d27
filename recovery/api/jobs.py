"""The jobs endpoints: list and request, the dry run, one job and its change, cancel and retry."""

from __future__ import annotations

from django.db.models import prefetch_related_objects
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import cursor_parameter, finish_query, limit_parameter, page_of, parse_query, problems
from core.problems import Problem, unprocessable
from core.roles import Allows, Can
from recovery import approvals, selectors, services
from recovery.api.common import (
    checked_body,
    conflict,
    created,
    job_or_404,
    name_param,
    name_parameter,
    request_job,
)
from recovery.api.serializers import ChangeIn, EstimateIn, EstimateOut, JobConflictOut, JobIn, JobOut
from recovery.kinds import base as registry
from recovery.models import Job
from recovery.params import JobParamsError


@extend_schema(
    methods=["GET"],
    operation_id="jobs_list",
    parameters=[
        OpenApiParameter("kind", str, enum=registry.names()),
        OpenApiParameter("state", str, enum=Job.State.values),
        name_parameter("target", "Jobs on this projection or sink."),
        cursor_parameter(1),
        limit_parameter(50, selectors.MAX_LIMIT),
    ],
    responses={200: page_of("JobPage", JobOut), **problems(400, 401)},
    description="Jobs, newest first.",
)
@extend_schema(
    methods=["POST"],
    operation_id="jobs_create",
    request=JobIn,
    responses={201: JobOut, **problems(400, 401, 422), (409, "application/problem+json"): JobConflictOut},
    description="Request a job. 400 for a body not of the form its schema states; 422 for params of the "
    "right form that break a rule of the kind or name nothing known, named by the param's field "
    "(`projection`, `exclude.event_ids`, …). 409 when another job is queued or running on the same "
    "projection or sink; `job` names it. Nothing is written on a refusal.",
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def job_list(request: Request) -> Response:
    if request.method == "POST":
        body = checked_body(request, JobIn)
        return created(request_job(request, **body), 201)
    parser = parse_query(request, ("kind", "state", "target", "cursor", "limit"))
    kind = parser.choice("kind", tuple(registry.names()), "")
    state = parser.choice("state", tuple(Job.State.values), "")
    target = name_param(parser, "target")
    before = parser.integer("cursor", minimum=1)
    limit = parser.integer("limit", minimum=1, maximum=selectors.MAX_LIMIT, default=50)
    finish_query(parser)
    jobs = selectors.list_jobs(kind=kind, state=state, target=target, before=before, limit=limit)
    prefetch_related_objects(jobs, "approvals")
    next_cursor = str(jobs[-1].pk) if len(jobs) == limit else None
    return Response({"results": JobOut(jobs, many=True).data, "next": next_cursor})


@extend_schema(
    operation_id="jobs_estimate",
    request=EstimateIn,
    responses={200: EstimateOut, **problems(400, 401, 422)},
    description="The dry run: what the job would do and how long it may take. Takes the body of a "
    "request (its reason is not needed) and writes nothing.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def job_estimate(request: Request) -> Response:
    body = checked_body(request, EstimateIn)
    try:
        estimate = selectors.estimate(kind=body["kind"], params=body["params"])
    except JobParamsError as exc:
        raise unprocessable(exc.errors) from exc
    return Response(EstimateOut(estimate).data)


@extend_schema(methods=["GET"], operation_id="jobs_retrieve", responses={200: JobOut, **problems(401, 404)})
@extend_schema(
    methods=["PATCH"],
    operation_id="jobs_change",
    request=ChangeIn,
    responses={200: JobOut, **problems(400, 401, 403, 404, 409, 422)},
    description="New params for a job still waiting for approval (audited). Only its requester may "
    "change it; the approvals given so far were for the old params and no longer count. 422 for params "
    "that cannot run (or another target), 409 when the job is no longer waiting.",
)
@api_view(["GET", "PATCH"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def job_detail(request: Request, job_id: int) -> Response:
    if request.method == "PATCH":
        return _change(request, job_or_404(job_id))
    job = job_or_404(job_id)
    job.log = selectors.job_log(job=job)
    return Response(JobOut(job).data)


def _change(request: Request, job: Job) -> Response:
    body = checked_body(request, ChangeIn)
    actor = request.user.get_username()
    try:
        job = approvals.change_job(job_id=job.pk, params=body["params"], actor=actor, request=request)
    except JobParamsError as exc:
        raise unprocessable(exc.errors) from exc
    except approvals.ApprovalRefused as exc:
        raise conflict(exc) from exc
    except services.JobError as exc:
        if job.requested_by == actor:
            raise conflict(exc) from exc
        raise Problem(
            status_code=403, problem_type="not-the-requester", title="Not your job", detail=str(exc)
        ) from exc
    return Response(JobOut(job).data)


@extend_schema(
    operation_id="jobs_cancel",
    request=None,
    responses={200: JobOut, **problems(401, 404, 409)},
    description="A job not yet running is cancelled at once; a running one stops at its next batch "
    "(`cancel_requested_by` is set until then). 409 when it has finished already.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def job_cancel(request: Request, job_id: int) -> Response:
    job_or_404(job_id)
    try:
        job = services.cancel_job(job_id=job_id, actor=request.user.get_username(), request=request)
    except services.JobError as exc:
        raise conflict(exc) from exc
    return Response(JobOut(job).data)


@extend_schema(
    operation_id="jobs_retry",
    request=None,
    responses={200: JobOut, **problems(401, 404), (409, "application/problem+json"): JobConflictOut},
    description="Queue a failed job again; it goes on from its last checkpoint. 409 for any other state, "
    "or when another job now holds its target (`job` names it).",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def job_retry(request: Request, job_id: int) -> Response:
    job_or_404(job_id)
    try:
        job = services.retry_job(job_id=job_id, actor=request.user.get_username(), request=request)
    except services.JobError as exc:
        raise conflict(exc) from exc
    return Response(JobOut(job).data)
