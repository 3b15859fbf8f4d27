"""The sources the sources section follows, each in a scratch database of the run's server, written by
its own write path: an application of the eventsourcing library (its PostgreSQL recorder), Message DB
(installed from its npm package's SQL; live messages with its write_message) and a plain table.

A history of N events is written in bulk (the library's recorder in batches of whole aggregates; Message
DB and the table with one INSERT … SELECT, the rows write_message would write); the live writer is a
process of its own (no Django) that writes at a fixed rate and notes when each event committed.
"""

from __future__ import annotations

import json
import multiprocessing
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg.conninfo import conninfo_to_dict

KINDS = ("eventsourcing", "messagedb", "table")
READER_ROLE = "rd_bench_src_reader"
# Every stream of a history holds this many events.
EVENTS_PER_STREAM = 10
# The live writer commits this many events a transaction.
LIVE_EVENTS_PER_COMMIT = 10
APPLICATION = "BenchLedger"
TABLE_DDL = """
CREATE TABLE events (
    seq bigserial PRIMARY KEY,
    stream_name text NOT NULL,
    version bigint NOT NULL,
    event_type text NOT NULL,
    body jsonb NOT NULL,
    meta jsonb,
    created timestamptz NOT NULL DEFAULT now(),
    event_id uuid,
    UNIQUE (stream_name, version)
)
"""
TABLE_OPTIONS = {
    "table": "events",
    "position": "seq",
    "stream": "stream_name",
    "sequence": "version",
    "type": "event_type",
    "data": "body",
    "metadata": "meta",
    "time": "created",
    "id": "event_id",
}


class Account(Aggregate):
    @event("Opened")
    def __init__(self, owner: str):
        self.owner = owner
        self.balance = Decimal(0)

    @event("Deposited")
    def deposit(self, amount: Decimal, memo: str) -> None:
        self.balance += amount


class BenchLedger(Application):
    name = APPLICATION


@dataclass(frozen=True)
class SourceDB:
    kind: str
    name: str
    admin_url: str
    reader_url: str
    # What the live writer writes with (Message DB's: a role of its own, as `message_store` is).
    writer_url: str

    def options(self) -> dict:
        if self.kind == "eventsourcing":
            return {"application": APPLICATION}
        if self.kind == "messagedb":
            return {}
        return dict(TABLE_OPTIONS)

    def top(self) -> int:
        with psycopg.connect(self.admin_url) as conn:
            return conn.execute(
                f"SELECT COALESCE(max({POSITION[self.kind]}), 0) FROM {TABLE[self.kind]}"
            ).fetchone()[0]


TABLE = {
    "eventsourcing": f"{APPLICATION.lower()}_events",
    "messagedb": "message_store.messages",
    "table": "events",
}
POSITION = {"eventsourcing": "notification_id", "messagedb": "global_position", "table": "seq"}


def _url(base: str, database: str, user: str | None = None) -> str:
    parts = urlsplit(base)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(path="/" + database, netloc=netloc))


def create(admin_url: str, kind: str, prefix: str) -> SourceDB:
    """A scratch database for one kind, its table (or Message DB, or the library's) empty, and the reader
    role (one that may only read) allowed to read it."""
    name = f"{prefix}_src_{kind}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [READER_ROLE]).fetchone() is None:
            conn.execute(f'CREATE ROLE "{READER_ROLE}" LOGIN')
    writer = f"{prefix}_src_writer"
    found = SourceDB(
        kind=kind,
        name=name,
        admin_url=_url(admin_url, name),
        reader_url=_url(admin_url, name, READER_ROLE),
        writer_url=_url(admin_url, name, writer) if kind == "messagedb" else _url(admin_url, name),
    )
    if kind == "messagedb":
        from tests.streams.messagedb_helpers import install

        install(found.admin_url, writer)
        _execute(found, f'GRANT USAGE ON SCHEMA message_store TO "{READER_ROLE}"')
        _execute(found, f'GRANT SELECT ON message_store.messages TO "{READER_ROLE}"')
    elif kind == "table":
        _execute(found, TABLE_DDL)
        _execute(found, f'GRANT SELECT ON events TO "{READER_ROLE}"')
    else:
        app = application(found)
        app.close()
        _execute(found, f'GRANT SELECT ON {TABLE[kind]} TO "{READER_ROLE}"')
    return found


