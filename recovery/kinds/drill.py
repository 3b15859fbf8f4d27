"""drill: a fault drill (recovery/drill) as a job, with its report as the result."""

from __future__ import annotations

from typing import Any

from recovery import drill, runner, services
from recovery.drill.sandbox import STEPS
from recovery.kinds.base import JobKind, Step, register
from recovery.kinds.common import FinalError
from recovery.models import Job
from recovery.params import Checker

STAGES = ("preparing", *STEPS)
# A drill works in a scratch database of its own; one runs at a time. Not a possible consumer name.
DRILL_TARGET = "drill-sandbox"


class _Cancelled(Exception):
    pass


@register
class Drill(JobKind):
    """One long slice: the drill plays in a child process against a scratch database while this slice
    relays its stages as progress, which keeps the heartbeat fresh. A killed worker's drill starts over
    from the beginning on the next delivery; the scratch database it left behind is dropped first."""

    name = "drill"
    position = 60
    help = (
        "Play a restore from an old backup in a scratch database and report RPO and RTO "
        "(the store is not touched)."
    )
    params_help = "quick"
    fields = frozenset({"quick"})
    unit = "stages"
    approvals = 0
    counts_events = False
    result_template = "recovery/results/drill.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        quick = checker.raw.get("quick", True)
        if not isinstance(quick, bool):
            checker.bad("quick", "must be true (a drill of about a minute) or false (the full drill)")
        return {"quick": quick}

    def target(self, params: dict[str, Any]) -> str:
        return DRILL_TARGET

    def title(self, job: Job) -> str:
        # Its target is only the lock's name: the drill plays in a scratch database, not on a consumer.
        return f"{'quick' if job.params.get('quick', True) else 'full'} fault drill"

    def target_url(self, target: str) -> str:
        from django.urls import reverse

        return reverse("recovery:drills")

    def unmeasured_rate(self) -> tuple[float | None, str]:
        return None, "a quick drill takes about a minute, the full one several"

    def summary(self, job: Job) -> list[str]:
        return drill.report_lines(job.result)

    def main(self, job: Job, deadline: float) -> Step:
        runner.set_stage(job, STAGES[0], total=len(STAGES))

        def progress(stage: str, message: str) -> None:
            if runner.cancel_requested(job):
                raise _Cancelled
            if stage != job.stage and stage in STAGES:
                Job.objects.filter(pk=job.pk).update(done=STAGES.index(stage))
                runner.set_stage(job, stage)
            runner.report(job, force=True)
            services.log(job, message)

        try:
            report = drill.run(
                quick=job.params["quick"], on_progress=progress, name=drill.scratch_name(job.pk)
            )
        except _Cancelled:
            return Step.AGAIN  # the next slice finds the cancel and ends the job
        except drill.DrillError as exc:
            raise FinalError(str(exc)) from exc
        Job.objects.filter(pk=job.pk).update(done=len(STAGES))
        if not report["passed"]:
            Job.objects.filter(pk=job.pk).update(result=report)
            raise FinalError(f"the drill failed its checks ({drill.wrong_checks(report['checks'])})")

        message = (
            f"drill passed: RPO {report['rpo_events']} events, RTO {report['rto_seconds']} s, "
            f"{report['events_replayed']} events replayed, {report['downstream_resent']} re-sent downstream"
        )
        runner.finish(job, result=report, message=message)
        return Step.DONE

    def cancelled(self, job: Job) -> None:
        pass  # the slice that saw the cancel stopped the drill and dropped its database
