"""The approvals pages: the inbox of jobs waiting for approval, a job's review page (what will run: its
canonical parameters, their sha256, the dry run, who asked and why, the decisions so far) with its
Approve and Reject forms, a job page's approvals panel, and the dashboard's pending count.

The forms only carry text: the password goes to recovery.reauth, the decision to recovery.approvals,
whose refusals are shown as they are worded (own request, changed parameters, no longer waiting).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import prefetch_related_objects
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from core.pages import pretty_json, role_required, stop_polling
from core.roles import Can, can
from recovery import approvals, reauth, selectors, services
from recovery.models import Approval, Job
from recovery.params import JobParamsError
from recovery.views import with_job

# The dashboard names this many of them; the inbox has them all.
SUMMARY_SHOWN = 5
INBOX_SHOWN = 200
REJECT_WHY = "say why the job is rejected (the requester reads it)"


class ApproveForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any):
        # Two forms on one page: their fields need ids of their own for their labels.
        super().__init__(*args, auto_id="approve_%s", **kwargs)

    # The sha256 of the parameters the page showed: the service refuses it if they changed since.
    params_sha256 = forms.RegexField(r"^[0-9a-f]{64}$", widget=forms.HiddenInput)
    comment = forms.CharField(
        required=False,
        max_length=approvals.MAX_COMMENT,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Comment (optional)",
    )
    password = forms.CharField(
        label="Your password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class RejectForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, auto_id="reject_%s", **kwargs)

    comment = forms.CharField(
        max_length=approvals.MAX_COMMENT,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Why reject it",
        error_messages={"required": REJECT_WHY},
    )
    password = forms.CharField(
        label="Your password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


@dataclass(frozen=True)
class Tally:
    """A job's decisions so far, each with whether it counts (`standing`), and how many yeses it needs.

    Approvals are checked again when the job starts (queued → running), so until then what matters is
    whether each counts now; once started, whether it counted then: an expiry after the start changes
    nothing, and "yes, until …" on a running or finished job would say otherwise."""

    decisions: list[Approval]
    given: int
    needed: int
    # When the approvals were counted for good (the job's start), or None: they count now.
    counted_at: dt.datetime | None = None
    # The heading of the column that says whether each decision counts.
    column: str = "Counts now"


def tally(job: Job) -> Tally:
    decisions = sorted(job.approvals.all(), key=lambda a: (a.created_at, a.pk))
    counted_at = job.started_at
    # From the decisions read (prefetched for a page of jobs): no query per job.
    valid = approvals.counting(job, decisions, now=counted_at)
    counting = {a.pk for a in valid}
    for decision in decisions:
        decision.standing, decision.standing_until = standing(job, decision, decision.pk in counting)
    given = len({approvals.person(a) for a in valid})
    column = "Counted when it started" if counted_at else "Counted" if job.finished else "Counts now"
    needed = services.approvals_required(job.kind)
    return Tally(decisions=decisions, given=given, needed=needed, counted_at=counted_at, column=column)


def standing(job: Job, decision: Approval, counts: bool) -> tuple[str, dt.datetime | None]:
    """Whether a decision counts (or counted, once the job started), in words, and until when."""
    if decision.decision == Approval.Decision.REJECT:
        return ("it rejected the job" if job.state == Job.State.REJECTED else "—"), None
    started = job.started_at is not None
    if job.finished and not started:
        return f"no: the job was {job.state_text} before it started", None
    if counts:
        return ("yes" if started else "yes, until"), (None if started else decision.expires_at)
    if decision.params_sha256 != job.params_sha256:
        return "no: for parameters since changed", None
    if approvals.is_requester(job, name=decision.approver, user_id=decision.approver_user_id):
        return "no: the requester's own", None
    return ("no: it had expired when the job started" if started else "no: expired"), None


def waiting_jobs(*, limit: int) -> list[Job]:
    """Jobs waiting for a decision, oldest first: the longest wait is the first to read."""
    jobs = list(Job.objects.filter(state=Job.State.PENDING_APPROVAL).order_by("created_at", "pk")[:limit])
    prefetch_related_objects(jobs, "approvals")
    return jobs


# --- the inbox and the dashboard's count


@require_safe
@role_required
def inbox(request: HttpRequest) -> HttpResponse:
    jobs = waiting_jobs(limit=INBOX_SHOWN + 1)
    rows = [(job, tally(job)) for job in jobs[:INBOX_SHOWN]]
    context = {"section": "approvals", "rows": rows, "more": len(jobs) > INBOX_SHOWN}
    return render(request, "recovery/approvals.html", context)


@require_safe
@role_required
def waiting_summary(request: HttpRequest) -> HttpResponse:
    """The dashboard's approvals panel, polled on its own."""
    return render(request, "recovery/partials/approval_summary.html", summary())


