"""Fault drills: a restore from an old backup, played end to end where it can do no harm.

A drill never touches the store it is started from. It creates a scratch database on the same
PostgreSQL server, runs the story of recovery/drill/sandbox.py there in a child process (`replaydesk
drill --sandbox`, with DATABASE_URL pointing at the scratch database), relays the child's progress, and
drops the scratch database at the end, whatever happened. The child's consumers are driven by the child
itself: it sends the workers nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from django.conf import settings
from django.db import connection

from core.processes import die_with_parent

# What the report's JSON form always holds (the command's --json, the job's result).
REPORT_KEYS = ("rpo_events", "rto_seconds", "events_replayed", "downstream_resent", "passed")


# What each check counts, as people read it (the report keeps the identifiers: they are its JSON form).
CHECK_NAMES = {
    # a drill of the store (recovery/drill/sandbox.py)
    "projection_rows_wrong": "Projection rows that differ from a fold of the log",
    "downstream_documents_wrong": "Downstream documents that differ from a fold of the log",
    "downstream_events_missing": "Good events missing downstream",
    "downstream_bad_events_in_effect": "Bad events still in effect downstream",
    # a drill of a source (recovery/drill/source_drill.py)
    "events_missing": "Events missing from the application's database",
    "aggregates_wrong": "Aggregates the application loads wrong",
    "events_written_twice": "Events written back twice",
    "second_write_back_wrote": "Events a second write-back wrote (it should write none)",
    "follower_errors": "Errors of the follower after the write-back",
}


def check_name(check: str) -> str:
    """A check's name for people; an unknown one (a report from a newer version) made readable."""
    return CHECK_NAMES.get(check) or check.replace("_", " ").capitalize()


def verdict_line(passed: bool, checks: dict[str, int]) -> str:
    """The drill's verdict in a sentence for its job's log: the checks that found something wrong."""
    if passed:
        return f"passed: all {len(checks)} checks found nothing wrong"
    return f"FAILED: {wrong_checks(checks) or 'the checks found nothing wrong, but the drill did not pass'}"


def wrong_checks(checks: dict[str, int]) -> str:
    """The checks that found something wrong, by name, with their counts."""
    return "; ".join(f"{check_name(name).lower()}: {count}" for name, count in checks.items() if count)


class DrillError(Exception):
    """The drill could not be played to its end (not: it was played and failed its checks)."""


Progress = Callable[[str, str], None]


def run(
    *, quick: bool, on_progress: Progress, name: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """Play a drill in the scratch database `name` (by default scratch_name()), dropped first if a killed
    drill left it; the report. With `source` (a source kind), the drill of a source
    (recovery/drill/source_drill.py) instead."""
    name = name or scratch_name()
    scratch = scratch_url(settings.DATABASE_URL, name)
    _recreate(name)
    try:
        with tempfile.TemporaryDirectory(prefix="replaydesk-drill-") as home:
            return _play(scratch, Path(home), quick=quick, on_progress=on_progress, source=source)
    finally:
        _drop(name)
        if source:
            _drop_source_scratch(name)


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report for a terminal."""
    if "source_kind" in report:
        from recovery.drill.source_drill import report_lines as source_report_lines

        return source_report_lines(report)
    damage, checks = report["damage"], report["checks"]
    verdict = "PASSED" if report["passed"] else "FAILED"
    return [
        f"Drill {verdict}",
        f"  RPO                  {report['rpo_events']} events lost",
        f"  RTO                  {report['rto_seconds']} s from the start of the restore to healthy",
        f"  events replayed      {report['events_replayed']} ({report['events_excluded']} bad ones left out)",
        f"  downstream re-sent   {report['downstream_resent']}",
        f"  damage               {damage['bad_events']} bad events, {damage['rows_deleted']} rows deleted, "
        f"{damage['rows_rewritten']} rewritten, {damage['downstream_effects_lost']} downstream effects lost",
        "  checks               "
        + ", ".join(f"{name} {'ok' if value == 0 else f'{value} wrong'}" for name, value in checks.items()),
    ]


def scratch_name(job_id: int | None = None) -> str:
    """The scratch database of a drill started from this store (of drill job `job_id`): named after the
    store's own database, so that drills of two stores on one server never drop each other's."""
    store = connection.settings_dict["NAME"][:40]  # PostgreSQL's names have at most 63 bytes
    return f"{store}_drill" + (f"_{job_id}" if job_id is not None else "")


def scratch_url(url: str, name: str) -> str:
    """The same server, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _play(
    scratch: str, home: Path, *, quick: bool, on_progress: Progress, source: str | None = None
) -> dict[str, Any]:
    env = {
        **os.environ,
        "DATABASE_URL": scratch,
        "REPLAYDESK_SNAPSHOT_DIR": str(home / "snapshots"),
        # The drill's snapshots stay in its sandbox, not in the installation's bucket.
        "REPLAYDESK_SNAPSHOT_URL": "",
        "REPLAYDESK_CONSUMERS_WAKE": "false",
        # The drill's own jobs run in its sandbox at once; approvals guard the store, not this.
        "REPLAYDESK_APPROVALS": "restore=0,replay=0,resync=0,snapshot=0,write_back=0",
        # A source drill's application lives on the same server as the scratch database: the only
        # database its source may reach.
        "REPLAYDESK_SOURCE_ALLOW": _server_rule(scratch),
        "PGAPPNAME": "replaydesk-drill",
        # The default data set is the identity demo's (demo/drill.py): installed in the sandbox only.
        "REPLAYDESK_DEMO": "1",
        # Its downstream listens on loopback (recovery/drill/downstream.py) and is the only receiver
        # the sandbox's sink delivers to.
        "REPLAYDESK_SINK_ALLOW": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "console.cli", "drill", "--sandbox", *(["--quick"] if quick else [])]
    if source:
        command += ["--source", source]
    errors = home / "stderr.log"
    report = None
    with errors.open("w") as stderr:
        child = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, preexec_fn=die_with_parent
        )
        try:
            for line in child.stdout:
                message = _parse(line)
                if "report" in message:
                    report = message["report"]
                elif "stage" in message:
                    on_progress(message["stage"], message.get("message", ""))
        finally:
            if child.poll() is None:
                child.terminate()
            code = child.wait(timeout=30)
    if report is None:
        tail = "\n".join(errors.read_text(errors="replace").splitlines()[-15:])
        raise DrillError(f"the drill stopped without a report (exit code {code}):\n{tail}")
    return report


def _parse(line: str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def admin_connection() -> psycopg.Connection:
    """A connection of its own (CREATE and DROP DATABASE cannot run in a transaction) to the database
    Django uses, on the server the scratch database goes to."""
    params = connection.get_connection_params()
    return psycopg.connect(
        autocommit=True,
        **{key: params[key] for key in ("dbname", "user", "password", "host", "port") if params.get(key)},
    )


def _server_rule(url: str) -> str:
    """An allowlist entry for the server of `url` and its port only (loopback for a local socket)."""
    parts = urlsplit(url)
    host, port = unquote(parts.hostname or ""), parts.port or 5432
    if not host or host.startswith("/"):  # a local socket's directory
        return "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _drop_source_scratch(name: str) -> None:
    from recovery.drill.source_drill import scratch_names

    database, backup, reader = scratch_names(name)
    with admin_connection() as conn:
        for each in (database, backup):
            conn.execute(f'DROP DATABASE IF EXISTS "{each}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{reader}"')


def _recreate(name: str) -> None:
    _drop(name)
    with admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop(name: str) -> None:
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
