"""The run's report: the machine, the targets (pass or fail), a table for the terminal, and RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess

from bench.measure import ratio
from bench.suite_pages import PAGE_TARGET_MS, PAGES

# (what, row name, how, threshold): how is "vs_raw"/"vs_eventsourcing" (Replaydesk's speed as a multiple
# of the reference's), "min"/"max" (Replaydesk's own value), or a field of the row ("max:<field>").
TARGETS = (
    ("single-event appends, 1 writer ≥ 0.7× raw INSERT+COMMIT", "1 event/tx, 1 writer", "vs_raw", 0.7),
    ("single-event appends, 1 writer ≥ 1× eventsourcing", "1 event/tx, 1 writer", "vs_eventsourcing", 1.0),
    (
        "single-event appends, 16 writers ≥ 1.5× eventsourcing",
        "1 event/tx, 16 writers",
        "vs_eventsourcing",
        1.5,
    ),
    ("1,000-event batches ≥ 0.8× raw COPY", "batches of 1,000, 1 writer", "vs_raw", 0.8),
    ("batches of 100 ≥ 1× eventsourcing", "batches of 100, 1 writer", "vs_eventsourcing", 1.0),
    ("batches of 1,000 ≥ 1× eventsourcing", "batches of 1,000, 1 writer", "vs_eventsourcing", 1.0),
    (
        "HTTP API, 1 event/request ≥ 0.4× the same 4 writers in-process",
        "HTTP API, 1 event/request, 4 clients",
        "vs_in-process",
        0.4,
    ),
    (
        "HTTP API, batches of 100/request ≥ 0.7× the same 4 writers in-process",
        "HTTP API, batches of 100/request, 4 clients",
        "vs_in-process",
        0.7,
    ),
    ("replay ≥ 100,000 events/s on one worker", "replay: the demo projections from scratch", "min", 100_000),
    (
        "replay ≥ 5× eventsourcing's catch-up",
        "replay: the demo projections from scratch",
        "vs_eventsourcing",
        5.0,
    ),
    (
        "a stream of 1,000 events ready to serve ≥ 1× eventsourcing",
        "a stream of 1,000 events (p50)",
        "vs_eventsourcing",
        1.0,
    ),
    (
        "a global-log page of 100 ready to serve ≥ 1× eventsourcing",
        "a global-log page of 100 at the start (p50)",
        "vs_eventsourcing",
        1.0,
    ),
    (
        "a stream of 1,000 events over HTTP ≥ 0.5× the in-process read's speed (under 2× its time)",
        "a stream of 1,000 events over HTTP (p50)",
        "vs_in-process",
        0.5,
    ),
    ("restore ≤ 10 s per million tail events", "restore: snapshot + tail, slowest projection", "max", 10.0),
    ("lag < 5 ms per consumer", "lag of one consumer (p95)", "max", 5.0),
    ("the dashboard's 10 consumers < 20 ms p95", "all 10 consumers (the dashboard) (p95)", "max", 20.0),
    ("top lagging streams < 150 ms p95", "top lagging streams of one consumer (p95)", "max", 150.0),
    ("audit: JSON containment < 20 ms p95", "audit: data containment (p95)", "max", 20.0),
    ("audit: actor + a week < 20 ms p95", "audit: actor + a week (p95)", "max", 20.0),
    ("audit: actor + a day < 20 ms p95", "audit: actor + a day (p95)", "max", 20.0),
    ("progress tracking ≤ 2% of a replay", "progress tracking: share of a replay", "max", 0.02),
    (
        "subscription over HTTP, 1 reader ≥ 0.5× the in-process runner",
        "subscription over HTTP, 1 reader, batches of 500",
        "vs_in-process runner",
        0.5,
    ),
    ("lease takeover after a SIGKILL ≤ 2× the lease", "lease takeover, in lease times", "max", 2.0),
    *(
        target
        for kind in ("eventsourcing", "messagedb", "table")
        for target in (
            (
                f"backfill of a source ({kind}) ≥ 50,000 events/s",
                f"backfill of a source: {kind}",
                "min",
                50_000,
            ),
            (
                f"live copy lag of a source ({kind}) p95 < 1 s",
                f"live copy lag of a source (p95): {kind}",
                "max",
                1.0,
            ),
        )
    ),
    *(
        (f"page: {page} < {PAGE_TARGET_MS:.0f} ms p95", f"page: {page} (p95)", "max", PAGE_TARGET_MS)
        for page in PAGES
    ),
)


def targets(rows: list[dict]) -> list[dict]:
    by_name = {row["name"]: row for row in rows}
    out = []
    for what, name, how, threshold in TARGETS:
        found = by_name.get(name)
        if found is None:
            continue
        if how.startswith("vs_"):
            value = ratio(found, how.removeprefix("vs_"))
            passed = value is not None and value >= threshold
        else:
            value = found["values"].get("replaydesk")
            passed = value is not None and (value >= threshold if how == "min" else value <= threshold)
        out.append(
            {
                "target": what,
                "row": name,
                "value": None if value is None else round(value, 4),
                "threshold": threshold,
                "how": how,
                "pass": passed,
            }
        )
    return out


def machine(url: str) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            conn.execute(
                # As SHOW writes them ("128MB"): `setting` is in the unit's multiples (16384 of 8kB).
                "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                [["shared_buffers", "synchronous_commit", "max_wal_size", "work_mem", "fsync"]],
            ).fetchall()
        )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "uname": _uname(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": version,
        "postgresql_settings": settings,
        "eventsourcing": _version("eventsourcing"),
        "psycopg": _version("psycopg"),
    }


def code() -> dict:
    """The commit the run measured, and the files that differed from it (a run measures the tree)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return ""
        return done.stdout.rstrip("\n")

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "modified": changed}


