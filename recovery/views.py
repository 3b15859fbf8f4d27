"""The recovery pages: jobs, one job with its live progress, the new-job form with its dry run, snapshots,
and a consumer's recovery panel (its latest jobs, and the rollback of a swapped projection).

The form only turns text into values; every rule about a job lives in `recovery.params` and its kind (through
`services.request_job` and `selectors.estimate`), whose errors are shown next to the fields they name.
The progress fragment answers 286 once its job is finished: htmx then stops polling it.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib import messages
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from core.pages import not_found, pretty_json, render_page, role_required, stop_polling
from core.queries import QueryParser
from core.roles import Can, can
from recovery import params as job_params
from recovery import rebuild, selectors, services
from recovery.forms import JobForm, prefill
from recovery.kinds import base as registry
from recovery.models import Job
from streams.models import Consumer
from streams.projections import get_projection, projections

PAGE_SIZE = 50
LOG_SHOWN = 500
CONSUMER_JOBS_SHOWN = 5
# htmx stops polling an element whose request is answered with this status.
# --- jobs


@require_safe
@role_required
def job_list(request: HttpRequest) -> HttpResponse:
    parser = QueryParser(request.GET, ("kind", "state", "target", "before", "limit"))
    kind = parser.choice("kind", tuple(registry.names()), "")
    state = parser.choice("state", tuple(Job.State.values), "")
    target = (parser.raw("target") or "").strip()
    before, limit = parser.integer("before", minimum=1), parser.limit(PAGE_SIZE)
    context = {"section": "jobs", "errors": parser.errors, "jobs": [], "older": None}
    context |= {"search": {"kind": kind, "state": state, "target": target}, "paged": before is not None}
    context |= {"kinds": registry.names(), "states": Job.State.values}
    if not parser.errors:
        jobs = selectors.list_jobs(
            kind=kind or None, state=state or None, target=target or None, before=before, limit=limit + 1
        )
        context["jobs"] = jobs[:limit]
        context["older"] = jobs[limit - 1].pk if len(jobs) > limit else None
    return render(request, "recovery/job_list.html", context, status=400 if parser.errors else 200)


@require_http_methods(["GET", "POST"])
@role_required(can=Can.OPERATE)
def job_new(request: HttpRequest) -> HttpResponse:
    form = JobForm(request.POST or None, initial=prefill(request.GET))
    conflict = None
    if request.method == "POST" and form.is_valid():
        try:
            job = services.request_job(
                kind=form.cleaned_data["kind"],
                params=form.params(),
                requested_by=request.user.get_username(),
                reason=form.cleaned_data["reason"],
                request=request,
            )
        except job_params.JobParamsError as exc:
            form.show_errors(exc)
        except services.JobConflict as exc:
            conflict = exc
        except services.JobError as exc:
            form.add_error(None, str(exc))
        else:
            requested = f"Requested job {job.pk}, a {job.kind} of {job.target}: {job.state_text}."
            messages.success(request, requested)
            return redirect("recovery:job", job_id=job.pk)
    return form_page(request, form, conflict=conflict)


@require_safe
@role_required(can=Can.OPERATE)
def job_kinds_css(request: HttpRequest) -> HttpResponse:
    """The new-job form's rule per registered kind: only the fields its kind takes show."""
    names = [kind.name for kind in registry.kinds()]
    return render(request, "recovery/job_kinds.css", {"kinds": names}, content_type="text/css")


@require_POST
@role_required(can=Can.OPERATE)
def job_estimate(request: HttpRequest) -> HttpResponse:
    """The dry run: what the job would do and how long it may take; nothing is written."""
    form = JobForm(request.POST)
    estimate = None
    if form.is_valid():
        try:
            estimate = selectors.estimate(kind=form.cleaned_data["kind"], params=form.params())
        except job_params.JobParamsError as exc:
            form.show_errors(exc)
    return form_page(request, form, estimate=estimate, dry_run=True)


