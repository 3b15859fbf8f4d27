"""restore: load a snapshot into a fresh schema, replay the log after it, check that every stream was
caught up, and swap it in; the result says how much was lost (RPO) and how long it took (RTO)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from recovery import rebuild
from recovery.kinds.base import register
from recovery.kinds.common import FinalError
from recovery.kinds.rebuilds import Rebuild
from recovery.models import Job, JobLane
from recovery.params import Checker
from streams.projections import Projection


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