@require_safe
@role_required
def nav_count(request: HttpRequest) -> HttpResponse:
    """The menu's count of waiting jobs, polled on every page (the context processor counts it)."""
    return render(request, "recovery/partials/nav_approvals.html")


def summary() -> dict:
    """How many jobs wait for approval, and the SUMMARY_SHOWN longest waits, for the dashboard."""
    return {
        "pending_approvals": approvals.pending_count(),
        "waiting_approvals": waiting_jobs(limit=SUMMARY_SHOWN),
    }


# --- one job: what will run, and the decision


@require_safe
@role_required
@with_job
def review(request: HttpRequest, job: Job) -> HttpResponse:
    return review_page(request, job)


@require_POST
@role_required(can=Can.APPROVE)
@with_job
def approve(request: HttpRequest, job: Job) -> HttpResponse:
    form = ApproveForm(request.POST)
    if not form.is_valid():
        return review_page(request, job, approve_form=form, status=400)
    data = form.cleaned_data
    return decide(
        request,
        job,
        form,
        lambda: approvals.approve_job(
            job_id=job.pk,
            approver=request.user,
            params_sha256=data["params_sha256"],
            comment=data["comment"],
            request=request,
        ),
        action="approve",
    )


@require_POST
@role_required(can=Can.APPROVE)
@with_job
def reject(request: HttpRequest, job: Job) -> HttpResponse:
    form = RejectForm(request.POST)
    if not form.is_valid():
        return review_page(request, job, reject_form=form, status=400)
    return decide(
        request,
        job,
        form,
        lambda: approvals.reject_job(
            job_id=job.pk, approver=request.user, comment=form.cleaned_data["comment"], request=request
        ),
        action="reject",
    )


def decide(request: HttpRequest, job: Job, form: forms.Form, decision, *, action: str) -> HttpResponse:
    """The password first (when due), then the decision; a refusal re-renders the page with its reason
    and keeps what was typed."""
    forms_kept = {f"{action}_form": form}
    try:
        reauth.confirm(request, form.cleaned_data["password"], action=f"{action} job {job.pk}")
    except reauth.ReauthFailed as exc:
        form.add_error("password", str(exc))
        return review_page(request, job, **forms_kept, status=403)
    try:
        decided = decision()
    except approvals.ApprovalRefused as exc:
        status = reauth.refusal_status(job, request.user)
        fresh = selectors.get_job(job_id=job.pk) or job
        return review_page(request, fresh, **forms_kept, refusal=str(exc), status=status)
    messages.success(request, outcome(decided, action))
    return redirect("recovery:job", job_id=job.pk)


def outcome(job: Job, action: str) -> str:
    if action == "reject":
        return f"You rejected job {job.pk}; it will not run."
    if job.state == Job.State.QUEUED:
        return f"You approved job {job.pk}: it is queued and runs next."
    if job.state == Job.State.APPROVED:
        return f"You approved job {job.pk}: it waits for the job working on {job.target} to finish."
    return f"You approved job {job.pk}; it needs more approvals before it runs."


def review_page(
    request: HttpRequest,
    job: Job,
    *,
    approve_form: ApproveForm | None = None,
    reject_form: RejectForm | None = None,
    refusal: str = "",
    status: int = 200,
) -> HttpResponse:
    context = review_context(request, job) | {"refusal": refusal}
    context["approve_form"] = approve_form or ApproveForm()
    context["reject_form"] = reject_form or RejectForm()
    return render(request, "recovery/approvals_review.html", context, status=status)


def review_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    user = request.user
    own = job.requested_by == user.get_username()
    waiting = job.state in approvals.WAITING
    context: dict[str, Any] = {
        "section": "approvals",
        "job": job,
        "params": pretty_json(job.params, sort_keys=True),
    }
    context |= {"tally": tally(job), "own": own, "waiting": waiting}
    context |= {
        "may_decide": waiting and not own and can(user, Can.APPROVE),
        "reauth_due": reauth.due(request),
    }
    try:
        context["estimate"] = selectors.estimate(kind=job.kind, params=job.params)
    except JobParamsError as exc:
        # What would have run can no longer (a snapshot was deleted, say): the approver should know.
        context["estimate_errors"] = exc.errors
    return context


# --- a job page's approvals panel


@require_safe
@role_required
@with_job
def job_approvals(request: HttpRequest, job: Job) -> HttpResponse:
    """Loaded into the job's page and polled until the job starts; 286 once it has (or has ended)."""
    own = job.requested_by == request.user.get_username()
    waiting = job.state in approvals.WAITING
    # Until the job starts, whether its approvals count can change (they are checked again then).
    poll = waiting or job.state == Job.State.QUEUED
    context = {"job": job, "tally": tally(job), "own": own, "waiting": waiting, "poll": poll}
    context["may_decide"] = waiting and not own and can(request.user, Can.APPROVE)
    response = render(request, "recovery/partials/approval_panel.html", context)
    return response if poll else stop_polling(response)
