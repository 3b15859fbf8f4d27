"""What every kind shares: the error that fails a job at once, and the projection a job works on."""

from __future__ import annotations

from recovery.models import Job
from recovery.rebuild import RebuildError
from streams.projections import Projection, get_projection


class FinalError(RebuildError):
    """A failure that trying again cannot fix (a corrupt snapshot, a failed check): the job fails now."""

    final = True


def projection_of(job: Job) -> Projection:
    projection = get_projection(job.target)
    if projection is None:
        raise FinalError(f"no projection is named {job.target!r} in this code any more")
    return projection
