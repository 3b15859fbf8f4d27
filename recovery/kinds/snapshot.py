"""snapshot: one slice, one REPEATABLE READ transaction (recovery/snapshots.py), catalogued."""

from __future__ import annotations

from django.db import transaction

from recovery import runner, snapshots
from recovery.kinds.common import FinalError, projection_of
from recovery.models import Job, JobLane, Snapshot
from recovery.runner import Step


class TakeSnapshot:
    def main(self, job: Job, deadline: float) -> Step:
        with transaction.atomic():
            runner.set_stage(job, "copying")
        try:
            path, manifest = snapshots.take_snapshot(projection_name=projection_of(job).name)
        except snapshots.SnapshotError as exc:
            raise FinalError(str(exc)) from exc
        size = sum((path / table.file).stat().st_size for table in manifest.tables)
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
                scheduled=job.requested_by == "schedule",
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
        return Step(done=True)

    def lane(self, job: Job, lane: JobLane, deadline: float) -> None:
        raise AssertionError("a snapshot has no lanes")

    def cancelled(self, job: Job) -> None:
        pass