def _uname() -> str:
    try:
        return subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return " ".join(part for part in platform.uname() if part)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return ""


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value != value:
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _ratio_text(row: dict, reference: str) -> str:
    value = ratio(row, reference)
    return "–" if value is None else f"{value:.2f}×"


def _lines(results: dict) -> list[tuple[str, ...]]:
    lines = []
    for row in results["rows"]:
        values = row["values"]
        others = {k: v for k, v in values.items() if k not in ("replaydesk", "eventsourcing", "raw")}
        extra = ", ".join(f"{k} {_fmt(v)}" for k, v in others.items())
        if "cost" in row and row["cost"] is not None:
            extra += f" (cost {row['cost']:.1%})"
        if row.get("compared_to"):
            extra += f" (×{_ratio_text(row, row['compared_to']).rstrip('×')} of it)"
        lines.append(
            (
                row["section"],
                row["name"],
                row["unit"],
                _fmt(values.get("replaydesk")),
                _fmt(values.get("eventsourcing")),
                _fmt(values.get("raw")),
                _ratio_text(row, "eventsourcing"),
                _ratio_text(row, "raw"),
                extra,
            )
        )
    return lines


HEADER = ("section", "measure", "unit", "replaydesk", "eventsourcing", "raw", "×es", "×raw", "other")


def table(results: dict) -> str:
    lines = [HEADER, *_lines(results)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    text.insert(1, "-" * len(text[0]))
    text.append("")
    text.append("Targets (×: Replaydesk's speed as a multiple of the reference's; > 1 is faster):")
    for target in results["targets"]:
        mark = "PASS" if target["pass"] else "FAIL"
        text.append(f"  [{mark}] {target['target']}: {_fmt(target['value'])}")
    return "\n".join(text)


def _code_line(found: dict | None) -> str:
    if not found:
        return "Not recorded."
    line = f"Commit `{found['commit']}`"
    if found["modified"]:
        line += ", with uncommitted changes to " + ", ".join(f"`{path}`" for path in found["modified"])
    return line + "."


# The sections that run on the demo history, which a run loads first.
DEMO_SECTIONS = {"audit", "lag", "replay", "restore", "subscriptions", "reads", "pages"}


def _merged_lines(merged: list[dict]) -> list[str]:
    """Sections run later on their own and merged in (`python -m bench --only … --merge`)."""
    lines = []
    for run in merged:
        sections = ", ".join(run["sections"])
        lines += [
            "",
            f"Section {sections}: run on its own on {run['started_at']} ({run['duration_seconds']:.0f} s"
            f"{', the demo history loaded first' if set(run['sections']) & DEMO_SECTIONS else ''}) and "
            f"merged in: {_code_line(run['code'])}",
        ]
    return lines


def markdown(results: dict) -> str:
    m = results["machine"]
    sizes = results["sizes"]
    settings = ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items())
    out = [
        "# Benchmark results",
        "",
        f"Run `python -m bench{' --quick' if results['mode'] == 'quick' else ''}` on "
        f"{results['started_at']} ({results['mode']} run, {results['duration_seconds']:.0f} s); written by "
        "`python -m bench --write-results` from its JSON. How to read it and what each figure measures: "
        "bench/README.md.",
        "",
        "## Machine",
        "",
        f"- `{m['uname']}`",
        f"- {m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), {m['memory_gib']} GiB memory",
        f"- PostgreSQL {m['postgresql']} ({settings}),"
        " on the same machine, shared with whatever else ran there",
        f"- Python {m['python']}, psycopg {m['psycopg']}, eventsourcing {m['eventsourcing']}",
        "",
        "## Code",
        "",
        _code_line(results.get("code")),
        *_merged_lines(results.get("merged", [])),
        "",
        "## Sizes",
        "",
        ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in sizes.items()),
        "",
        "## Targets",
        "",
        "| target | value | |",
        "|---|---|---|",
    ]
    for target in results["targets"]:
        unit = "×" if target["how"].startswith("vs_") else ""
        out.append(
            f"| {target['target']} | {_fmt(target['value'])}{unit} | "
            f"{'pass' if target['pass'] else '**fail**'} |"
        )
    out += [
        "",
        "## Figures (medians of the repetitions)",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for line in _lines(results):
        out.append("| " + " | ".join(cell.replace("|", "/") for cell in line) + " |")
    if results.get("notes"):
        out += ["", "## Notes from the run", ""]
        for key, value in results["notes"].items():
            out.append(f"- {key}: `{value}`")
    return "\n".join(out) + "\n"
