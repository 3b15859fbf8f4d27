"""The snapshots endpoints, and the rollback of a projection a replay or restore swapped."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import cursor_parameter, finish_query, limit_parameter, page_of, parse_query, problems
from core.problems import not_found
from core.roles import Allows, Can
from recovery import selectors, services
from recovery.api.common import checked_body, conflict, created, name_param, name_parameter, request_job
from recovery.api.serializers import (
    JobConflictOut,
    JobOut,
    RollbackIn,
    RollbackResultOut,
    SnapshotDetailOut,
    SnapshotIn,
    SnapshotOut,
)
from recovery.models import Job, Snapshot
from streams.projections import get_projection


@extend_schema(
    methods=["GET"],
    operation_id="snapshots_list",
    parameters=[
        name_parameter("projection", "Snapshots of this projection."),
        cursor_parameter(1),
        limit_parameter(50, selectors.MAX_LIMIT),
    ],
    responses={200: page_of("SnapshotPage", SnapshotOut), **problems(400, 401)},
    description="The snapshot catalogue, newest first.",
)
@extend_schema(
    methods=["POST"],
    operation_id="snapshots_create",
    request=SnapshotIn,
    responses={202: JobOut, **problems(400, 401, 422), (409, "application/problem+json"): JobConflictOut},
    description="Take a snapshot: requests a `snapshot` job (answered 202 with the job; the snapshot "
    "is listed here once the job has succeeded, and the job's result names it).",
)
@api_view(["GET", "POST"])
@permission_classes([Allows.to(Can.READ, write=Can.OPERATE)])
def snapshot_list(request: Request) -> Response:
    if request.method == "POST":
        body = checked_body(request, SnapshotIn)
        job = request_job(
            request, kind=Job.Kind.SNAPSHOT, params={"projection": body["projection"]}, reason=body["reason"]
        )
        return created(job, 202)
    parser = parse_query(request, ("projection", "cursor", "limit"))
    projection = name_param(parser, "projection")
    before = parser.integer("cursor", minimum=1)
    limit = parser.integer("limit", minimum=1, maximum=selectors.MAX_LIMIT, default=50)
    finish_query(parser)
    snapshots = selectors.list_snapshots(projection=projection, before=before, limit=limit)
    next_cursor = str(snapshots[-1].pk) if len(snapshots) == limit else None
    return Response({"results": SnapshotOut(snapshots, many=True).data, "next": next_cursor})


@extend_schema(operation_id="snapshots_retrieve", responses={200: SnapshotDetailOut, **problems(401, 404)})
@api_view(["GET"])
def snapshot_detail(request: Request, snapshot_id: int) -> Response:
    snapshot: Snapshot | None = selectors.get_snapshot(snapshot_id=snapshot_id)
    if snapshot is None:
        raise not_found("snapshot", f"no snapshot has id {snapshot_id}")
    return Response(SnapshotDetailOut(snapshot).data)


# --- rollback


@extend_schema(
    operation_id="consumers_rollback",
    request=RollbackIn,
    responses={200: RollbackResultOut, **problems(400, 401, 404, 409)},
    description="Swap a projection back to the schema its last replay or restore replaced (audited). "
    "The live runner catches it up from its own checkpoint. 409 when there is no previous schema or a "
    "job is working on it.",
)
@api_view(["POST"])
@permission_classes([Allows.to(Can.OPERATE)])
def consumer_rollback(request: Request, name: str) -> Response:
    body = checked_body(request, RollbackIn)
    if get_projection(name) is None:
        raise not_found(
            "projection", f"no projection is named {name!r}; only a projection can be rolled back"
        )
    try:
        schema = services.rollback_projection(
            projection=name, actor=request.user.get_username(), reason=body["reason"], request=request
        )
    except services.JobError as exc:
        raise conflict(exc) from exc
    return Response({"projection": name, "schema": schema})