def drop(admin_url: str, found: SourceDB, prefix: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{found.name}" WITH (FORCE)')
        if found.kind == "messagedb":
            conn.execute(f'DROP ROLE IF EXISTS "{prefix}_src_writer"')


def drop_role(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{READER_ROLE}"')


def _execute(found: SourceDB, statement: str) -> None:
    with psycopg.connect(found.admin_url, autocommit=True) as conn:
        conn.execute(statement)


def application(found: SourceDB) -> BenchLedger:
    server = conninfo_to_dict(found.admin_url)
    return BenchLedger(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": found.name,
            "POSTGRES_HOST": server.get("host") or "127.0.0.1",
            "POSTGRES_PORT": str(server.get("port") or 5432),
            "POSTGRES_USER": server.get("user") or "postgres",
            "POSTGRES_PASSWORD": server.get("password") or "",
        }
    )


# --- a history of N events


def write_history(found: SourceDB, events: int) -> dict:
    """N events over N / EVENTS_PER_STREAM streams, each stream's events in order."""
    started = time.monotonic()
    streams = max(1, events // EVENTS_PER_STREAM)
    if found.kind == "eventsourcing":
        _history_eventsourcing(found, streams)
    else:
        statement = MESSAGEDB_HISTORY if found.kind == "messagedb" else TABLE_HISTORY
        with psycopg.connect(found.admin_url, autocommit=True) as conn:
            conn.execute(statement, {"events": streams * EVENTS_PER_STREAM, "streams": streams})
    with psycopg.connect(found.admin_url, autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {TABLE[found.kind]}")
    return {
        "events": streams * EVENTS_PER_STREAM,
        "streams": streams,
        "seconds": round(time.monotonic() - started, 1),
    }


# An account's opening and its deposits, ordered as one writer per stream would write them.
TABLE_HISTORY = """
INSERT INTO events (stream_name, version, event_type, body, meta, created, event_id)
SELECT 'account-' || mod(g, %(streams)s), g / %(streams)s + 1,
       CASE WHEN g < %(streams)s THEN 'Opened' ELSE 'Deposited' END,
       jsonb_build_object('account', 'account-' || mod(g, %(streams)s), 'amount', mod(g, 1000),
                          'currency', 'EUR', 'memo', 'deposit number ' || g),
       jsonb_build_object('actor', 'bench.writer', 'correlation_id', gen_random_uuid()),
       timestamptz '2026-03-01' + g * interval '1 ms', gen_random_uuid()
  FROM generate_series(0, %(events)s - 1) g ORDER BY g
"""
MESSAGEDB_HISTORY = """
INSERT INTO message_store.messages (id, stream_name, type, position, data, metadata, time)
SELECT gen_random_uuid(), 'account-' || mod(g, %(streams)s),
       CASE WHEN g < %(streams)s THEN 'Opened' ELSE 'Deposited' END, g / %(streams)s,
       jsonb_build_object('account', 'account-' || mod(g, %(streams)s), 'amount', mod(g, 1000),
                          'currency', 'EUR', 'memo', 'deposit number ' || g),
       jsonb_build_object('actor', 'bench.writer', 'correlation_id', gen_random_uuid()),
       timestamp '2026-03-01' + g * interval '1 ms'
  FROM generate_series(0, %(events)s - 1) g ORDER BY g
"""
# Aggregates saved per call of the application's save: one transaction of the recorder.
ES_SAVE_AGGREGATES = 1000


def _history_eventsourcing(found: SourceDB, streams: int) -> None:
    app = application(found)
    try:
        for start in range(0, streams, ES_SAVE_AGGREGATES):
            accounts = []
            for n in range(start, min(streams, start + ES_SAVE_AGGREGATES)):
                account = Account(f"owner {n}")
                for k in range(1, EVENTS_PER_STREAM):
                    account.deposit(Decimal(k * 10 + n % 7), f"deposit number {k}")
                accounts.append(account)
            app.save(*accounts)
    finally:
        app.close()


# --- the live writer


def start_writer(found: SourceDB, rate: int, seconds: float, out: Path) -> multiprocessing.Process:
    """A process that writes `rate` events a second for `seconds` (LIVE_EVENTS_PER_COMMIT a transaction,
    a transaction every LIVE_EVENTS_PER_COMMIT / rate seconds) and writes to `out` each event's position
    in the source and the wall-clock time its transaction's commit returned."""
    process = multiprocessing.get_context("spawn").Process(
        target=_write_live, args=(found, rate, seconds, str(out), uuid.uuid4().hex[:8]), daemon=True
    )
    process.start()
    return process


def _write_live(found: SourceDB, rate: int, seconds: float, out: str, tag: str) -> None:
    write = {"eventsourcing": _EventsourcingWriter, "messagedb": _MessageDBWriter, "table": _TableWriter}[
        found.kind
    ]
    committed: list[tuple[object, float]] = []
    every = LIVE_EVENTS_PER_COMMIT / rate
    ticks = int(seconds / every)
    with write(found, tag) as tick:
        started = time.time()
        for n in range(ticks):
            due = started + n * every
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            keys = tick(n)
            now = time.time()
            committed.extend((key, now) for key in keys)
        elapsed = time.time() - started
        positions = tick.positions([key for key, _ in committed])
    rows = [[positions[key], at] for key, at in committed]
    Path(out).write_text(json.dumps({"committed": rows, "seconds": elapsed}))


class _Writer:
    def __init__(self, found: SourceDB, tag: str):
        # In the names of the streams it writes: a new set each run.
        self.found, self.tag = found, tag

    def __enter__(self):
        self.conn = psycopg.connect(self.found.writer_url)
        return self

    def __exit__(self, *exc) -> None:
        self.conn.close()

    def positions(self, keys: list) -> dict:
        column = "event_id" if self.found.kind == "table" else "id"
        found = self.conn.execute(
            f"SELECT {column}, {POSITION[self.found.kind]} FROM {TABLE[self.found.kind]}"
            f" WHERE {column} = ANY(%s)",
            [keys],
        ).fetchall()
        self.conn.commit()
        by_key = dict(found)
        return {key: by_key[key] for key in keys}


class _TableWriter(_Writer):
    def __call__(self, n: int) -> list:
        rows = _live_rows(self.tag, n)
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO events (stream_name, version, event_type, body, meta, event_id)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
        self.conn.commit()
        return [row[-1] for row in rows]


class _MessageDBWriter(_Writer):
    def __call__(self, n: int) -> list:
        rows = _live_rows(self.tag, n)
        with self.conn.cursor() as cur:
            cur.executemany(
                "SELECT message_store.write_message(%s, %s, %s, %s, %s, %s)",
                [
                    (str(key), stream, type_, data, meta, version - 2)
                    for stream, version, type_, data, meta, key in rows
                ],
            )
        self.conn.commit()
        return [row[-1] for row in rows]


class _EventsourcingWriter(_Writer):
    def __enter__(self):
        super().__enter__()
        self.app = application(self.found)
        return self

    def __exit__(self, *exc) -> None:
        self.app.close()
        super().__exit__(*exc)

    def __call__(self, n: int) -> list:
        accounts = [Account(f"live {n}") for _ in range(LIVE_EVENTS_PER_COMMIT // 2)]
        for account in accounts:
            account.deposit(Decimal(n % 1000), f"deposit at tick {n}")
        self.app.save(*accounts)
        return [(account.id, version) for account in accounts for version in (1, 2)]

    def positions(self, keys: list) -> dict:
        found = self.conn.execute(
            f"SELECT originator_id, originator_version, notification_id FROM {TABLE['eventsourcing']}"
            " WHERE originator_id = ANY(%s)",
            [list({key[0] for key in keys})],
        ).fetchall()
        self.conn.commit()
        by_key = {(originator, version): position for originator, version, position in found}
        return {key: by_key[key] for key in keys}


def _live_rows(tag: str, n: int) -> list[tuple]:
    """A tick's events: LIVE_EVENTS_PER_COMMIT / 2 new streams, each opened and given a deposit
    (stream, version from 1, type, data, metadata as JSON, id)."""
    rows = []
    for k in range(LIVE_EVENTS_PER_COMMIT // 2):
        stream = f"account-{tag}x{n}x{k}"
        for version, type_ in ((1, "Opened"), (2, "Deposited")):
            rows.append((stream, version, type_, json.dumps(_data(n)), json.dumps(_metadata()), uuid.uuid4()))
    return rows


def _data(n: int) -> dict:
    return {
        "account": f"account-live-{n}",
        "amount": n % 1000,
        "currency": "EUR",
        "memo": f"deposit number {n}",
    }


def _metadata() -> dict:
    return {"actor": "bench.writer", "correlation_id": str(uuid.uuid4())}
