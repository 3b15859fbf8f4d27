"""The command line's side of jobs (replaydesk snapshot, replay, restore, resync, verify, jobs): request
a job, then follow its row until it finishes and say what it did.

Following only reads the job row and its log (every POLL_SECONDS), so it works the same whether a Celery
worker runs the job or this process does (--inline). Stopping the follower never stops the job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import connections
from django.utils import timezone

from recovery import runner, selectors, services
from recovery.kinds.base import kind_of
from recovery.models import Job
from recovery.params import JobParamsError
from recovery.runner import run_inline
from recovery.terminal import format_seconds, job_json, render_progress, summary, unit_of

POLL_SECONDS = 0.5
# Without a terminal, a progress line this often (and at every stage change), so logs stay readable.
PLAIN_EVERY_SECONDS = 5.0
# A job still queued after this long probably has no worker to run it: say so once.
NO_WORKER_HINT_SECONDS = 10.0

# How the command line names each parameter, for the errors the service gives per field.
OPTION_NAMES = {
    "projection": "PROJECTION",
    "sink": "SINK",
    "reason": "--reason",
    "snapshot": "--snapshot",
    "before": "--before",
    "stream": "--stream",
    "streams": "--stream",
    "exclude": "--exclude-*",
    "exclude.event_ids": "--exclude-event",
    "exclude.actor": "--exclude-actor",
    "exclude.types": "--exclude-type",
    "exclude.recorded_after": "--exclude-after",
    "exclude.recorded_before": "--exclude-before",
    "shards": "--shards",
    "repair": "--repair",
    "from_position": "--from-position",
    "from_time": "--from-time",
    "rate_per_second": "--rate",
    "subscription": "SUBSCRIPTION",
    "to_position": "--to-position",
    "to_time": "--to-time",
    "source": "SOURCE",
    "samples": "--samples",
}


# --- arguments


def add_common_arguments(parser) -> None:
    parser.add_argument("--reason", default="", help="Why this job should run (required; it is audited).")
    parser.add_argument(
        "--actor", default=default_actor(), help="Who asks, for the audit trail (default: %(default)s)."
    )
    parser.add_argument("--no-wait", action="store_true", help="Print the job id and exit; do not follow.")
    parser.add_argument(
        "--inline", action="store_true", help="Run the job in this process (a machine without a worker)."
    )
    parser.add_argument("--json", action="store_true", help="Print the finished job as one JSON object.")
    parser.add_argument(
        "--dry-run", action="store_true", help="Print what the job would do and how long; create nothing."
    )


def add_exclude_arguments(parser) -> None:
    group = parser.add_argument_group("exclusions (drop bad events from the rebuild)")
    group.add_argument("--exclude-event", action="append", default=[], metavar="ID", help="Repeatable.")
    group.add_argument("--exclude-actor", metavar="A", help="Events by this actor …")
    group.add_argument("--exclude-type", action="append", default=[], metavar="T", help="… of this type …")
    group.add_argument("--exclude-after", metavar="TIME", help="… recorded after TIME (ISO 8601) …")
    group.add_argument("--exclude-before", metavar="TIME", help="… and before TIME: one rule, all given.")


def exclude_from(options: dict[str, Any]) -> dict[str, Any]:
    exclude = {
        "event_ids": options["exclude_event"],
        "actor": options["exclude_actor"],
        "types": options["exclude_type"],
        "recorded_after": options["exclude_after"],
        "recorded_before": options["exclude_before"],
    }
    return {field: value for field, value in exclude.items() if value}


def given(**params: Any) -> dict[str, Any]:
    """The parameters the user gave: the service fills in the defaults of the rest."""
    return {field: value for field, value in params.items() if value is not None and value != {}}


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # a container user with no name
        return "cli"


# --- requesting


def request_and_follow(command: BaseCommand, *, kind: str, params: dict[str, Any], options: dict) -> None:
    """The whole of a job command: a dry run, or a new job that is then followed (or not, --no-wait)."""
    if options["no_wait"] and options["inline"]:
        raise CommandError("--inline runs the job here and waits for it; drop --no-wait")
    if options["dry_run"]:
        print_estimate(command, kind=kind, params=params, as_json=options["json"])
        return
    try:
        # --inline: no worker is to take it, so Celery is not told.
        with runner.inline() if options["inline"] else contextlib.nullcontext():
            job = services.request_job(
                kind=kind, params=params, requested_by=options["actor"], reason=options["reason"]
            )
    except JobParamsError as exc:
        raise params_error(kind, exc) from exc
    except services.JobConflict as exc:
        raise conflict_error(exc) from exc
    after_request(command, job, options)


def after_request(command: BaseCommand, job: Job, options: dict) -> None:
    if options["no_wait"]:
        job = selectors.get_job(job_id=job.pk)  # with what the database filled in (created_at)
        command.stdout.write(json.dumps(job_json(job)) if options["json"] else str(job.pk))
        return
    Follower(command, job, inline=options["inline"], as_json=options["json"]).run()


def params_error(kind: str, exc: JobParamsError) -> CommandError:
    lines = [f"cannot request this {kind}:"]
    for field, messages in exc.errors.items():
        lines += [f"  {OPTION_NAMES.get(field, field)}: {message}" for message in messages]
    return CommandError("\n".join(lines))


def conflict_error(exc: services.JobConflict) -> CommandError:
    return CommandError(
        f"{exc}\n  follow it: replaydesk jobs --follow {exc.job.pk}"
        f"\n  cancel it: replaydesk jobs --cancel {exc.job.pk}"
    )


def print_estimate(command: BaseCommand, *, kind: str, params: dict[str, Any], as_json: bool) -> None:
    try:
        estimate = selectors.estimate(kind=kind, params=params)
    except JobParamsError as exc:
        raise params_error(kind, exc) from exc
    if as_json:
        command.stdout.write(json.dumps(dataclasses.asdict(estimate)))
        return
    from recovery.params import target_of

    write = command.stdout.write
    write(f"dry run of {kind} {target_of(kind, estimate.params)} (nothing was created):")
    if estimate.counted:
        excluded = f" ({estimate.excluded:,} excluded)" if estimate.excluded else ""
        write(f"  events  {estimate.events:,} in {estimate.streams:,} streams{excluded}")
    for name, events in estimate.breakdown:
        write(f"          {events:>10,}  {name}")
    for note in estimate.notes:
        write(f"  note    {note}")
    took = f"about {format_seconds(estimate.seconds)}" if estimate.seconds is not None else "not known"
    write(f"  time    {took} ({estimate.basis})")
    write(f"  params  {json.dumps(estimate.params, sort_keys=True)}")
    write(f"  sha256  {estimate.params_sha256}")


# --- following


class Follower:
    """Polls one job until it finishes: a redrawn bar on a terminal, plain lines otherwise, and its new
    log lines either way. With --json, all that goes to stderr so that stdout is one JSON object."""

    def __init__(self, command: BaseCommand, job: Job, *, inline: bool, as_json: bool):
        self.command, self.job, self.inline, self.as_json = command, job, inline, as_json
        self.out: OutputWrapper = command.stderr if as_json else command.stdout
        self.tty = self.out.isatty()
        self.last_log: int | None = None
        self.stage: str | None = None
        self.plain_at = 0.0
        self.bar_drawn = False

    def run(self) -> None:
        job, started = self.job, time.monotonic()
        self.line(f"job {job.pk}: {job.kind} {job.target} is {job.state.replace('_', ' ')}")
        worker = InlineRun(job.pk) if self.inline else None
        hinted = False
        try:
            while True:
                job = selectors.get_job(job_id=job.pk)
                self.show_log(job)
                self.show_progress(job)
                if job.finished:
                    break
                if worker is not None and not worker.is_alive():
                    worker.stopped_early(job)
                if not hinted and worker is None and time.monotonic() - started > NO_WORKER_HINT_SECONDS:
                    hinted = self.hint_no_worker(job)
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.end_bar()
            raise CommandError(interrupted(job, self.inline), returncode=130) from None
        self.end_bar()
        if worker is not None:
            worker.join(5)
        self.finished(job)

    def show_log(self, job: Job) -> None:
        while lines := selectors.job_log(job=job, after=self.last_log):
            for entry in lines:
                level = "" if entry.level == "info" else f"{entry.level}: "
                self.line(f"  {timezone.localtime(entry.at):%H:%M:%S} {level}{entry.message}")
            self.last_log = lines[-1].pk

    def show_progress(self, job: Job) -> None:
        text = render_progress(
            label=f"{job.kind} {job.target}",
            done=job.done,
            total=job.total,
            rate=job.rate,
            eta_seconds=job.eta_seconds,
            stage=job.stage or job.state,
            unit=unit_of(job.kind),
            bar=self.tty,
        )
        if self.tty:
            self.out.write(f"\r{text}\033[K", ending="")
            self.bar_drawn = True
        elif job.stage != self.stage or time.monotonic() - self.plain_at >= PLAIN_EVERY_SECONDS:
            self.line(text)
            self.stage, self.plain_at = job.stage, time.monotonic()
        self.out.flush()

    def hint_no_worker(self, job: Job) -> bool:
        if job.state != Job.State.QUEUED:
            return job.state == Job.State.RUNNING  # a worker has it: no hint needed, ever
        self.line(
            f"no worker has started job {job.pk} yet: start one (replaydesk up, or celery -A console worker"
            f" --queues live,recovery), or run it here: replaydesk jobs --follow {job.pk} --inline"
        )
        return True

    def line(self, text: str) -> None:
        """A line of its own; on a terminal, above the bar, which is drawn again on the next poll."""
        if self.bar_drawn:
            self.out.write("\r\033[K", ending="")
            self.bar_drawn = False
        self.out.write(text)
        self.out.flush()

    def end_bar(self) -> None:
        if self.bar_drawn:
            self.out.write("")
            self.bar_drawn = False

    def finished(self, job: Job) -> None:
        if self.as_json:
            self.command.stdout.write(json.dumps(job_json(job)))
        if job.state != Job.State.SUCCEEDED:
            raise CommandError(failure(job), returncode=1)
        if not self.as_json:
            for text in summary(job):
                self.command.stdout.write(text)
        trouble = kind_of(job).exit_error(job)
        if trouble is not None:
            returncode, message = trouble
            raise CommandError(message, returncode=returncode)


class InlineRun(threading.Thread):
    """--inline: the job runs in this thread (as a worker would run it) while the main thread follows it.
    A daemon, so that Ctrl-C ends the process: the job keeps its checkpoint and a worker goes on later."""

    def __init__(self, job_id: int):
        super().__init__(name=f"job-{job_id}", daemon=True)
        self.job_id = job_id
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            run_inline(self.job_id)
        except Exception as exc:  # noqa: BLE001 — reported by the follower, which has the terminal
            self.error = exc
        finally:
            connections.close_all()  # this thread's connections only

    def stopped_early(self, job: Job) -> None:
        """The thread ended and the job is not finished: say why instead of waiting for ever."""
        job.refresh_from_db()
        if job.finished:
            return
        if self.error is not None:
            raise CommandError(
                f"running job {job.pk} here stopped: {self.error}; it keeps its checkpoint "
                f"(go on: replaydesk jobs --follow {job.pk} --inline)"
            )
        raise CommandError(f"job {job.pk} is {job.state}; --inline runs only a queued or running job")


def interrupted(job: Job, inline: bool) -> str:
    if inline:
        return (
            f"stopped: job {job.pk} was running in this process and stops with it; it keeps its "
            f"checkpoint, and a worker (or replaydesk jobs --follow {job.pk} --inline) goes on from there."
            f"\n  cancel it: replaydesk jobs --cancel {job.pk}"
        )
    return (
        f"stopped following job {job.pk}; the job goes on."
        f"\n  follow it again: replaydesk jobs --follow {job.pk}"
        f"\n  cancel it: replaydesk jobs --cancel {job.pk}"
    )


def failure(job: Job) -> str:
    what = f"job {job.pk} ({job.kind} {job.target})"
    if job.state == Job.State.FAILED:
        return f"{what} failed: {job.error}\n  retry it from its checkpoint: replaydesk jobs --retry {job.pk}"
    if job.state == Job.State.CANCELLED:
        return f"{what} was cancelled by {job.cancel_requested_by or 'the system'}"
    return f"{what} was {job.state}"
