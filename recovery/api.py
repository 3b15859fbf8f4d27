"""The jobs and snapshots API (/api/v1/jobs…, /api/v1/snapshots…, and a projection's rollback).
Thin: parse, call a service or a selector, render. The services check every rule about a job."""

from __future__ import annotations

from typing import Any

from django.db.models import prefetch_related_objects
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from console.problems import Problem, invalid_input
from console.roles import Allows, Can
from recovery import approvals, reauth, selectors, services
from recovery.kinds import base as registry
from recovery.models import Approval, Job, Snapshot
from recovery.params import JobParamsError
from streams.api import ProblemOut, _finish, _page, _parse, _problems
from streams.projections import get_projection

MAX_NAME = 60  # Job.target and Snapshot.projection


class ProgressOut(serializers.Serializer):
    stage = serializers.CharField(help_text="Empty until the job starts; `done` when it has succeeded.")
    done = serializers.IntegerField(help_text="Events (or rows, for a snapshot) done in this stage.")
    total = serializers.IntegerField(allow_null=True, help_text="Null until the job knows it.")
    rate = serializers.FloatField(allow_null=True, help_text="Events per second in this stage.")
    eta_seconds = serializers.FloatField(allow_null=True)


class JobLogLineOut(serializers.Serializer):
    at = serializers.DateTimeField()
    level = serializers.CharField(help_text="info, warning or error.")
    message = serializers.CharField()


class ApprovalOut(serializers.Serializer):
    approver = serializers.CharField()
    decision = serializers.ChoiceField(choices=Approval.Decision.choices)
    params_sha256 = serializers.CharField(help_text="The parameters this decision was about.")
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="A yes stops counting then; a no is final.")
    valid = serializers.BooleanField(
        help_text="Counts now: a yes for the job's current parameters, unexpired, not by the requester."
    )


class JobOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=registry.choices())
    target = serializers.CharField(help_text="The projection or sink the job works on.")
    params = serializers.JSONField(help_text="Canonical: checked, with defaults filled in.")
    params_sha256 = serializers.CharField(help_text="sha256 of the canonical params (what is approved).")
    state = serializers.ChoiceField(choices=Job.State.choices)
    reason = serializers.CharField()
    requested_by = serializers.CharField()
    approvals = serializers.SerializerMethodField(
        help_text="Every decision on the job, oldest first; `valid` says which yes counts now."
    )
    approvals_required = serializers.SerializerMethodField(
        help_text="Valid approvals (by people other than the requester) its kind needs before it runs."
    )
    progress = ProgressOut(source="*")
    result = serializers.JSONField(help_text="What the job did, once it has succeeded; {} before.")
    error = serializers.CharField(help_text="Why it failed (or its last failed attempt); empty otherwise.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(
        allow_null=True, help_text="Last sign of life of the worker running it."
    )
    finished_at = serializers.DateTimeField(allow_null=True)
    cancel_requested_by = serializers.CharField(help_text="Who asked to cancel it; empty if nobody.")
    # One component for lists and the detail, so that the kind and state enums are named once.
    log = JobLogLineOut(
        many=True,
        required=False,
        help_text="Only in GET /jobs/{id}: the job's log, oldest first (its first 500 lines).",
    )

    @extend_schema_field(ApprovalOut(many=True))
    def get_approvals(self, job: Job) -> list[dict[str, Any]]:
        decisions = sorted(job.approvals.all(), key=lambda a: (a.created_at, a.pk))
        # Picked from the decisions read (prefetched for a list): no query per job.
        valid = {a.pk for a in approvals.counting(job, decisions)}
        for decision in decisions:
            decision.valid = decision.pk in valid
        return ApprovalOut(decisions, many=True).data

    def get_approvals_required(self, job: Job) -> int:
        return services.approvals_required(job.kind)


class JobIn(serializers.Serializer):
    kind = serializers.CharField(help_text=", ".join(registry.names()))
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Per kind — "
        + "; ".join(f"{kind.name}: {kind.params_help}" for kind in registry.kinds())
        + ".",
    )
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Why it should run (required to request)."
    )


SHA256 = r"^[0-9a-f]{64}$"
PASSWORD_HELP = (
    "Your password, when re-authentication is due: always for a token client; for a browser session "
    "unless it was given (or the login was) in the last REPLAYDESK_REAUTH_SECONDS (5 minutes)."
)


class ApproveIn(serializers.Serializer):
    params_sha256 = serializers.RegexField(
        SHA256,
        help_text="The params_sha256 of the job as you read it: the approval is for exactly those params.",
        error_messages={"invalid": "must be the job's params_sha256 (64 lowercase hex digits)"},
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=approvals.MAX_COMMENT
    )
    password = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, help_text=PASSWORD_HELP
    )


