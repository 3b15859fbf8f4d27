"""What each kind of job does, stage by stage; the runner (recovery/runner.py) does the rest.

- snapshot: one slice, one REPEATABLE READ transaction (recovery/snapshots.py), catalogued.
- replay, restore, verify: a rebuild (recovery/rebuild.py): prepare a fresh schema (empty, or loaded from
  a snapshot), replay the log into it in parallel lanes up to the head at the start, follow the tail in
  order, then swap it in (replay, restore) or compare it with the live schema (verify).
- replay of one stream: a repair in place, in one transaction under the projection's lock.
- resync: re-deliver a range of the log to a sink, in order, at a rate limit.
- drill: a fault drill in a scratch database (recovery/drill), its report as the result.
"""

from __future__ import annotations

from recovery import runner
from recovery.kinds.common import FinalError
from recovery.kinds.drill import Drill
from recovery.kinds.rebuilds import Rebuild, RepairStream
from recovery.kinds.resync import Resync
from recovery.kinds.snapshot import TakeSnapshot
from recovery.models import Job

__all__ = ["FinalError", "kind_of"]


def kind_of(job: Job) -> runner.Kind:
    if job.kind == Job.Kind.SNAPSHOT:
        return TakeSnapshot()
    if job.kind == Job.Kind.RESYNC:
        return Resync()
    if job.kind == Job.Kind.DRILL:
        return Drill()
    if job.kind == Job.Kind.REPLAY and job.params.get("stream"):
        return RepairStream()
    return Rebuild()
