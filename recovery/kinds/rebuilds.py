"""What replay, restore and verify share: rebuild a projection aside (recovery/rebuild.py) in parallel
lanes, follow the tail, then conclude (swap it in, or compare). Each kind's module says what differs."""

from __future__ import annotations

import time
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from recovery import rebuild, runner, snapshots
from recovery.kinds.base import JobKind, Step
from recovery.kinds.common import FinalError, projection_of
from recovery.models import Job, JobLane, Snapshot
from streams import selectors
from streams.models import Event
from streams.projections import Projection, create_indexes, create_schema, get_projection, quote


class Rebuild(JobKind):
    """A projection rebuilt aside and swapped in (replay); restore and verify change some steps."""

    lane_stages = ("replaying",)
    result_template = "recovery/results/replay.html"

    def events(self, params: dict[str, Any]) -> QuerySet[Event]:
        projection = get_projection(params["projection"])
        base = 0
        if params.get("snapshot") is not None:
            base = Snapshot.objects.values_list("position", flat=True).get(pk=params["snapshot"])
        events = rebuild.matching(projection, after=base, up_to=selectors.head())
        if params.get("stream"):
            events = events.filter(stream__name=params["stream"])
        return events

    def summary(self, job: Job) -> list[str]:
        r = job.result
        counts = f"{r['events_replayed']:,} events replayed, {r['events_excluded']:,} excluded"
        lines = self._summary_head(job, counts)
        lines.append(f"the schema it replaced is kept as {r['previous_schema']} until the next swap")
        return lines

    def _summary_head(self, job: Job, counts: str) -> list[str]:
        r = job.result
        base = f" from snapshot {r['snapshot']}" if r.get("snapshot") else ""
        return [f"{job.target} rebuilt{base} and swapped in at position {r['position']:,}: {counts}"]

    def main(self, job: Job, deadline: float) -> Step:
        if not job.stage or job.stage == "preparing":
            return self._prepare(job)
        if job.stage == "replaying":
            if JobLane.objects.filter(job=job, finished=False).exists():
                return Step.LANES
            return self._to_tail(job)
        if job.stage == "catching_up":
            return self._catch_up(job, deadline)
        raise FinalError(f"job {job.pk} is at an unknown stage {job.stage!r}")

    def lane(self, job: Job, lane: JobLane, deadline: float) -> None:
        projection, work = projection_of(job), job.work
        while not lane.finished and time.monotonic() < deadline:
            if runner.cancel_requested(job):
                return
            rebuild.lane_batch(
                projection=projection,
                schema=work["schema"],
                lane=lane,
                lanes=work["lanes"],
                up_to=work["target"],
                exclude=job.params.get("exclude") or {},
            )
            runner.report(job)

    def cancelled(self, job: Job) -> None:
        if job.work.get("schema"):
            rebuild.drop_schema(job.work["schema"])

    # --- stages

    def _prepare(self, job: Job) -> Step:
        projection = projection_of(job)
        schema = rebuild.schema_for(projection, job)
        exclude = job.params.get("exclude") or {}
        # A fold that finds rows by key only leaves the plain indexes to be built once the lanes are done.
        indexes_after_lanes = not projection.fold_reads_indexes
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
            base, snapshot_name = 0, None
            if job.params.get("snapshot") is not None:
                base, snapshot_name = self._load(job, schema, plain_indexes=not indexes_after_lanes)
            else:
                create_schema(projection, schema, indexes="unique" if indexes_after_lanes else "all")
            target = self._target_position(cursor, projection, base)
            total, dropped = rebuild.record_streams(
                cursor, projection, schema, after=base, up_to=target, exclude=exclude
            )
            lanes = job.params.get("shards") or 1
            JobLane.objects.filter(job=job).delete()
            JobLane.objects.bulk_create(
                [JobLane(job=job, lane=n, position=base, finished=base >= target) for n in range(lanes)]
            )
            work = {
                "schema": schema,
                "base": base,
                "target": target,
                "lanes": lanes,
                "excluded": dropped,
                "snapshot": snapshot_name,
                "indexes_after_lanes": indexes_after_lanes,
                "streams_recorded": True,
            }
            runner.set_stage(job, "replaying", total=total, work=work)
            job.work = work
        return Step.LANES

    def _load(self, job: Job, schema: str, *, plain_indexes: bool) -> tuple[int, str]:
        snapshot = Snapshot.objects.filter(pk=job.params["snapshot"]).first()
        if snapshot is None:
            raise FinalError(f"snapshot {job.params['snapshot']} is no longer in the catalogue")
        try:
            manifest = snapshots.load_snapshot(
                path=snapshots.stored(snapshot.projection, snapshot.name),
                schema=schema,
                plain_indexes=plain_indexes,
            )
        except snapshots.SnapshotError as exc:
            raise FinalError(str(exc)) from exc
        return manifest.position, snapshot.name

    def _target_position(self, cursor, projection: Projection, base: int) -> int:
        """Where the lanes stop and the tail takes over."""
        return max(base, selectors.head())

    def _to_tail(self, job: Job) -> Step:
        projection, work = projection_of(job), job.work
        with transaction.atomic(), connection.cursor() as cursor:
            if not work.get("streams_recorded"):  # prepared by a version that recorded them only here
                rebuild.record_streams(
                    cursor,
                    projection,
                    work["schema"],
                    after=work["base"],
                    up_to=work["target"],
                    exclude=job.params.get("exclude") or {},
                )
            if work.get("indexes_after_lanes"):
                create_indexes(projection, work["schema"], which="plain")
            tail = work["lanes"]
            JobLane.objects.get_or_create(job=job, lane=tail, defaults={"position": work["target"]})
            more, _ = rebuild.count(
                projection,
                after=work["target"],
                up_to=self._tail_end(job, projection),
                exclude=self._exclude(job),
            )
            runner.set_stage(job, "catching_up", total=(job.total or 0) + more)
        runner.report(job, force=True)
        return Step.AGAIN

    def _catch_up(self, job: Job, deadline: float) -> Step:
        projection, work = projection_of(job), job.work
        tail = JobLane.objects.get(job=job, lane=work["lanes"])
        while time.monotonic() < deadline:
            if runner.cancel_requested(job):
                return Step.AGAIN
            end = self._tail_end(job, projection)
            tail.finished = False
            applied = rebuild.lane_batch(
                projection=projection,
                schema=work["schema"],
                lane=tail,
                lanes=work["lanes"],
                up_to=end,
                exclude=self._exclude(job),
            )
            runner.report(job)
            if tail.position >= end and applied < projection.replay_batch:
                self._finish(job, projection, tail)
                return Step.DONE
        return Step.AGAIN

    def _tail_end(self, job: Job, projection: Projection) -> int:
        return selectors.head()

    def _exclude(self, job: Job) -> dict[str, Any]:
        return job.params.get("exclude") or {}

    def _finish(self, job: Job, projection: Projection, tail: JobLane) -> None:
        work, exclude = job.work, self._exclude(job)
        self._check_before_swap(job, projection, tail)
        with transaction.atomic(), connection.cursor() as cursor:
            rebuild.lock_projection(cursor, projection)
            end = self._tail_end(job, projection)
            while tail.position < end:  # what committed since, applied while the live runner waits
                rebuild.lane_batch(
                    projection=projection,
                    schema=work["schema"],
                    lane=tail,
                    lanes=work["lanes"],
                    up_to=end,
                    exclude=exclude,
                )
            swapped = self._conclude(job, projection, cursor, tail.position)
        if swapped:
            from streams.tasks import enqueue_consumer

            enqueue_consumer(projection.name)

    def _check_before_swap(self, job: Job, projection: Projection, tail: JobLane) -> None:
        """Raise FinalError when the rebuilt schema must not be swapped in."""

    def _conclude(self, job: Job, projection: Projection, cursor, position: int) -> bool:
        """Swap the rebuilt schema in (under the projection's lock) and finish; True when the live runner
        is to be woken to go on from the swapped-in checkpoint."""
        work = job.work
        ahead = self._rows_ahead(cursor, projection, work["schema"])
        rebuild.swap(cursor, projection, work["schema"], position)
        done = JobLane.objects.filter(job=job).values_list("done", flat=True)
        result: dict[str, Any] = {
            "position": position,
            "events_replayed": sum(done),
            "events_excluded": work.get("excluded", 0),
            "previous_schema": rebuild.previous_schema(projection.schema),
        }
        result.update(self._more_result(job, ahead))
        runner.finish(
            job,
            result=result,
            message=f"swapped in at position {position}: {result['events_replayed']} events replayed",
        )
        return True

    def _rows_ahead(self, cursor, projection: Projection, schema: str) -> int | None:
        """Asked before the swap: rows the projection holds that the log does not (None: not asked)."""
        return None

    def _more_result(self, job: Job, ahead: int | None) -> dict[str, Any]:
        work = job.work
        if work.get("snapshot"):
            return {"snapshot": work["snapshot"], "snapshot_position": work["base"]}
        return {}
