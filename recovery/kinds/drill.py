"""drill: a fault drill (recovery/drill) as a job, with its report as the result."""

from __future__ import annotations

from recovery import drill, runner, services
from recovery.drill.sandbox import STEPS
from recovery.kinds.common import FinalError
from recovery.models import Job, JobLane
from recovery.runner import Step

STAGES = ("preparing", *STEPS)


class _Cancelled(Exception):
    pass


class Drill:
    """One long slice: the drill plays in a child process against a scratch database while this slice
    relays its stages as progress, which keeps the heartbeat fresh. A killed worker's drill starts over
    from the beginning on the next delivery; the scratch database it left behind is dropped first."""

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
                quick=job.params["quick"], on_progress=progress, name=f"replaydesk_drill_{job.pk}"
            )
        except _Cancelled:
            return Step(again=True)  # the next slice finds the cancel and ends the job
        except drill.DrillError as exc:
            raise FinalError(str(exc)) from exc
        Job.objects.filter(pk=job.pk).update(done=len(STAGES))
        if not report["passed"]:
            Job.objects.filter(pk=job.pk).update(result=report)
            wrong = ", ".join(f"{name}: {count}" for name, count in report["checks"].items() if count)
            raise FinalError(f"the drill failed its checks ({wrong})")
        message = (
            f"drill passed: RPO {report['rpo_events']} events, RTO {report['rto_seconds']} s, "
            f"{report['events_replayed']} events replayed, {report['downstream_resent']} re-sent downstream"
        )
        runner.finish(job, result=report, message=message)
        return Step(done=True)

    def lane(self, job: Job, lane: JobLane, deadline: float) -> None:
        raise AssertionError("a drill has no lanes")

    def cancelled(self, job: Job) -> None:
        pass  # the slice that saw the cancel stopped the drill and dropped its database