def form_page(
    request: HttpRequest,
    form: JobForm,
    *,
    estimate: selectors.Estimate | None = None,
    conflict: services.JobConflict | None = None,
    dry_run: bool = False,
) -> HttpResponse:
    context = {"section": "jobs", "form": form, "conflict": conflict, "dry_run": dry_run}
    context |= {
        "estimate": estimate,
        "estimate_params": pretty_json(estimate.params, sort_keys=True) if estimate else "",
    }
    refused = form.has_errors or conflict is not None
    # htmx swaps only 2xx answers in: a refused dry run still has to show its errors.
    status = 400 if refused and not request.htmx else 200
    return render_page(
        request, "recovery/job_form.html", "recovery/partials/job_form.html", context, status=status
    )


def with_job(view):
    """A view of one job, given the Job instead of its id; the 404 page when no job has the id."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, job_id: int, *args, **kwargs) -> HttpResponse:
        job = selectors.get_job(job_id=job_id)
        if job is None:
            return not_found(request, f"No job has the id {job_id}.")
        return view(request, job, *args, **kwargs)

    return wrapped


@require_safe
@role_required
@with_job
def job_detail(request: HttpRequest, job: Job) -> HttpResponse:
    context = job_context(job) | {"section": "jobs", "params": pretty_json(job.params, sort_keys=True)}
    if job.finished:
        # A job still running loads its approvals panel on its own (and polls it while the job waits).
        from recovery.approval_views import tally  # which builds on this module's with_job

        context["tally"] = tally(job)
    return render(request, "recovery/job_detail.html", context)


@require_safe
@role_required
@with_job
def job_progress(request: HttpRequest, job: Job) -> HttpResponse:
    """Polled by the job's page, which says (`after`, `shown`) which log lines it has: the answer
    carries only the lines after those, to append, instead of the whole log every second."""
    after, shown = request.GET.get("after", ""), request.GET.get("shown", "")
    known = (int(after), int(shown)) if after.isdigit() and shown.isdigit() and int(shown) else None
    response = render(request, "recovery/partials/job_progress.html", job_context(job, known=known))
    return stop_polling(response) if job.finished else response


def job_context(job: Job, *, known: tuple[int, int] | None = None) -> dict[str, Any]:
    """The job, its figures and its log: the last LOG_SHOWN lines, or those after the cursor line of
    `known` (the cursor, and how many lines the page shows)."""
    if known is None:
        lines = selectors.job_log(job=job, limit=LOG_SHOWN)
        shown, cursor = len(lines), 0
    else:
        cursor, shown = known
        lines = selectors.job_log(job=job, after=cursor, limit=LOG_SHOWN)
        shown += len(lines)
    took = None
    if job.finished_at and job.started_at:
        took = (job.finished_at - job.started_at).total_seconds()
    # A stage's rate while it runs; once finished, the whole job's.
    rate = (job.done / took if took else None) if job.finished else job.rate
    context = {"job": job, "log": lines, "took": took, "rate": rate}
    context |= {
        "log_full": known is None,
        "log_shown": shown,
        "log_cursor": lines[-1].pk if lines else cursor,
    }
    return context | {"result": pretty_json(job.result, sort_keys=True) if job.result else ""}


@require_POST
@role_required(can=Can.OPERATE)
def job_cancel(request: HttpRequest, job_id: int) -> HttpResponse:
    return act(
        request,
        job_id,
        lambda actor: services.cancel_job(job_id=job_id, actor=actor, request=request),
        "Cancel asked: a job that had not started is cancelled; a running one stops at its next batch.",
    )


@require_POST
@role_required(can=Can.OPERATE)
def job_retry(request: HttpRequest, job_id: int) -> HttpResponse:
    return act(
        request,
        job_id,
        lambda actor: services.retry_job(job_id=job_id, actor=actor, request=request),
        "Queued again: it goes on from its last checkpoint.",
    )


def act(request: HttpRequest, job_id: int, action, done: str) -> HttpResponse:
    if selectors.get_job(job_id=job_id) is None:
        return not_found(request, f"No job has the id {job_id}.")
    try:
        action(request.user.get_username())
    except services.JobError as exc:
        messages.error(request, f"Not done: {exc}.")
    else:
        messages.success(request, done)
    return back_to(request, reverse("recovery:job", args=[job_id]))


def back_to(request: HttpRequest, url: str) -> HttpResponse:
    """After an action, the page again with its outcome: htmx (a confirmed action) is told to load it."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_safe
