"""What the tests of sources share: a scratch database on the tests' own PostgreSQL standing for a team's
event store, with a role that may only read it, and an event table of a home-grown shape."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.db import connection

from streams import source_follow, source_services
from streams.models import Source

ROOT = Path(__file__).resolve().parents[2]
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


def server_url(dbname: str, user: str | None = None) -> str:
    """A URL to another database (or as another role) on the tests' server."""
    db = connection.settings_dict
    user = user or db["USER"] or ""
    auth = quote(user, safe="") + (
        f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] and user == db["USER"] else ""
    )
    host = quote(db["HOST"] or "localhost", safe="")
    return f"postgresql://{auth}@{host}:{db['PORT'] or 5432}/{dbname}"


@dataclass
class SourceDatabase:
    name: str
    role: str
    # The team's own access: creates tables and writes events.
    admin_url: str
    # What Replaydesk is given: a role that may only read.
    reader_url: str

    def execute(self, statement: str, params=()) -> list[tuple]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def grant_read(self, table: str = "events") -> None:
        self.execute(f"GRANT SELECT ON {table} TO {self.role}")

    def append(self, stream: str, version: int, type_: str = "Happened", body=None, **columns) -> int:
        names = ["stream_name", "version", "event_type", "body", *columns]
        values = [
            stream,
            version,
            type_,
            psycopg.types.json.Jsonb(body if body is not None else {"v": version}),
        ]
        values += list(columns.values())
        placeholders = ", ".join(["%s"] * len(values))
        [(seq,)] = self.execute(
            f"INSERT INTO events ({', '.join(names)}) VALUES ({placeholders}) RETURNING seq", values
        )
        return seq


@pytest.fixture
def source_db():
    """A database of its own for the test, with an `events` table the reader role may read."""
    suffix = uuid.uuid4().hex[:10]
    found = SourceDatabase(
        name=f"rd_source_{suffix}",
        role=f"rd_reader_{suffix}",
        admin_url=server_url(f"rd_source_{suffix}"),
        reader_url=server_url(f"rd_source_{suffix}", user=f"rd_reader_{suffix}"),
    )
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{found.name}"')
        admin.execute(f'CREATE ROLE "{found.role}" LOGIN')
    try:
        found.execute(TABLE_DDL)
        found.grant_read()
        yield found
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{found.name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{found.role}"')


def add_table_source(source_db: SourceDatabase, name: str = "orders_store", **options) -> Source:
    return source_services.add_source(
        name=name, kind="table", dsn=source_db.reader_url, options={**TABLE_OPTIONS, **options}, actor="tests"
    )


def copy_all(name: str = "orders_store", timeout: float = 30.0) -> source_follow.FollowResult:
    """Follow until nothing final is left to copy (holes settled included)."""
    result = source_follow.follow(name=name, budget_seconds=timeout, until_caught_up=True)
    assert not result.error, result.error
    assert result.caught_up, "still copying after the timeout"
    return result


def write_while_following(writer, writers: int, name: str = "orders_store") -> None:
    """`writer(n)` in `writers` threads while a follower follows the source, then the copy completed:
    what a source's concurrent writers commit, followed as they write."""
    writing = threading.Event()
    writing.set()

    def follower() -> None:
        try:
            while writing.is_set():
                source_follow.follow(name=name, budget_seconds=0.3)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    following = threading.Thread(target=follower)
    following.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writing.clear()
    following.join()
    copy_all(name)


def kill_while_copying(argv: list[str], env: dict, *, rounds: int, rng, most_seconds: float) -> None:
    """Start `argv` (a follower, a backfill) `rounds` times and kill -9 it each time once it has copied
    something, a random moment of at most `most_seconds` later."""
    for _ in range(rounds):
        before = Source.objects.get().events_copied
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while Source.objects.get().events_copied == before:  # it is copying
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        time.sleep(rng.random() * most_seconds)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
