"""replaydesk jobs [--kind K] [--state S] [--target T] [--limit N] [--json]
replaydesk jobs --cancel ID | --retry ID | --follow ID"""

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from recovery import follow, selectors, services, terminal
from recovery.kinds import base as registry
from recovery.models import Job

REASON_WIDTH = 40


class Command(BaseCommand):
    help = "List jobs, newest first; or cancel, retry or follow one."

    def add_arguments(self, parser):
        parser.add_argument("--kind", choices=registry.names())
        parser.add_argument("--state", choices=Job.State.values)
        parser.add_argument("--target", metavar="NAME", help="Only jobs on this projection or sink.")
        parser.add_argument("--limit", type=int, default=20, help=f"At most {selectors.MAX_LIMIT}.")
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--cancel", type=int, metavar="ID", help="Cancel a job (a running one stops soon)."
        )
        action.add_argument(
            "--retry", type=int, metavar="ID", help="Queue a failed job again, from its checkpoint."
        )
        action.add_argument("--follow", type=int, metavar="ID", help="Follow a job until it finishes.")
        parser.add_argument(
            "--actor", default=follow.default_actor(), help="Who acts (default: %(default)s)."
        )
        parser.add_argument("--no-wait", action="store_true", help="With --retry: do not follow it.")
        parser.add_argument("--inline", action="store_true", help="With --retry or --follow: run it here.")
        parser.add_argument("--json", action="store_true", help="JSON: one object per job, a line each.")

    def handle(self, *args, **options):
        if options["cancel"] is not None:
            self._cancel(options)
        elif options["retry"] is not None:
            self._retry(options)
        elif options["follow"] is not None:
            job = self._job(options["follow"])
            follow.Follower(self, job, inline=options["inline"], as_json=options["json"]).run()
        else:
            self._list(options)

    def _cancel(self, options):
        try:
            job = services.cancel_job(job_id=options["cancel"], actor=options["actor"])
        except services.JobError as exc:
            raise CommandError(str(exc)) from exc
        if job.state == Job.State.CANCELLED:
            self.stdout.write(f"job {job.pk} ({job.kind} {job.target}) cancelled; it had not started")
        else:
            self.stdout.write(
                f"job {job.pk} ({job.kind} {job.target}) stops at its next batch; "
                f"follow it: replaydesk jobs --follow {job.pk}"
            )

    def _retry(self, options):
        if options["no_wait"] and options["inline"]:
            raise CommandError("--inline runs the job here and waits for it; drop --no-wait")
        try:
            job = services.retry_job(job_id=options["retry"], actor=options["actor"])
        except services.JobConflict as exc:
            raise follow.conflict_error(exc) from exc
        except services.JobError as exc:
            raise CommandError(str(exc)) from exc
        if not options["no_wait"] and not options["json"]:
            self.stdout.write(f"job {job.pk} queued again; it goes on from stage {job.stage or 'start'}")
        follow.after_request(self, job, options)

    def _list(self, options):
        if not 1 <= options["limit"] <= selectors.MAX_LIMIT:
            raise CommandError(f"--limit must be from 1 to {selectors.MAX_LIMIT}")
        jobs = selectors.list_jobs(
            kind=options["kind"], state=options["state"], target=options["target"], limit=options["limit"]
        )
        if options["json"]:
            for job in jobs:
                self.stdout.write(json.dumps(terminal.job_json(job)))
            return
        if not jobs:
            filtered = options["kind"] or options["state"] or options["target"]
            self.stdout.write(
                "No jobs match." if filtered else "No jobs yet (replaydesk snapshot PROJECTION --reason …)."
            )
            return
        rows = [("ID", "KIND", "TARGET", "STATE", "STAGE", "PROGRESS", "BY", "CREATED", "REASON")]
        rows += [self._row(job) for job in jobs]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*padded, row[-1]]).rstrip())

    def _row(self, job: Job) -> tuple[str, ...]:
        if job.total:
            progress = f"{min(job.done * 100 // job.total, 100)}% {job.done:,}/{job.total:,}"
        else:
            progress = f"{job.done:,}" if job.done else "-"
        reason = job.reason if len(job.reason) <= REASON_WIDTH else job.reason[: REASON_WIDTH - 1] + "…"
        return (
            str(job.pk),
            job.kind,
            job.target,
            job.state,
            job.stage or "-",
            progress,
            job.requested_by,
            f"{timezone.localtime(job.created_at):%Y-%m-%d %H:%M}",
            reason.replace("\n", " "),
        )

    def _job(self, job_id: int) -> Job:
        job = selectors.get_job(job_id=job_id)
        if job is None:
            raise CommandError(f"no job has id {job_id}")
        return job
