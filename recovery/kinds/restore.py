"""restore: load a snapshot into a fresh schema, replay the log after it, check that every stream was
caught up, and swap it in; the result says how much was lost (RPO) and how long it took (RTO)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from recovery import rebuild
from recovery.kinds.base import Load, register
from recovery.kinds.common import FinalError
from recovery.kinds.rebuilds import Rebuild
from recovery.models import Job, JobLane, JobLogLine, Snapshot
from recovery.params import Checker
from streams.projections import Projection, get_projection, quote

# Rows a second a snapshot loads at (COPY into a fresh schema, then its indexes), until a restore has
# finished here to measure it.
ASSUMED_LOAD_RATE = 50_000.0


@register
class Restore(Rebuild):
    name = "restore"
    position = 20
    rebuilds = True
    help = "Load a snapshot into a fresh schema, replay the log after it, and swap it in."
    params_help = "projection, snapshot or before, exclude, shards"
    fields = frozenset({"projection", "snapshot", "before", "exclude", "shards"})
    result_template = "recovery/results/restore.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        projection = checker.projection()
        before = checker.time("before")
        snapshot = None
        if checker.raw.get("snapshot") is not None and before is not None:
            checker.bad("before", "give a snapshot or a time to take the latest snapshot before, not both")
        elif checker.raw.get("snapshot") is not None:
            snapshot = checker.snapshot_id(projection)
        elif projection:
            snapshot = checker.latest_snapshot(projection, before)
        return {
            "projection": projection,
            "snapshot": snapshot,
            "before": before,
            "exclude": checker.exclude(),
            "shards": checker.shards(projection),
        }

    def load(self, params: dict[str, Any]) -> Load:
        """The snapshot's rows, which replace the live projection's; the dry run's events are the tail
        recorded after the snapshot, applied once they are loaded."""
        snapshot = Snapshot.objects.get(pk=params["snapshot"])
        rate, basis = _load_rate()
        live = _live_rows(get_projection(params["projection"]))
        taken = snapshot.taken_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        notes = [
            f"Loads snapshot {snapshot.name} (taken {taken}, at position {snapshot.position:,}): "
            f"{snapshot.rows:,} rows, which replace the live {params['projection']}'s "
            f"{live} once the tail is applied.",
            "Then applies the events recorded after the snapshot's position (the events above).",
        ]
        return Load(rows=snapshot.rows, seconds=snapshot.rows / rate, basis=basis, notes=notes)

    def _summary_head(self, job: Job, counts: str) -> list[str]:
        r, target = job.result, job.target
        return [
            f"{target} restored from snapshot {r['snapshot']} (position {r['snapshot_position']:,}) "
            f"and caught up to position {r['position']:,}: {counts}",
            f"RPO {r['rpo_events']:,} events lost   RTO {r['rto_seconds']:.1f} s to recover",
        ]

    def _check_before_swap(self, job: Job, projection: Projection, tail: JobLane) -> None:
        work = job.work
        with connection.cursor() as cursor:
            gaps = rebuild.stream_gaps(
                cursor,
                projection,
                work["schema"],
                after=work["base"],
                up_to=tail.position,
                exclude=self._exclude(job),
            )
        if gaps:
            raise FinalError(
                f"restore check failed: {gaps} streams have events the rebuilt {projection.name} "
                "has not applied; the live projection was left as it was"
            )

    def _rows_ahead(self, cursor, projection: Projection, schema: str) -> int | None:
        # Rows of the rebuilt or of the live projection that the log no longer holds: a log restored
        # from an older backup than the projection's.
        return max(
            rebuild.rows_ahead_of_log(cursor, schema), rebuild.rows_ahead_of_log(cursor, projection.schema)
        )

    def _more_result(self, job: Job, ahead: int | None) -> dict[str, Any]:
        started = job.started_at or timezone.now()
        return {
            "snapshot": job.work.get("snapshot"),
            "snapshot_position": job.work["base"],
            "rpo_events": ahead,
            "rto_seconds": round((timezone.now() - started).total_seconds(), 3),
        }


def _load_rate() -> tuple[float, str]:
    """Rows a second the last finished restores loaded their snapshot at: from the job's start to its
    stage `replaying`, which begins once the snapshot is in."""
    rates = []
    finished = Job.objects.filter(kind="restore", state=Job.State.SUCCEEDED, started_at__isnull=False)
    for job in finished.order_by("-pk")[:3]:
        snapshot = Snapshot.objects.filter(pk=job.params.get("snapshot")).first()
        loaded = (
            JobLogLine.objects.filter(job=job, message__startswith="stage: replaying").order_by("id").first()
        )
        if snapshot is None or loaded is None or not snapshot.rows:
            continue
        seconds = (loaded.at - job.started_at).total_seconds()
        if seconds > 0:
            rates.append(snapshot.rows / seconds)
    if not rates:
        return (
            ASSUMED_LOAD_RATE,
            f"assumed {ASSUMED_LOAD_RATE:,.0f} rows/s (no restore has finished yet to measure)",
        )
    rate = sum(rates) / len(rates)
    jobs = "the last restore" if len(rates) == 1 else f"the last {len(rates)} restores"
    return rate, f"measured: {rate:,.0f} rows/s over {jobs}"


def _live_rows(projection: Projection) -> str:
    """The live tables' rows, as the statistics have them (a count would read every table whole); an
    exact count only of tables never analysed, which are new and small."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.reltuples::bigint
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = %s AND c.relkind = 'r'
            """,
            [projection.schema],
        )
        tables = cursor.fetchall()
        if not tables:
            return "tables (it has none yet)"
        total, estimated = 0, False
        for name, tuples in tables:
            if tuples >= 0:
                total, estimated = total + tuples, True
                continue
            cursor.execute(f"SELECT count(*) FROM {quote(projection.schema)}.{quote(name)}")
            total += cursor.fetchone()[0]
    return f"{'about ' if estimated else ''}{total:,} rows"
