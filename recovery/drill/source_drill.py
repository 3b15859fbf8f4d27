"""The drill of a source (`replaydesk drill --source eventsourcing`), played inside the scratch database
(recovery/drill/__init__.py makes it and drops it), the story of the first talk for real:

1. an application of the eventsourcing library (a ledger of accounts: openings and deposits, with
   Decimals, UUIDs and datetimes in its events) writes into a database of its own on the same server,
   while Replaydesk follows it (a backfill job, then the live follower);
2. its database is backed up (a copy of the whole database), and it writes on; Replaydesk copies that
   too;
3. its database is restored from the backup: the events since are gone from it, and the follower
   stops and says why;
4. the recovery, as an operator would run it: give the source a DSN that may write, run a write_back
   job, and let the follower go on; RTO is counted from the restore to a source that is followed again
   with nothing left to copy;
5. the checks: the application's repository loads every aggregate with every event it ever saved
   (RPO in events), its table holds each event once, and a second write-back writes nothing.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg
from django.db import close_old_connections, connection
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from recovery.drill import verdict_line
from recovery.drill.sandbox import run_job
from recovery.models import Job
from recovery.runner import inline, run_inline
from streams import source_follow, source_services
from streams.models import Source

ACTOR = "drill"
SOURCE = "drill_ledger"
STEPS = ("preparing", "following", "backup", "writing", "restore", "recovering", "verifying")
KINDS = ("eventsourcing",)
# Events the application writes before the backup and after it (quick drill, full drill).
SIZES = {True: (600, 400), False: (20_000, 5_000)}
WRITES_PER_SECOND = {True: 300, False: 1_000}

Say = Callable[[str, str], None]


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str, opened_at: dt.datetime):
        self.owner = owner
        self.opened_at = opened_at
        self.balance = Decimal("0")
        self.references: list[uuid.UUID] = []

    @event("Deposited")
    def deposit(self, amount: Decimal, reference: uuid.UUID) -> None:
        self.balance += amount
        self.references.append(reference)


class Ledger(Application):
    name = "Ledger"


def play(*, quick: bool, say: Say, kind: str = "eventsourcing") -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"the source drill plays {', '.join(KINDS)}")
    drill = _SourceDrill(quick, say)
    try:
        return drill.play()
    finally:
        drill.stop()


class _SourceDrill:
    def __init__(self, quick: bool, say: Say):
        self.quick, self.say = quick, say
        self.before, self.after = SIZES[quick]
        self.rng = random.Random(20261204)
        base = connection.settings_dict["NAME"]
        self.database, self.backup, self.reader = scratch_names(base)
        self.app: Ledger | None = None
        # What the application saved, as it holds it: the truth the checks compare with.
        self.accounts: dict[uuid.UUID, Account] = {}
        self.saved = 0
        self.report: dict[str, Any] = {"source_kind": "eventsourcing", "quick": quick}

    # --- the story

    def play(self) -> dict[str, Any]:
        self._prepare()
        self._follow()
        self._back_up()
        self._write_on()
        started = self._restore()
        self._recover(started)
        self._verify()
        return self.report

    def _prepare(self) -> None:
        self.say("preparing", f"creating the application's database {self.database}")
        self._drop_databases()
        with _admin() as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
            admin.execute(f'DROP ROLE IF EXISTS "{self.reader}"')
            admin.execute(f'CREATE ROLE "{self.reader}" LOGIN')
        self._open()
        with psycopg.connect(self._url(), autocommit=True) as conn:
            conn.execute(f'GRANT SELECT ON ledger_events TO "{self.reader}"')

    def _follow(self) -> None:
        self.say("following", f"the application writes {self.before} events while Replaydesk follows it")
        self._write(self.before // 2)
        with inline():
            source_services.add_source(
                name=SOURCE,
                kind="eventsourcing",
                dsn=self._url(user=self.reader),
                options={"application": "Ledger"},
                actor=ACTOR,
            )
        backfill = Job.objects.get(kind="backfill", target=f"source.{SOURCE}")
        writing = threading.Thread(target=self._write, args=(self.before - self.before // 2,))
        writing.start()
        finished = run_inline(backfill.pk)
        writing.join()
        if finished.state != Job.State.SUCCEEDED:
            raise RuntimeError(f"the backfill ended {finished.state}: {finished.error}")
        self._caught_up()
        self.say("following", f"{self.saved} events saved and copied")

    def _back_up(self) -> None:
        self.say("backup", "backing up the application's database")
        self._close()
        with _admin() as admin:
            admin.execute(f'CREATE DATABASE "{self.backup}" TEMPLATE "{self.database}"')
        self.report["events_in_backup"] = self.saved
        self._open()

    def _write_on(self) -> None:
        self.say("writing", f"the application writes {self.after} more events, which Replaydesk copies")
        stop = threading.Event()
        follower = threading.Thread(target=self._follow_until, args=(stop,))
        follower.start()
        try:
            self._write(self.after)
        finally:
            stop.set()
            follower.join()
        self._caught_up()
        self.report["events_saved"] = self.saved

    def _restore(self) -> float:
        lost = self.saved - self.report["events_in_backup"]
        self.say("restore", f"restoring the application's database from the backup ({lost} events lost)")
        started = time.monotonic()
        self._close()
        with _admin() as admin:
            admin.execute(f'DROP DATABASE "{self.database}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.database}" TEMPLATE "{self.backup}"')
        result = source_follow.follow(name=SOURCE, budget_seconds=5, until_caught_up=True)
        self.report["follower_refused"] = result.error
        self.report["events_lost_by_restore"] = lost
        self.say("restore", f"the follower stops: {result.error}")
        return started

    def _recover(self, started: float) -> None:
        self.say("recovering", "giving the source a DSN that may write, then writing its lost events back")
        source_services.set_write_dsn(name=SOURCE, dsn=self._url(), actor=ACTOR)
        job = run_job("write_back", source=SOURCE)
        self._caught_up()
        source = Source.objects.get(name=SOURCE)
        self.report.update(
            rto_seconds=round(time.monotonic() - started, 2),
            events_written_back=job.result["written"],
            streams_written_back=job.result["streams"],
            conflicts=job.result["conflicts"],
            followed_from=job.result["position"],
            follower_error=source.last_error,
            jobs={"write_back": job.pk},
        )
        self.say(
            "recovering",
            f"{job.result['written']} events written back; followed again after "
            f"{self.report['rto_seconds']} s",
        )

    def _verify(self) -> None:
        self.say("verifying", "loading every account from the application's repository")
        self._open()
        missing = wrong = 0
        for account_id, saved in self.accounts.items():
            try:
                loaded = self.app.repository.get(account_id)
            except Exception:
                missing += saved.version
                continue
            if loaded.version < saved.version:
                missing += saved.version - loaded.version
            elif vars(loaded) != vars(saved):
                wrong += 1
        with psycopg.connect(self._url(), autocommit=True) as conn:
            [rows] = conn.execute("SELECT count(*) FROM ledger_events").fetchone()
        again = run_job("write_back", source=SOURCE)
        checks = {
            "events_missing": missing,
            "aggregates_wrong": wrong,
            # The table's key forbids a version twice; an event saved once and written back again as
            # well would be a row more than the application saved.
            "events_written_twice": max(0, rows - self.saved),
            "second_write_back_wrote": again.result["written"],
            "follower_errors": 1 if self.report["follower_error"] else 0,
        }
        self.report.update(
            checks=checks,
            rpo_events=missing,
            events_in_source=rows,
            passed=all(value == 0 for value in checks.values()) and bool(self.report["follower_refused"]),
        )
        self.say("verifying", verdict_line(self.report["passed"], checks))

    def stop(self) -> None:
        self._close()
        close_old_connections()
        self._drop_databases()
        with _admin() as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{self.reader}"')

    # --- the application

    def _write(self, events: int) -> None:
        """Save `events` events at about WRITES_PER_SECOND: new accounts, and deposits into known ones."""
        pause = 1.0 / WRITES_PER_SECOND[self.quick]
        for _ in range(events):
            if not self.accounts or self.rng.random() < 0.2:
                account = Account(f"owner-{len(self.accounts)}", dt.datetime.now(dt.UTC))
            else:
                account = self.accounts[self.rng.choice(list(self.accounts))]
                cents = Decimal(self.rng.randint(1, 100_000)) / 100
                account.deposit(cents, uuid.UUID(int=self.rng.getrandbits(128), version=4))
            self.app.save(account)
            self.accounts[account.id] = account
            self.saved += 1
            time.sleep(pause)

    def _follow_until(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                source_follow.follow(name=SOURCE, budget_seconds=0.5)
        finally:
            connection.close()

    def _caught_up(self) -> None:
        result = source_follow.follow(name=SOURCE, budget_seconds=120, until_caught_up=True)
        if result.error or not result.caught_up:
            raise RuntimeError(f"the follower did not catch up: {result.error or 'still copying'}")

    def _open(self) -> None:
        params = connection.get_connection_params()
        self.app = Ledger(
            env={
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": self.database,
                "POSTGRES_HOST": str(params.get("host") or "localhost"),
                "POSTGRES_PORT": str(params.get("port") or 5432),
                "POSTGRES_USER": str(params.get("user") or ""),
                "POSTGRES_PASSWORD": str(params.get("password") or ""),
            }
        )

    def _close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None

    def _url(self, user: str | None = None) -> str:
        params = connection.get_connection_params()
        user = user or str(params.get("user") or "")
        password = params.get("password") if user == params.get("user") else None
        auth = quote(user, safe="") + (f":{quote(str(password), safe='')}" if password else "")
        host = str(params.get("host") or "localhost")
        return f"postgresql://{auth}@{quote(host, safe='')}:{params.get('port') or 5432}/{self.database}"

    def _drop_databases(self) -> None:
        with _admin() as admin:
            for name in (self.database, self.backup):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scratch_names(base: str) -> tuple[str, str, str]:
    """The application's database, its backup and the role Replaydesk reads it with, for a drill whose
    scratch database is `base` (its parent drops them too, after a killed drill)."""
    return f"{base}_app", f"{base}_app_backup", f"{base}_reader"[:63]


def _admin() -> psycopg.Connection:
    from recovery.drill import admin_connection

    return admin_connection()


def report_lines(report: dict[str, Any]) -> list[str]:
    verdict = "PASSED" if report["passed"] else "FAILED"
    checks = report["checks"].items()
    return [
        f"Source drill ({report['source_kind']}) {verdict}",
        f"  RPO                  {report['rpo_events']} events lost",
        f"  RTO                  {report['rto_seconds']} s from the restore to a source followed again",
        f"  lost by the restore  {report['events_lost_by_restore']} of {report['events_saved']} events",
        f"  written back         {report['events_written_back']} events in "
        f"{report['streams_written_back']} aggregates",
        "  checks               "
        + ", ".join(f"{name} {'ok' if value == 0 else f'{value} wrong'}" for name, value in checks),
    ]
