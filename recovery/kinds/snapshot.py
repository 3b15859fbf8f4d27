"""snapshot: one slice, one REPEATABLE READ transaction (recovery/snapshots.py), catalogued."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.db import transaction
from django.urls import reverse

from recovery import runner, snapshots
from recovery.kinds.base import JobKind, Step, register
from recovery.kinds.common import FinalError, projection_of
from recovery.models import Job, Snapshot
from recovery.params import Checker
from recovery.terminal import format_bytes
from streams.consumer_links import Link


@register
class TakeSnapshot(JobKind):
    name = "snapshot"
    position = 10
    offered_on = ("projection",)
    button_order = 3
    help = "Copy the projection's tables at one position, with a checksum per table."
    params_help = "projection"
    fields = frozenset({"projection"})
    unit = "rows"
    approvals = 0
    counts_events = False
    result_template = "recovery/results/snapshot.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        return {"projection": checker.projection()}

    def consumer_links(self, consumer: str) -> list[Link]:
        snapshots = f"{reverse('recovery:snapshots')}?{urlencode({'projection': consumer})}"
        return [*super().consumer_links(consumer), Link("Its snapshots", snapshots, button=False)]

    def unmeasured_rate(self) -> tuple[float | None, str]:
        return None, "no snapshot measured yet"

    def summary(self, job: Job) -> list[str]:
        r = job.result
        return [
            f"snapshot {r['snapshot']} of {job.target}: {r['name']} at position {r['position']:,}, "
            f"{r['rows']:,} rows, {format_bytes(r['bytes'])}"
        ]

    def main(self, job: Job, deadline: float) -> Step:
        with transaction.atomic():
            runner.set_stage(job, "copying")
        try:
            path, manifest = snapshots.take_snapshot(projection_name=projection_of(job).name)
        except snapshots.SnapshotError as exc:
            raise FinalError(str(exc)) from exc
        size = sum(snapshots.file_size(path, table.file) for table in manifest.tables)
        with transaction.atomic():
            snapshot = Snapshot.objects.create(
                projection=manifest.projection,
                name=path.name,
                position=manifest.position,
                version=manifest.version,
                taken_at=manifest.taken_at,
                rows=manifest.rows,
                bytes=size,
                manifest=snapshots.manifest_dict(manifest),
                job=job,
                scheduled=job.scheduled,
            )
            Job.objects.filter(pk=job.pk).update(done=manifest.rows, total=manifest.rows)
            result = {
                "snapshot": snapshot.pk,
                "name": snapshot.name,
                "position": manifest.position,
                "rows": manifest.rows,
                "bytes": size,
            }
            runner.finish(job, result=result, message=f"snapshot {snapshot.name}: {manifest.rows} rows")
        return Step.DONE
