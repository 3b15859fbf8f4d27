"""replay: rebuild a projection from the log in a fresh schema and swap it in; or, given one stream,
repair that stream in place, in one transaction under the projection's lock."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from recovery import rebuild, runner
from recovery.kinds.base import Step, register
from recovery.kinds.common import FinalError, projection_of
from recovery.kinds.rebuilds import Rebuild
from recovery.models import Job
from recovery.params import Checker
from streams import batches
from streams.models import Stream
from streams.projections import get_projection, quote


@register
class Replay(Rebuild):
    name = "replay"
    position = 30
    offered_on = ("projection",)
    button_order = 1
    rebuilds = True
    help = (
        "Rebuild the projection from the log in a fresh schema and swap it in (or repair "
        "one stream in place)."
    )
    params_help = "projection, snapshot, stream, exclude, shards"
    fields = frozenset({"projection", "snapshot", "stream", "exclude", "shards"})

    def check(self, checker: Checker) -> dict[str, Any]:
        projection = checker.projection()
        stream = checker.stream_name()
        snapshot = checker.snapshot_id(projection) if checker.raw.get("snapshot") is not None else None
        if stream and snapshot is not None:
            checker.bad("stream", "a single-stream repair replays that stream's events; it takes no snapshot")
        if stream and projection and not hasattr(get_projection(projection), "forget"):
            checker.bad(
                "stream",
                f"{projection} cannot repair one stream (it has no forget step); replay it whole instead",
            )
        return {
            "projection": projection,
            "snapshot": snapshot,
            "stream": stream,
            "exclude": checker.exclude(),
            "shards": 1 if stream else checker.shards(projection),
        }

    def main(self, job: Job, deadline: float) -> Step:
        if job.params.get("stream"):
            return _repair_stream(job)
        return super().main(job, deadline)

    def summary(self, job: Job) -> list[str]:
        r = job.result
        if r.get("stream"):
            counts = f"{r['events_replayed']:,} events replayed, {r['events_excluded']:,} excluded"
            return [
                f"{r['stream']} replayed in place in {job.target} up to position {r['position']:,}: {counts}"
            ]
        return super().summary(job)


def _repair_stream(job: Job) -> Step:
    """Forget what the projection holds for the stream, and apply its events again."""
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
    return Step.DONE
