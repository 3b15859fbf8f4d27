"""What a job's page asks of its kind (recovery/kinds): where its target is, and how its result shows."""

from __future__ import annotations

from django import template

from recovery.kinds.base import get
from recovery.models import Job

register = template.Library()


@register.filter
def target_url(job: Job) -> str:
    kind = get(job.kind)
    return kind.target_url(job.target) if kind is not None else ""


@register.filter
def result_template(job: Job) -> str:
    kind = get(job.kind)
    return (
        kind.result_template if kind is not None and kind.result_template else "recovery/results/plain.html"
    )


@register.filter
def job_title(job: Job) -> str:
    kind = get(job.kind)
    return kind.title(job) if kind is not None else f"{job.kind} of {job.target}"
