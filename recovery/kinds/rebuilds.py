"""replay, restore and verify rebuild a projection aside (recovery/rebuild.py) and swap it in or compare;
a replay of one stream repairs it in place."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from recovery import rebuild, runner, snapshots
from recovery.kinds.common import FinalError, projection_of
from recovery.models import Job, JobLane, Snapshot
from recovery.runner import Step
from streams import batches, selectors
from streams.models import Stream
from streams.projections import Projection, create_schema, quote


class Rebuild:
    """replay, restore and verify."""

    def main(self, job: Job, deadline: float) -> Step:
        if not job.stage or job.stage == "preparing":
            return self._prepare(job)
        if job.stage == "replaying":
            if JobLane.objects.filter(job=job, finished=False).exists():
                return Step(lanes=True)
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
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
            base, snapshot_name = 0, None
            if job.params.get("snapshot") is not None:
                base, snapshot_name = self._load(job, schema)
            else:
                create_schema(projection, schema)
            if job.kind == Job.Kind.VERIFY:
                target = self._live_for_verify(cursor, projection)
            else:
                target = max(base, selectors.head())
            total, dropped = rebuild.count(projection, after=base, up_to=target, exclude=exclude)
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
            }
            runner.set_stage(job, "replaying", total=total, work=work)
            job.work = work
        return Step(lanes=True)

    def _load(self, job: Job, schema: str) -> tuple[int, str]:
        snapshot = Snapshot.objects.filter(pk=job.params["snapshot"]).first()
        if snapshot is None:
            raise FinalError(f"snapshot {job.params['snapshot']} is no longer in the catalogue")
        path = snapshots.snapshot_root() / snapshot.projection / snapshot.name
        try:
            manifest = snapshots.load_snapshot(path=Path(path), schema=schema)
        except snapshots.SnapshotError as exc:
            raise FinalError(str(exc)) from exc
        return manifest.position, snapshot.name

    def _live_for_verify(self, cursor, projection: Projection) -> int:
        found = rebuild.schema_exists(cursor, projection.schema)
        if not found:
            raise FinalError(f"{projection.name} has no live schema to verify")
        cursor.execute(f"SELECT position, version FROM {quote(projection.schema)}.checkpoint")
        position, version = cursor.fetchone()
        if version != projection.version:
            raise FinalError(
                f"the live {projection.name} holds version {version} and the code is version "
                f"{projection.version}: they cannot agree; replay it instead"
            )
        return position

    def _to_tail(self, job: Job) -> Step:
        projection, work = projection_of(job), job.work
        with transaction.atomic():
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
        return Step(again=True)

    def _catch_up(self, job: Job, deadline: float) -> Step:
        projection, work = projection_of(job), job.work
        tail = JobLane.objects.get(job=job, lane=work["lanes"])
        while time.monotonic() < deadline:
            if runner.cancel_requested(job):
                return Step(again=True)
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
                return Step(done=True)
        return Step(again=True)

    def _tail_end(self, job: Job, projection: Projection) -> int:
        if job.kind == Job.Kind.VERIFY:
            with connection.cursor() as cursor:
                return rebuild.live_position(cursor, projection)
        return selectors.head()

    def _exclude(self, job: Job) -> dict[str, Any]:
        return job.params.get("exclude") or {}

    def _finish(self, job: Job, projection: Projection, tail: JobLane) -> None:
        work, exclude = job.work, self._exclude(job)
        schema = work["schema"]
        with connection.cursor() as cursor:
            if job.kind == Job.Kind.RESTORE:
                gaps = rebuild.stream_gaps(
                    cursor, projection, schema, after=work["base"], up_to=tail.position, exclude=exclude
                )
                if gaps:
                    raise FinalError(
                        f"restore check failed: {gaps} streams have events the rebuilt {projection.name} "
                        "has not applied; the live projection was left as it was"
                    )
        with transaction.atomic(), connection.cursor() as cursor:
            rebuild.lock_projection(cursor, projection)
            end = self._tail_end(job, projection)
            while tail.position < end:  # what committed since, applied while the live runner waits
                rebuild.lane_batch(
                    projection=projection,
                    schema=schema,
                    lane=tail,
                    lanes=work["lanes"],
                    up_to=end,
                    exclude=exclude,
                )
            if job.kind == Job.Kind.VERIFY:
                self._compared(job, projection, cursor, tail.position)
                return
            rpo = rebuild.rows_ahead_of_log(cursor, schema)
            live_rpo = (
                rebuild.rows_ahead_of_log(cursor, projection.schema) if job.kind == Job.Kind.RESTORE else 0
            )
            rebuild.swap(cursor, projection, schema, tail.position)
            done = JobLane.objects.filter(job=job).values_list("done", flat=True)
            result: dict[str, Any] = {
                "position": tail.position,
                "events_replayed": sum(done),
                "events_excluded": work.get("excluded", 0),
                "previous_schema": rebuild.previous_schema(projection.schema),
            }
            if job.kind == Job.Kind.RESTORE:
                started = job.started_at or timezone.now()
                result.update(
                    snapshot=work.get("snapshot"),
                    snapshot_position=work["base"],
                    rpo_events=max(rpo, live_rpo),
                    rto_seconds=round((timezone.now() - started).total_seconds(), 3),
                )
            elif work.get("snapshot"):
                result.update(snapshot=work["snapshot"], snapshot_position=work["base"])
            runner.finish(
                job,
                result=result,
                message=f"swapped in at position {tail.position}: {result['events_replayed']} events "
                "replayed",
            )
        from streams.tasks import enqueue_consumer

        enqueue_consumer(projection.name)

    def _compared(self, job: Job, projection: Projection, cursor, position: int) -> None:
        schema = job.work["schema"]
        tables = rebuild.compare(cursor, live=projection.schema, scratch=schema)
        equal = all(not (t["missing"] or t["extra"] or t["different"]) for t in tables.values())
        repaired = False
        if not equal and job.params.get("repair"):
            rebuild.swap(cursor, projection, schema, position)
            repaired = True
        else:
            cursor.execute(f"DROP SCHEMA {quote(schema)} CASCADE")
        result = {"position": position, "equal": equal, "repaired": repaired, "tables": tables}
        if equal:
            message = f"{projection.name} agrees with the log at position {position}"
        else:
            differing = sorted(
                name for name, t in tables.items() if t["missing"] or t["extra"] or t["different"]
            )
            message = f"{projection.name} differs from the log in {', '.join(differing)}" + (
                "; repaired by swapping in the rebuilt schema" if repaired else ""
            )
        runner.finish(job, result=result, message=message)


class RepairStream:
    """Replay one stream in place: forget what the projection holds for it, apply its events again."""

    def main(self, job: Job, deadline: float) -> Step:
        projection = projection_of(job)
        stream = Stream.objects.filter(name=job.params["stream"]).first()
        if stream is None:
            raise FinalError(f"no stream is named {job.params['stream']!r}")
        exclude = job.params.get("exclude") or {}
        with transaction.atomic(), connection.cursor() as cursor:
            runner.set_stage(job, "repairing")
            rebuild.lock_projection(cursor, projection)
            position = rebuild.live_position(cursor, projection)
            events = rebuild.matching(projection, after=0, up_to=position).filter(stream=stream)
            last = events.order_by("-sequence").values_list("sequence", flat=True).first()
            rule = rebuild.excluded(exclude)
            kept = events.exclude(rule) if rule is not None else events
            batch = list(kept.select_related("stream").order_by("sequence"))
            cursor.execute(f"SET LOCAL search_path TO {quote(projection.schema)}, public")
            projection.forget(cursor, stream.name)  # type: ignore[attr-defined]
            for start in range(0, len(batch), projection.batch_size):
                part = batch[start : start + projection.batch_size]
                batches.fold(cursor, projection, part, schema=projection.schema)
            cursor.execute(
                f"DELETE FROM {quote(projection.schema)}.stream_checkpoint WHERE stream_id = %s", [stream.pk]
            )
            if last is not None:
                cursor.execute(
                    f"INSERT INTO {quote(projection.schema)}.stream_checkpoint (stream_id, sequence)"
                    " VALUES (%s, %s)",
                    [stream.pk, last],
                )
            Job.objects.filter(pk=job.pk).update(done=len(batch), total=len(batch))
            result = {
                "stream": stream.name,
                "position": position,
                "events_replayed": len(batch),
                "events_excluded": events.count() - len(batch),
            }
            runner.finish(job, result=result, message=f"{stream.name} replayed in place: {len(batch)} events")
        return Step(done=True)

    def lane(self, job: Job, lane: JobLane, deadline: float) -> None:
        raise AssertionError("a stream repair has no lanes")

    def cancelled(self, job: Job) -> None:
        pass