class RejectIn(serializers.Serializer):
    comment = serializers.CharField(
        max_length=approvals.MAX_COMMENT,
        help_text="Why it is rejected (required; the requester reads it).",
        error_messages={
            "required": "say why the job is rejected (the requester reads it)",
            "blank": "say why the job is rejected (the requester reads it)",
        },
    )
    password = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, help_text=PASSWORD_HELP
    )


class ChangeIn(serializers.Serializer):
    params = serializers.DictField(help_text="The new params, as in a request (same target).")


class EstimateOut(serializers.Serializer):
    params = serializers.JSONField(help_text="The canonical params the job would run with.")
    params_sha256 = serializers.CharField()
    events = serializers.IntegerField(help_text="Events it would apply or deliver.")
    streams = serializers.IntegerField(help_text="Streams those events belong to.")
    excluded = serializers.IntegerField(help_text="Events the exclusions would drop.")
    rate = serializers.FloatField(allow_null=True, help_text="Events per second expected.")
    seconds = serializers.FloatField(allow_null=True, help_text="How long it may take.")
    basis = serializers.CharField(help_text="Where the rate comes from: measured, or assumed.")


class SnapshotOut(serializers.Serializer):
    id = serializers.IntegerField()
    projection = serializers.CharField()
    name = serializers.CharField(help_text="Its directory in the snapshot store.")
    position = serializers.IntegerField(help_text="The log position the copy is consistent at.")
    version = serializers.IntegerField(help_text="The projection's version when it was taken.")
    taken_at = serializers.DateTimeField()
    rows = serializers.IntegerField()
    bytes = serializers.IntegerField()
    job = serializers.IntegerField(source="job_id", allow_null=True, help_text="The job that took it.")
    scheduled = serializers.BooleanField(help_text="Taken by the schedule (subject to retention).")


class SnapshotDetailOut(SnapshotOut):
    manifest = serializers.JSONField(help_text="Position, version, and each table's file, rows and sha256.")


class SnapshotIn(serializers.Serializer):
    projection = serializers.CharField()
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class RollbackIn(serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=services.MAX_REASON
    )


class RollbackResultOut(serializers.Serializer):
    projection = serializers.CharField()
    schema = serializers.CharField(help_text="The schema now live (it holds what was the previous one).")


class JobConflictOut(ProblemOut):
    job = serializers.IntegerField(help_text="The job in the way (on a request for a busy target).")


# --- helpers


def _body(request: Request, serializer: type[serializers.Serializer]) -> dict[str, Any]:
    """The request body checked against `serializer`, refusing fields it does not know."""
    if not isinstance(request.data, dict):
        raise invalid_input({"body": ["must be a JSON object"]})
    allowed = set(serializer().fields)
    unknown = sorted(set(request.data) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed))
        raise invalid_input({name: [f"unknown field; the body takes {takes}"] for name in unknown})
    parsed = serializer(data=request.data)
    parsed.is_valid(raise_exception=True)
    return parsed.validated_data


def _job_or_404(job_id: int) -> Job:
    job = selectors.get_job(job_id=job_id)
    if job is None:
        raise Problem(
            status_code=404,
            problem_type="job-not-found",
            title="Job not found",
            detail=f"no job has id {job_id}",
        )
    return job


def _request(request: Request, *, kind: str, params: dict[str, Any], reason: str) -> Job:
    try:
        return services.request_job(
            kind=kind, params=params, reason=reason, requested_by=request.user.get_username(), request=request
        )
    except JobParamsError as exc:
        raise invalid_input(exc.errors) from exc
    except services.JobConflict as exc:
        raise Problem(
            status_code=409,
            problem_type="job-conflict",
            title="Another job is in the way",
            detail=str(exc),
            job=exc.job.pk,
        ) from exc


def _conflict(exc: services.JobError) -> Problem:
    # A retry can find its target taken too: name the job in the way, as a request does.
    extra = {"job": exc.job.pk} if isinstance(exc, services.JobConflict) else {}
    return Problem(
        status_code=409, problem_type="job-conflict", title="Cannot do that now", detail=str(exc), **extra
    )


def _created(job: Job, status: int) -> Response:
    location = reverse("api:api-job-detail", args=[job.pk])
    return Response(JobOut(job).data, status=status, headers={"Location": location})


def _name(parser, field: str) -> str | None:
    value = parser.raw(field)
    if value is not None and len(value) > MAX_NAME:
        parser.error(field, f"at most {MAX_NAME} characters")
        return None
    return value


# --- jobs


