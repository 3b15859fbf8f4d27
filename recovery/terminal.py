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
    from recovery.kinds.base import get

    found = get(kind)
    return found.unit if found is not None else "events"


# --- what a job did


def summary(job: Job) -> list[str]:
    """What a succeeded job did, in a few lines."""
    from recovery.kinds.base import kind_of

    return kind_of(job).summary(job)


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
