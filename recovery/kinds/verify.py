"""verify: rebuild the projection aside and compare it with the live one, table by table (and, asked
to repair, swap the rebuilt one in when they differ)."""

from __future__ import annotations

from typing import Any

from django.db import connection

from recovery import rebuild, runner
from recovery.kinds.base import register
from recovery.kinds.common import FinalError
from recovery.kinds.rebuilds import Rebuild
from recovery.models import Job
from recovery.params import Checker
from streams.projections import Projection, quote


@register
class Verify(Rebuild):
    name = "verify"
    position = 50
    offered_on = ("projection",)
    button_order = 2
    help = "Rebuild the projection aside and compare it with the live one, table by table."
    params_help = "projection, repair, shards"
    fields = frozenset({"projection", "repair", "shards"})
    approvals = 0
    result_template = "recovery/results/verify.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        projection = checker.projection()
        repair = checker.raw.get("repair", False)
        if not isinstance(repair, bool):
            checker.bad("repair", "must be true or false")
        return {"projection": projection, "repair": repair is True, "shards": checker.shards(projection)}

    def summary(self, job: Job) -> list[str]:
        r, target = job.result, job.target
        if r["equal"]:
            return [f"{target} agrees with the log at position {r['position']:,}: every table is equal"]
        lines = [f"{target} differs from the log at position {r['position']:,}:"]
        for table, found in sorted(r["tables"].items()):
            if found["missing"] or found["extra"] or found["different"]:
                lines.append(
                    f"  {table}: {found['missing']:,} missing, {found['extra']:,} extra, "
                    f"{found['different']:,} different"
                )
        if r["repaired"]:
            lines.append("repaired: the rebuilt schema was swapped in")
        else:
            lines.append(
                f"nothing was changed; replaydesk verify {target} --repair swaps in the rebuilt schema"
            )
        return lines

    def exit_error(self, job: Job) -> tuple[int, str] | None:
        if not job.result.get("equal") and not job.result.get("repaired"):
            # Like diff(1): a nightly cron or a script sees the difference in the exit code.
            return 2, "the projection differs from the log (repair with --repair)"
        return None

    # --- the rebuild compares with the live schema instead of following the log's head

    def _target_position(self, cursor, projection: Projection, base: int) -> int:
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

    def _tail_end(self, job: Job, projection: Projection) -> int:
        with connection.cursor() as cursor:
            return rebuild.live_position(cursor, projection)

    def _conclude(self, job: Job, projection: Projection, cursor, position: int) -> bool:
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
        return False
