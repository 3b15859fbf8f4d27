"""The benchmark's results (bench/): a section run again on its own and merged into a run's results
replaces that section's figures and keeps the others, and its targets are judged with the rest. No
benchmark runs here and nothing is timed; the figures are made up."""

from __future__ import annotations

import pytest

from bench.__main__ import merge
from bench.measure import row
from bench.report import markdown, targets

SUBSCRIPTION_ROW = "subscription over HTTP, 1 reader, batches of 500"


def _results(rows: list[dict], *, mode: str = "full", commit: str = "aaaaaaa", sections=None) -> dict:
    return {
        "started_at": "2026-12-01T10:00:00+00:00",
        "duration_seconds": 900.0,
        "mode": mode,
        "sizes": {"name": mode, "events": 1_000_000},
        "machine": {
            "uname": "Linux",
            "cpus": 2,
            "cpu_model": "",
            "memory_gib": 8.0,
            "python": "3.11",
            "postgresql": "15",
            "postgresql_settings": {"fsync": "on"},
            "eventsourcing": "9.5",
            "psycopg": "3.2",
        },
        "code": {"commit": commit, "modified": []},
        "sections_run": sections or sorted({r["section"] for r in rows}),
        "notes": {},
        "rows": rows,
        "targets": targets(rows),
    }


def _delivery(http: float, runner: float) -> dict:
    return row(
        "subscriptions",
        SUBSCRIPTION_ROW,
        "events/s",
        "higher",
        {"replaydesk": [http], "in-process runner": [runner]},
        compared_to="in-process runner",
    )


def _takeover(multiple: float) -> dict:
    name = "lease takeover, in lease times"
    return row("subscriptions", name, "× lease", "lower", {"replaydesk": [multiple]})


def _replay(rate: float) -> dict:
    return row(
        "replay",
        "replay: the demo projections from scratch",
        "events/s",
        "higher",
        {"replaydesk": [rate], "eventsourcing": [rate / 40]},
    )


def test_merging_a_section_replaces_its_figures_and_keeps_the_others():
    earlier = _results([_replay(64_000), _delivery(5_000, 20_000), _takeover(3.0)])
    later = _results(
        [_delivery(12_000, 20_000), _takeover(1.02)], commit="bbbbbbb", sections=["subscriptions"]
    )
    later["sizes"]["subscription_events"] = 200_000

    merged = merge(earlier, later)

    by_name = {r["name"]: r["values"] for r in merged["rows"]}
    assert by_name[SUBSCRIPTION_ROW] == {"replaydesk": 12_000, "in-process runner": 20_000}
    assert by_name["replay: the demo projections from scratch"]["replaydesk"] == 64_000
    assert len(merged["rows"]) == 3
    judged = {t["target"]: (t["value"], t["pass"]) for t in merged["targets"]}
    assert judged["subscription over HTTP, 1 reader ≥ 0.5× the in-process runner"] == (0.6, True)
    assert judged["lease takeover after a SIGKILL ≤ 2× the lease"] == (1.02, True)
    assert merged["sizes"]["subscription_events"] == 200_000
    assert merged["code"]["commit"] == "aaaaaaa"
    assert merged["merged"][0]["code"]["commit"] == "bbbbbbb"
    assert "merged in: Commit `bbbbbbb`" in markdown(merged)


def test_a_subscription_reader_at_less_than_half_the_runner_fails_its_target():
    results = _results([_delivery(6_000, 15_000)])

    (judged,) = results["targets"]

    assert (judged["value"], judged["pass"]) == (0.4, False)
    assert "in-process runner 15,000 (×0.40 of it)" in markdown(results)


def test_a_quick_run_is_not_merged_into_a_full_run():
    with pytest.raises(SystemExit, match="cannot merge a quick run"):
        merge(_results([_replay(64_000)]), _results([_delivery(1, 2)], mode="quick"))
