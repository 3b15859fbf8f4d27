"""What the job commands print: the progress line (a bar on a terminal), and what a job did."""

from __future__ import annotations

from typing import Any

from recovery.models import Job

BAR_WIDTH = 18


# --- drawing


def render_progress(
    *,
    label: str,
    done: int,
    total: int | None,
    rate: float | None,
    eta_seconds: float | None,
    stage: str,
    unit: str = "events",
    bar: bool = True,
    width: int = BAR_WIDTH,
) -> str:
    """One line of progress, e.g.
    `replay users_directory  [#########.........] 52%  12,345/23,700 events  3,210/s  ETA 4s  catching_up`.
    With no total yet there is no percentage or ETA, and the bar is left empty."""
    parts = [label]
    if total is None:
        if bar:
            parts.append(f"[{'.' * width}]")
        parts.append(f"{done:,} {unit}")
    else:
        share = 1.0 if total <= 0 else min(done / total, 1.0)
        meter = f"[{'#' * int(share * width)}{'.' * (width - int(share * width))}] " if bar else ""
        parts.append(f"{meter}{int(share * 100)}%")
        parts.append(f"{done:,}/{total:,} {unit}")
    if rate is not None and rate > 0:
        parts.append(f"{format_rate(rate)}/s")
    if eta_seconds is not None and total is not None and done < total:
        parts.append(f"ETA {format_seconds(eta_seconds)}")
    if stage:
        parts.append(stage)
    return "  ".join(parts)


def format_rate(rate: float) -> str:
    return f"{rate:.1f}" if rate < 10 else f"{rate:,.0f}"


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def format_bytes(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def unit_of(kind: str) -> str:
    return {Job.Kind.SNAPSHOT: "rows", Job.Kind.DRILL: "stages"}.get(kind, "events")


# --- what a job did


def summary(job: Job) -> list[str]:
    """What a succeeded job did, in a few lines."""
    r, target = job.result, job.target
    if job.kind == Job.Kind.SNAPSHOT:
        return [
            f"snapshot {r['snapshot']} of {target}: {r['name']} at position {r['position']:,}, "
            f"{r['rows']:,} rows, {format_bytes(r['bytes'])}"
        ]
    if job.kind == Job.Kind.RESYNC:
        return [
            f"re-sent {r['events_resent']:,} events to {r['sink']} "
            f"(after position {r['from_position']:,} up to {r['up_to_position']:,})"
        ]
    if job.kind == Job.Kind.VERIFY:
        return verify_summary(target, r)
    if job.kind == Job.Kind.DRILL:
        from recovery.drill import report_lines

        return report_lines(r)
    counts = f"{r['events_replayed']:,} events replayed, {r['events_excluded']:,} excluded"
    if r.get("stream"):
        return [f"{r['stream']} replayed in place in {target} up to position {r['position']:,}: {counts}"]
    lines = []
    if job.kind == Job.Kind.RESTORE:
        lines.append(
            f"{target} restored from snapshot {r['snapshot']} (position {r['snapshot_position']:,}) "
            f"and caught up to position {r['position']:,}: {counts}"
        )
        lines.append(f"RPO {r['rpo_events']:,} events lost   RTO {r['rto_seconds']:.1f} s to recover")
    else:
        base = f" from snapshot {r['snapshot']}" if r.get("snapshot") else ""
        lines.append(f"{target} rebuilt{base} and swapped in at position {r['position']:,}: {counts}")
    lines.append(f"the schema it replaced is kept as {r['previous_schema']} until the next swap")
    return lines


def verify_summary(target: str, r: dict[str, Any]) -> list[str]:
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
        lines.append(f"nothing was changed; replaydesk verify {target} --repair swaps in the rebuilt schema")
    return lines


def job_json(job: Job) -> dict[str, Any]:
    """The job as the API shows it (the same field names)."""

    def when(value):
        return value.isoformat() if value else None

    return {
        "id": job.pk,
        "kind": job.kind,
        "target": job.target,
        "params": job.params,
        "params_sha256": job.params_sha256,
        "state": job.state,
        "reason": job.reason,
        "requested_by": job.requested_by,
        "progress": {
            "stage": job.stage,
            "done": job.done,
            "total": job.total,
            "rate": job.rate,
            "eta_seconds": job.eta_seconds,
        },
        "result": job.result,
        "error": job.error,
        "created_at": when(job.created_at),
        "started_at": when(job.started_at),
        "finished_at": when(job.finished_at),
    }