@extend_schema(
    methods=["GET"],
    operation_id="jobs_list",
    parameters=[
        OpenApiParameter("kind", str, enum=registry.names()),
        OpenApiParameter("state", str, enum=Job.State.values),
        OpenApiParameter("target", str, description="Jobs on this projection or sink."),
        OpenApiParameter("cursor", str, description="`next` of the previous page."),
        OpenApiParameter("limit", int, description=f"1–{selectors.MAX_LIMIT}, default 50."),
    ],
    responses={200: _page("JobPage", JobOut), **_problems(400, 401)},
    description="Jobs, newest first.",
)
@extend_schema(
    methods=["POST"],
    operation_id="jobs_create",
    request=JobIn,
    responses={201: JobOut, **_problems(400, 401), (409, "application/problem+json"): JobConflictOut},
    description="Request a job. Errors about params are named by the param's field (`projection`, "
    "`exclude.event_ids`, …). 409 when another job is queued or running on the same projection or "
    "sink; `job` names it. Nothing is written on a refusal.",
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def job_list(request: Request) -> Response:
    if request.method == "POST":
        body = _body(request, JobIn)
        return _created(_request(request, **body), 201)
    parser = _parse(request, ("kind", "state", "target", "cursor", "limit"))
    kind = parser.choice("kind", tuple(registry.names()), "")
    state = parser.choice("state", tuple(Job.State.values), "")
    target = _name(parser, "target")
    before = parser.integer("cursor", minimum=1)
    limit = parser.integer("limit", minimum=1, maximum=selectors.MAX_LIMIT, default=50)
    _finish(parser)
    jobs = selectors.list_jobs(kind=kind, state=state, target=target, before=before, limit=limit)
    prefetch_related_objects(jobs, "approvals")
    next_cursor = str(jobs[-1].pk) if len(jobs) == limit else None
    return Response({"results": JobOut(jobs, many=True).data, "next": next_cursor})


@extend_schema(
    operation_id="jobs_estimate",
    request=JobIn,
    responses={200: EstimateOut, **_problems(400, 401)},
    description="The dry run: what the job would do and how long it may take. Takes the body of a "
    "request (its reason is not needed) and writes nothing.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def job_estimate(request: Request) -> Response:
    body = _body(request, JobIn)
    try:
        estimate = selectors.estimate(kind=body["kind"], params=body["params"])
    except JobParamsError as exc:
        raise invalid_input(exc.errors) from exc
    return Response(EstimateOut(estimate).data)


@extend_schema(methods=["GET"], operation_id="jobs_retrieve", responses={200: JobOut, **_problems(401, 404)})
@extend_schema(
    methods=["PATCH"],
    operation_id="jobs_change",
    request=ChangeIn,
    responses={200: JobOut, **_problems(400, 401, 403, 404, 409)},
    description="New params for a job still waiting for approval (audited). Only its requester may "
    "change it; the approvals given so far were for the old params and no longer count. 400 for params "
    "that cannot run (or another target), 409 when the job is no longer waiting.",
)
@api_view(["GET", "PATCH"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def job_detail(request: Request, job_id: int) -> Response:
    if request.method == "PATCH":
        return _change(request, _job_or_404(job_id))
    job = _job_or_404(job_id)
    job.log = selectors.job_log(job=job)
    return Response(JobOut(job).data)


def _change(request: Request, job: Job) -> Response:
    body = _body(request, ChangeIn)
    actor = request.user.get_username()
    try:
        job = approvals.change_job(job_id=job.pk, params=body["params"], actor=actor, request=request)
    except JobParamsError as exc:
        raise invalid_input(exc.errors) from exc
    except approvals.ApprovalRefused as exc:
        raise _conflict(exc) from exc
    except services.JobError as exc:
        if job.requested_by == actor:
            raise _conflict(exc) from exc
        raise Problem(
            status_code=403, problem_type="not-the-requester", title="Not your job", detail=str(exc)
        ) from exc
    return Response(JobOut(job).data)


@extend_schema(
    operation_id="jobs_approve",
    request=ApproveIn,
    responses={200: JobOut, **_problems(400, 401, 403, 404, 409)},
    description="Approve the job's params as you read them (`params_sha256`), audited. Once it has the "
    "approvals its kind needs it is queued (or waits, `approved`, while another job holds its target). "
    "403: your own request (four-eyes rule, and the attempt is audited), no approve permission, or a "
    "missing or wrong password when re-authentication is due. 409: the params changed since you read "
    "them, the job is not waiting for approval, or you approved it already.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.APPROVE)])
def job_approve(request: Request, job_id: int) -> Response:
    job = _job_or_404(job_id)
    body = _body(request, ApproveIn)
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
    responses={200: JobOut, **_problems(400, 401, 403, 404, 409)},
    description="Reject the job (final; audited); the comment says why. 403 and 409 as for approve.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.APPROVE)])
def job_reject(request: Request, job_id: int) -> Response:
    job = _job_or_404(job_id)
    body = _body(request, RejectIn)
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
    decided = _job_or_404(decided.pk)
    return Response(JobOut(decided).data)


@extend_schema(
    operation_id="jobs_cancel",
    request=None,
    responses={200: JobOut, **_problems(401, 404, 409)},
    description="A job not yet running is cancelled at once; a running one stops at its next batch "
    "(`cancel_requested_by` is set until then). 409 when it has finished already.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def job_cancel(request: Request, job_id: int) -> Response:
    _job_or_404(job_id)
    try:
        job = services.cancel_job(job_id=job_id, actor=request.user.get_username(), request=request)
    except services.JobError as exc:
        raise _conflict(exc) from exc
    return Response(JobOut(job).data)


@extend_schema(
    operation_id="jobs_retry",
    request=None,
    responses={200: JobOut, **_problems(401, 404), (409, "application/problem+json"): JobConflictOut},
    description="Queue a failed job again; it goes on from its last checkpoint. 409 for any other state, "
    "or when another job now holds its target (`job` names it).",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def job_retry(request: Request, job_id: int) -> Response:
    _job_or_404(job_id)
    try:
        job = services.retry_job(job_id=job_id, actor=request.user.get_username(), request=request)
    except services.JobError as exc:
        raise _conflict(exc) from exc
    return Response(JobOut(job).data)


# --- snapshots


@extend_schema(
    methods=["GET"],
    operation_id="snapshots_list",
    parameters=[
        OpenApiParameter("projection", str, description="Snapshots of this projection."),
        OpenApiParameter("cursor", str, description="`next` of the previous page."),
        OpenApiParameter("limit", int, description=f"1–{selectors.MAX_LIMIT}, default 50."),
    ],
    responses={200: _page("SnapshotPage", SnapshotOut), **_problems(400, 401)},
    description="The snapshot catalogue, newest first.",
)
@extend_schema(
    methods=["POST"],
    operation_id="snapshots_create",
    request=SnapshotIn,
    responses={202: JobOut, **_problems(400, 401), (409, "application/problem+json"): JobConflictOut},
    description="Take a snapshot: requests a `snapshot` job (answered 202 with the job; the snapshot "
    "is listed here once the job has succeeded, and the job's result names it).",
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def snapshot_list(request: Request) -> Response:
    if request.method == "POST":
        body = _body(request, SnapshotIn)
        job = _request(
            request, kind=Job.Kind.SNAPSHOT, params={"projection": body["projection"]}, reason=body["reason"]
        )
        return _created(job, 202)
    parser = _parse(request, ("projection", "cursor", "limit"))
    projection = _name(parser, "projection")
    before = parser.integer("cursor", minimum=1)
    limit = parser.integer("limit", minimum=1, maximum=selectors.MAX_LIMIT, default=50)
    _finish(parser)
    snapshots = selectors.list_snapshots(projection=projection, before=before, limit=limit)
    next_cursor = str(snapshots[-1].pk) if len(snapshots) == limit else None
    return Response({"results": SnapshotOut(snapshots, many=True).data, "next": next_cursor})


@extend_schema(operation_id="snapshots_retrieve", responses={200: SnapshotDetailOut, **_problems(401, 404)})
@api_view(["GET"])
def snapshot_detail(request: Request, snapshot_id: int) -> Response:
    snapshot: Snapshot | None = selectors.get_snapshot(snapshot_id=snapshot_id)
    if snapshot is None:
        raise Problem(
            status_code=404,
            problem_type="snapshot-not-found",
            title="Snapshot not found",
            detail=f"no snapshot has id {snapshot_id}",
        )
    return Response(SnapshotDetailOut(snapshot).data)


# --- rollback


@extend_schema(
    operation_id="consumers_rollback",
    request=RollbackIn,
    responses={200: RollbackResultOut, **_problems(400, 401, 404, 409)},
    description="Swap a projection back to the schema its last replay or restore replaced (audited). "
    "The live runner catches it up from its own checkpoint. 409 when there is no previous schema or a "
    "job is working on it.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def consumer_rollback(request: Request, name: str) -> Response:
    body = _body(request, RollbackIn)
    if get_projection(name) is None:
        raise Problem(
            status_code=404,
            problem_type="projection-not-found",
            title="Projection not found",
            detail=f"no projection is named {name!r}; only a projection can be rolled back",
        )
    try:
        schema = services.rollback_projection(
            projection=name, actor=request.user.get_username(), reason=body["reason"], request=request
        )
    except services.JobError as exc:
        raise _conflict(exc) from exc
    return Response({"projection": name, "schema": schema})
