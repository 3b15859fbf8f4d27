"""`python -m bench [--quick] [--json PATH] [--only SECTION …] [--appends PART …] [--merge] [--keep]`, and
`python -m bench --write-results [--json PATH]` to write bench/RESULTS.md from a run's JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import traceback
from pathlib import Path

from bench import report
from bench.context import APPEND_PARTS

HERE = Path(__file__).resolve().parent
SECTIONS = ("appends", "sources", "audit", "lag", "replay", "restore", "subscriptions", "reads", "pages")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="scaled-down sizes (a few minutes)")
    parser.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write results")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument(
        "--appends",
        nargs="+",
        choices=APPEND_PARTS,
        help="with the appends section, run only these of its parts (throughput: 1/4/16 writers and "
        "batches; gin: the GIN index's cost; http: the API through gunicorn); not with --merge",
    )
    parser.add_argument("--database", default="rd_bench", help="the database to create (dropped first)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="put this run's figures into --json in place of those of the same sections (with --only)",
    )
    parser.add_argument(
        "--write-results",
        action="store_true",
        help="write bench/RESULTS.md from --json (no benchmark is run)",
    )
    parser.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.write_results:
        results = json.loads(args.json.read_text())
        args.results_md.write_text(report.markdown(results))
        print(f"wrote {args.results_md}")
        return 0
    if args.merge and not args.only:
        parser.error("--merge goes with --only: a whole run replaces the file")
    if args.merge and args.appends:
        parser.error("--merge replaces a whole section: run the appends section with all its parts")
    results = run(args)
    if args.merge and args.json.exists():
        results = merge(json.loads(args.json.read_text()), results)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    print(f"\nresults: {args.json}")
    return 0


def run(args: argparse.Namespace) -> dict:
    from bench import server as servers
    from bench.config import FULL, QUICK
    from bench.context import Context

    sizes = QUICK if args.quick else FULL
    server = servers.connect(database=args.database)
    env = servers.environment(server)
    servers.setup_django(env)
    servers.migrate()
    _load_code()
    ctx = Context(sizes=sizes, server=server, env=env)
    if args.appends:
        ctx.append_parts = tuple(part for part in APPEND_PARTS if part in args.appends)
        ctx.notes["append_parts"] = list(ctx.append_parts)
    elif sizes.name == "quick":
        # The GIN indexes' cost is a figure for the record, with no target: full runs measure it (or
        # `--appends gin`), and the quick run stays under 3 minutes.
        ctx.append_parts = tuple(part for part in APPEND_PARTS if part != "gin")
        ctx.notes["append_parts"] = list(ctx.append_parts)
    wanted = set(args.only or SECTIONS)
    started_at = dt.datetime.now(dt.UTC)
    machine = report.machine(server.url)
    code = report.code()
    try:
        _sections(ctx, wanted)
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            servers.drop(server)
        if server.embedded is not None:
            server.embedded.stop()
    return {
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_seconds": round(time.monotonic() - ctx.started, 1),
        "mode": sizes.name,
        "sizes": sizes.as_dict(),
        "machine": machine,
        "code": code,
        "sections_run": [s for s in SECTIONS if s in wanted],
        "notes": ctx.notes,
        "rows": ctx.rows,
        "targets": report.targets(ctx.rows),
    }


def merge(earlier: dict, later: dict) -> dict:
    """The earlier run's results with the later run's sections in place of its own (rows, notes, targets),
    and a record of when, on what code and at what sizes those sections ran."""
    if earlier["mode"] != later["mode"]:
        raise SystemExit(f"cannot merge a {later['mode']} run into a {earlier['mode']} run's results")
    replaced = {row["section"] for row in later["rows"]}
    rows = [row for row in earlier["rows"] if row["section"] not in replaced] + later["rows"]
    merged_runs = [
        run_ for run_ in earlier.get("merged", []) if not set(run_["row_sections"]) <= replaced
    ] + [
        {
            "sections": later["sections_run"],
            "row_sections": sorted(replaced),
            "started_at": later["started_at"],
            "duration_seconds": later["duration_seconds"],
            "code": later["code"],
            "sizes": later["sizes"],
        }
    ]
    run_sections = set(earlier["sections_run"]) | set(later["sections_run"])
    return {
        **earlier,
        # Sizes the earlier run did not have (a section added since) are the later run's.
        "sizes": {**later["sizes"], **earlier["sizes"]},
        "sections_run": [section for section in SECTIONS if section in run_sections],
        "notes": {**earlier["notes"], **_notes_of(later, keep=earlier["notes"])},
        "rows": rows,
        "targets": report.targets(rows),
        "merged": merged_runs,
    }


def _notes_of(later: dict, *, keep: dict) -> dict:
    """The later run's notes, those the earlier run has too (the demo history's load) under the later
    sections' name, so that each run's stay its own."""
    prefix = "+".join(later["sections_run"])
    return {(f"{prefix}: {key}" if key in keep else key): value for key, value in later["notes"].items()}


def _load_code() -> None:
    """Import what the run measures now, so that the code recorded at the start is the code measured
    even when the working tree changes during a long run (gunicorn, started later, reads the tree then)."""
    import importlib

    for module in (
        "streams.services",
        "streams.selectors",
        "streams.event_json",
        "streams.lag",
        "streams.audit_search",
        "streams.consumers",
        "streams.subscriptions",
        "streams.source_follow",
        "streams.source_kinds.eventsourcing",
        "streams.source_kinds.messagedb",
        "streams.source_kinds.table",
        "streams.api_subscriptions",
        "recovery.runner",
        "recovery.kinds",
        "recovery.rebuild",
        "recovery.snapshots",
        "demo.projections",
    ):
        importlib.import_module(module)


def _sections(ctx, wanted: set[str]) -> None:
    from bench import (
        data,
        peers,
        suite_appends,
        suite_pages,
        suite_replay,
        suite_sources,
        suite_store,
        suite_subscriptions,
    )

    peers.create(ctx.url, ctx.conninfo)
    if "appends" in wanted:
        _section(ctx, "appends", suite_appends.run)
        data.clear_store(ctx.url)
    if "sources" in wanted:
        _section(ctx, "sources", suite_sources.run)
        data.clear_store(ctx.url)
    if wanted & {"audit", "lag", "replay", "restore", "subscriptions", "reads"}:
        ctx.log(f"loading the demo history: {ctx.sizes.events:,} events, {ctx.sizes.users:,} users")
        ctx.notes["demo_load"] = data.load_demo(ctx.url, users=ctx.sizes.users, events=ctx.sizes.events)
        ctx.notes["demo_copy_to_eventsourcing"] = data.copy_to_peer(ctx.url)
        ctx.log(f"loaded: {ctx.notes['demo_load']} {ctx.notes['demo_copy_to_eventsourcing']}")
    for name, fn in (
        ("audit", suite_store.audit),
        ("lag", suite_store.lag),
        ("replay", suite_replay.replay),
        ("restore", suite_replay.restore),
        ("subscriptions", suite_subscriptions.run),
    ):
        if name in wanted:
            _section(ctx, name, fn)
    if "reads" in wanted:
        ctx.log(f"growing the log to {ctx.sizes.deep_log:,} events")
        ctx.notes["deep_log_growth"] = data.grow_log(ctx.url, to=ctx.sizes.deep_log)
        ctx.notes["deep_log_copy_to_eventsourcing"] = data.copy_to_peer(ctx.url)
        _section(ctx, "reads", suite_store.reads)
    if "pages" in wanted:
        # Last: it empties the store and loads its own, ten times the others' in a full run.
        _section(ctx, "pages", suite_pages.run)


def _section(ctx, name: str, fn) -> None:
    """A section that fails is reported as such; the others still run."""
    try:
        fn(ctx)
    except Exception as exc:  # noqa: BLE001
        ctx.log(f"section {name} failed: {traceback.format_exc()}")
        ctx.notes.setdefault("failed_sections", {})[name] = f"{type(exc).__name__}: {exc}"[:2000]


if __name__ == "__main__":
    sys.exit(main())
