"""Reads about jobs and snapshots: lists (keyset paged), a job's log, and the dry-run estimate."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet

from recovery import params as job_params
from recovery import rebuild
from recovery.kinds.base import JobKind, get, kinds
from recovery.models import Job, JobLogLine, Snapshot
from streams import consumer_kinds, selectors
from streams.models import Consumer, Event

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def list_jobs(
    *,
    kind: str | None = None,
    state: str | None = None,
    target: str | None = None,
    before: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Job]:
    """Newest first, before the cursor job id `before`."""
    jobs: QuerySet[Job] = Job.objects.order_by("-pk")
    if kind:
        jobs = jobs.filter(kind=kind)
    if state:
        jobs = jobs.filter(state=state)
    if target:
        jobs = jobs.filter(target=target)
    if before is not None:
        jobs = jobs.filter(pk__lt=before)
    return list(jobs[:limit])


def get_job(*, job_id: int) -> Job | None:
    return Job.objects.filter(pk=job_id).first()


def job_log(*, job: Job, after: int | None = None, limit: int = 500) -> list[JobLogLine]:
    """The log in order: the last `limit` lines, or the lines after the cursor line id `after`."""
    lines = JobLogLine.objects.filter(job=job)
    if after is not None:
        return list(lines.filter(pk__gt=after).order_by("pk")[:limit])
    return list(reversed(lines.order_by("-pk")[:limit]))


def running_jobs() -> list[Job]:
    """Jobs queued or running, oldest first (the dashboard's list)."""
    return list(Job.objects.filter(state__in=Job.ACTIVE).order_by("pk"))


def rebuilding_consumers(names: Collection[str]) -> list[str]:
    """Those of `names` that a running job of a kind that rebuilds (a replay, a restore) is rebuilding
    (their health is `rebuilding`; registered with streams.health in RecoveryConfig.ready)."""
    rebuilding = [kind.name for kind in kinds() if kind.rebuilds]
    return list(
        Job.objects.filter(target__in=names, kind__in=rebuilding, state=Job.State.RUNNING).values_list(
            "target", flat=True
        )
    )


def list_snapshots(
    *, projection: str | None = None, before: int | None = None, limit: int = DEFAULT_LIMIT
) -> list[Snapshot]:
    snapshots = Snapshot.objects.order_by("-pk")
    if projection:
        snapshots = snapshots.filter(projection=projection)
    if before is not None:
        snapshots = snapshots.filter(pk__lt=before)
    return list(snapshots[:limit])


def get_snapshot(*, snapshot_id: int) -> Snapshot | None:
    return Snapshot.objects.filter(pk=snapshot_id).first()


@dataclass(frozen=True)
class Estimate:
    """What a job would do, before it runs: the events and streams it touches and how long it may take."""

    params: dict[str, Any]
    params_sha256: str
    events: int
    streams: int
    excluded: int
    rate: float | None
    seconds: float | None
    # Where the rate comes from: finished jobs measured, or an assumption (said so).
    basis: str
    # For kinds that say (JobKind.dry_run): the events per stream, and what it would leave alone.
    breakdown: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Whether `events` and `streams` were counted (else the kind cannot say before it runs).
    counted: bool = True
    # For a kind that loads rows before it reads the log (a restore: JobKind.load): the rows it loads
    # in place of the live tables'; then `events` are the tail it applies after them.
    rows: int | None = None


def estimate(*, kind: str, params: dict[str, Any]) -> Estimate:
    """The dry run: checks the parameters as a request would (JobParamsError), writes nothing."""
    canonical = job_params.check(kind, params)
    found = get(kind)
    events, excluded = _affected(found, canonical)
    stream_count = _streams(found, canonical)
    dry_run = _dry_run(found, canonical)
    if dry_run is not None:
        events, stream_count = dry_run.events, dry_run.streams
    rate, basis = _measured_rate(found, found.target(canonical))
    rate, basis = found.limit_rate(canonical, rate, basis)
    counted = found.counts_events or dry_run is not None
    seconds = round(events / rate, 1) if rate and counted else None
    notes = dry_run.notes if dry_run else []
    load = found.load(canonical)
    if load is not None:
        # Loading the rows is most of a restore's time when its tail is short: both are counted.
        seconds = None if load.seconds is None or seconds is None else seconds + load.seconds
        basis = f"{basis}; loading: {load.basis}"
        notes = [*load.notes, *notes]
    return Estimate(
        params=canonical,
        params_sha256=job_params.params_sha256(canonical),
        events=events,
        streams=stream_count,
        excluded=excluded,
        rate=rate,
        seconds=seconds,
        basis=basis,
        breakdown=dry_run.breakdown if dry_run else [],
        notes=notes,
        counted=counted,
        rows=load.rows if load is not None else None,
    )


def _dry_run(kind: JobKind, params: dict[str, Any]):
    return None if kind.counts_events else kind.dry_run(params)


def resync_events(consumer: Consumer, params: dict[str, Any], *, after: int, up_to: int) -> QuerySet[Event]:
    """The events a resync of `consumer` sends between two positions, exclusions not yet applied."""
    window = Event.objects.filter(position__gt=after, position__lte=up_to)
    events = selectors.filter_events(window, consumer_kinds.follows(consumer=consumer))
    if params.get("streams"):
        events = events.filter(stream__name__in=params["streams"])
    return events


def _affected(kind: JobKind, params: dict[str, Any]) -> tuple[int, int]:
    if not kind.counts_events:
        return 0, 0
    events = kind.events(params)
    rule = rebuild.excluded(params.get("exclude") or {})
    dropped = events.filter(rule).count() if rule is not None else 0
    return events.count() - dropped, dropped


def _streams(kind: JobKind, params: dict[str, Any]) -> int:
    if not kind.counts_events:
        return 0
    return kind.events(params).values("stream_id").distinct().count()


def _measured_rate(kind: JobKind, target: str) -> tuple[float | None, str]:
    """Events per second of the last finished jobs of this kind on this target (or of this kind)."""
    finished = Job.objects.filter(kind=kind.name, state=Job.State.SUCCEEDED, started_at__isnull=False)
    for scope, jobs in (("on " + target, finished.filter(target=target)), ("of this kind", finished)):
        rates = []
        for job in jobs.filter(~Q(done=0)).order_by("-pk")[:3]:
            seconds = (job.finished_at - job.started_at).total_seconds()
            if seconds > 0:
                rates.append(job.done / seconds)
        if rates:
            rate = sum(rates) / len(rates)
            return round(
                rate, 1
            ), f"measured: {rate:,.0f} events/s over {_last_jobs(len(rates), kind.name)} {scope}"
    return kind.unmeasured_rate()


def _last_jobs(count: int, kind: str) -> str:
    return f"the last {kind} job" if count == 1 else f"the last {count} {kind} jobs"
