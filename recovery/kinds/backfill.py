"""backfill: copy a source's history into the log as a job, with progress and an ETA, then hand the source
to its live follower. Requested when a source is added (recovery/apps.py); it copies exactly as the
follower does (streams.source_follow.copy_step: the same transaction, the same horizon, the same
parking), holding the source's follower lock, so the two never copy at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.urls import reverse

from core import locks, principals
from recovery import runner
from recovery.kinds.base import JobKind, Step, register
from recovery.kinds.common import FinalError
from recovery.models import Job
from recovery.params import Checker
from streams import source_connect, source_follow, source_horizon, source_kinds
from streams.models import Source
from streams.source_kinds import SourceError

TARGET_PREFIX = "source."


@register
class Backfill(JobKind):
    name = "backfill"
    position = 70
    help = "Copy a source's events from where its copy stands to the source's head, then follow it live."
    params_help = "source"
    fields = frozenset({"source"})
    approvals = 0
    counts_events = False
    result_template = "recovery/results/backfill.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        return {"source": checker.source_name()}

    def target(self, params: dict[str, Any]) -> str:
        return f"{TARGET_PREFIX}{params['source']}"

    def target_url(self, target: str) -> str:
        return reverse("streams:source", args=[target.removeprefix(TARGET_PREFIX)])

    def unmeasured_rate(self) -> tuple[float | None, str]:
        return None, "no backfill has finished yet to measure"

    def summary(self, job: Job) -> list[str]:
        r = job.result
        return [
            f"copied {r['copied']:,} events of {r['source']} ({r['parked']:,} parked) up to its position "
            f"{r['position']:,}; it is followed live from there"
        ]

    def main(self, job: Job, deadline: float) -> Step:
        name = job.params["source"]

        def copy(source: Source) -> Step:
            if source.state != Source.State.RUNNING:
                raise FinalError(f"{name} is {source.state}; resume it, then retry this job")
            return self._copy(job, source, deadline)

        return with_source(name, deadline, copy)

    def _copy(self, job: Job, source: Source, deadline: float) -> Step:
        kind = source_kinds.get(source.kind)
        dsn = source_connect.dsn_of(dsn_encrypted=source.dsn_encrypted, dsn_env=source.dsn_env)
        copier = source_follow.appender(source.name)
        with source_connect.connect(dsn) as reader:
            if not job.stage:
                total = kind.count(reader, source.options, after=source.position)
                with transaction.atomic():
                    runner.set_stage(job, "copying", total=total, work={"from_position": source.position})
            while time.monotonic() < deadline:
                if runner.cancel_requested(job):
                    return Step.AGAIN
                with principals.acting_as(copier):  # what it copies, not the job's own audit
                    step = source_follow.copy_step(
                        source, kind, reader, batch=settings.REPLAYDESK_SOURCE_BACKFILL_BATCH
                    )
                if step.copied or step.parked:
                    Job.objects.filter(pk=job.pk).update(done=F("done") + step.copied + step.parked)
                    runner.report(job)
                if step.caught_up and not step.waiting:
                    return self._finish(job, source)
                if step.waiting:
                    time.sleep(min(source_horizon.GRACE_SECONDS, max(0.0, deadline - time.monotonic())))
        return Step.AGAIN

    def _finish(self, job: Job, source: Source) -> Step:
        job.refresh_from_db(fields=["done"])
        source.refresh_from_db()
        parked = source.parked.filter(parked_at__gte=job.started_at).count() if job.started_at else 0
        result = {
            "source": source.name,
            "copied": job.done - parked,
            "parked": parked,
            "position": source.position,
            "from_position": job.work.get("from_position", 0),
        }
        with transaction.atomic():
            runner.finish(job, result=result, message=f"{job.done} events of {source.name} copied")
            transaction.on_commit(lambda: _follow_live(source.name))
        return Step.DONE


def with_source(name: str, deadline: float, work: Callable[[Source], Step]) -> Step:
    """`work(source)` with the source's follower lock held, so that no follower copies meanwhile (AGAIN,
    after a short wait, while a follower's slice holds it); a SourceError fails the job with its reason."""
    with locks.held(locks.lock_key("source", name)) as got:
        if not got:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            return Step.AGAIN  # the live follower is in a slice; it ends within seconds
        source = Source.objects.filter(name=name).first()
        if source is None:
            raise FinalError(f"no source is named {name!r} any more")
        try:
            return work(source)
        except SourceError as exc:
            raise FinalError(str(exc)) from exc


def _follow_live(name: str) -> None:
    from streams.tasks import enqueue_source

    enqueue_source(name)


def request_backfill(name: str, actor: str) -> None:
    """A new source's history, copied by a backfill job (source_services.copy_history_with)."""
    from recovery import services

    services.request_job(
        kind="backfill",
        params={"source": name},
        requested_by=actor or "system",
        reason=f"copy the history of the new source {name}",
    )