@role_required
def running_jobs(request: HttpRequest) -> HttpResponse:
    """The dashboard's panel of queued and running jobs, polled on its own."""
    return render(request, "recovery/partials/running_jobs.html", {"running_jobs": selectors.running_jobs()})


# --- snapshots


@require_safe
@role_required
def snapshot_list(request: HttpRequest) -> HttpResponse:
    parser = QueryParser(request.GET, ("projection", "before", "limit"))
    projection = parser.choice("projection", tuple(sorted(projections())), "")
    before, limit = parser.integer("before", minimum=1), parser.limit(PAGE_SIZE)
    context = {"section": "snapshots", "errors": parser.errors, "snapshots": [], "older": None}
    context |= {"projection": projection, "projections": sorted(projections()), "paged": before is not None}
    if not parser.errors:
        found = selectors.list_snapshots(projection=projection or None, before=before, limit=limit + 1)
        context["snapshots"] = found[:limit]
        context["older"] = found[limit - 1].pk if len(found) > limit else None
    return render(request, "recovery/snapshot_list.html", context, status=400 if parser.errors else 200)


@require_safe
@role_required
def snapshot_detail(request: HttpRequest, snapshot_id: int) -> HttpResponse:
    snapshot = selectors.get_snapshot(snapshot_id=snapshot_id)
    if snapshot is None:
        return not_found(request, f"No snapshot has the id {snapshot_id}.")
    context = {"section": "snapshots", "snapshot": snapshot, "tables": snapshot.manifest.get("tables", [])}
    return render(request, "recovery/snapshot_detail.html", context)


# --- a consumer's recovery panel


@require_safe
@role_required
def consumer_recovery(request: HttpRequest, name: str) -> HttpResponse:
    """Loaded into the consumer's page: its latest jobs, and Roll back when a replay or restore left the
    schema it replaced."""
    consumer = Consumer.objects.filter(name=name).first()
    if consumer is None:
        return not_found(request, f"No consumer is named “{name}”.")
    context = {
        "consumer": consumer,
        "jobs": selectors.list_jobs(target=name, limit=CONSUMER_JOBS_SHOWN),
        # Rolling back needs the operate permission: nobody else is offered the button.
        "can_roll_back": can(request.user, Can.OPERATE) and has_previous_schema(name),
    }
    return render(request, "recovery/partials/consumer_recovery.html", context)


def has_previous_schema(name: str) -> bool:
    projection = get_projection(name)
    if projection is None:
        return False
    with connection.cursor() as cursor:
        return rebuild.schema_exists(cursor, services.previous_schema(projection.schema))


@require_POST
@role_required(can=Can.OPERATE)
def rollback(request: HttpRequest, name: str) -> HttpResponse:
    if get_projection(name) is None:
        return not_found(request, f"No projection is named “{name}”.")
    reason = request.POST.get("reason", "")
    try:
        services.rollback_projection(
            projection=name, actor=request.user.get_username(), reason=reason, request=request
        )
    except services.JobError as exc:
        messages.error(request, f"Not done: {exc}.")
    else:
        messages.success(
            request, f"Rolled {name} back to the schema the last swap replaced; it catches up from there."
        )
    return back_to(request, reverse("streams:consumer", args=[name]))
