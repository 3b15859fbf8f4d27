"""The drills page: past fault drills with their verdicts, and the buttons that start one (as a job)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from core.pages import role_required
from core.roles import Can
from recovery import services
from recovery.models import Job

DRILLS_SHOWN = 50


@require_safe
@role_required
def drill_list(request: HttpRequest) -> HttpResponse:
    drills = Job.objects.filter(kind=Job.Kind.DRILL).order_by("-pk")[:DRILLS_SHOWN]
    running = Job.objects.filter(kind=Job.Kind.DRILL, state__in=Job.ACTIVE).first()
    return render(
        request, "recovery/drill_list.html", {"section": "drills", "drills": drills, "running": running}
    )


@require_POST
@role_required(can=Can.OPERATE)
def drill_start(request: HttpRequest) -> HttpResponse:
    quick = request.POST.get("size") != "full"
    try:
        job = services.request_job(
            kind=Job.Kind.DRILL,
            params={"quick": quick},
            requested_by=request.user.get_username(),
            reason=request.POST.get("reason", "").strip() or "fault drill from the console",
            request=request,
        )
    except services.JobConflict as exc:
        messages.error(request, f"A drill is running already: job {exc.job.pk}.")
        return redirect("recovery:job", job_id=exc.job.pk)
    messages.success(request, f"Started drill job {job.pk}.")
    return redirect("recovery:job", job_id=job.pk)
