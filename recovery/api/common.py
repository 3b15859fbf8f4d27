"""What the jobs, approvals and snapshots endpoints share: the body check (core.api's), the 404, the
request of a job and the answers to a refusal."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import checked_body as checked_body  # the endpoints of recovery import it from here
from core.problems import Problem, not_found, unprocessable
from recovery import selectors, services
from recovery.api.serializers import JobOut
from recovery.models import Job
from recovery.params import JobParamsError

MAX_NAME = 60  # Job.target and Snapshot.projection


def job_or_404(job_id: int) -> Job:
    job = selectors.get_job(job_id=job_id)
    if job is None:
        raise not_found("job", f"no job has id {job_id}")
    return job


def request_job(request: Request, *, kind: str, params: dict[str, Any], reason: str) -> Job:
    try:
        return services.request_job(
            kind=kind, params=params, reason=reason, requested_by=request.user.get_username(), request=request
        )
    except JobParamsError as exc:
        raise unprocessable(exc.errors) from exc
    except services.JobConflict as exc:
        raise Problem(
            status_code=409,
            problem_type="job-conflict",
            title="Another job is in the way",
            detail=str(exc),
            job=exc.job.pk,
        ) from exc


def conflict(exc: services.JobError) -> Problem:
    # A retry can find its target taken too: name the job in the way, as a request does.
    extra = {"job": exc.job.pk} if isinstance(exc, services.JobConflict) else {}
    return Problem(
        status_code=409, problem_type="job-conflict", title="Cannot do that now", detail=str(exc), **extra
    )


def created(job: Job, status: int) -> Response:
    location = reverse("api:api-job-detail", args=[job.pk])
    return Response(JobOut(job).data, status=status, headers={"Location": location})


def name_parameter(field: str, description: str) -> OpenApiParameter:
    """The schema of a filter that name_param reads."""
    return OpenApiParameter(field, {"type": "string", "maxLength": MAX_NAME}, description=description)


def name_param(parser, field: str) -> str | None:
    value = parser.raw(field)
    if value is not None and len(value) > MAX_NAME:
        parser.error(field, f"at most {MAX_NAME} characters")
        return None
    return value
