"""Message DB for the tests of its source kind: the `messagedb` fixture installs Eventide's own SQL (the
npm package @eventide/message-db, pinned in .ci/npm/package.json) into a scratch database of the tests'
PostgreSQL, as its install.sh does, so the tests write with its real write_message.

`.ci/run` installs the package (`npm ci --prefix .ci/npm`); on a machine where it is missing the fixture
runs the same command, so `pytest` needs only npm."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.streams.source_helpers import server_url

NPM_DIR = Path(__file__).resolve().parents[2] / ".ci" / "npm"
DATABASE_DIR = NPM_DIR / "node_modules" / "@eventide" / "message-db" / "database"
# install.sh's order: the role, the schema, pgcrypto, the table; then install-functions.sh,
# install-indexes.sh, install-views.sh and install-privileges.sh, each file in its script's order.
SCRIPTS = (
    "roles/message-store.sql",
    "schema/message-store.sql",
    "extensions/pgcrypto.sql",
    "tables/messages.sql",
    "types/message.sql",
    *(
        f"functions/{name}.sql"
        for name in (
            "message-store-version",
            "hash-64",
            "acquire-lock",
            "category",
            "is-category",
            "id",
            "cardinal-id",
            "stream-version",
            "write-message",
            "get-stream-messages",
            "get-category-messages",
            "get-last-stream-message",
        )
    ),
    "indexes/messages-id.sql",
    "indexes/messages-stream.sql",
    "indexes/messages-category.sql",
    *(
        f"views/{name}.sql"
        for name in (
            "stream-summary",
            "type-summary",
            "stream-type-summary",
            "type-stream-summary",
            "category-type-summary",
            "type-category-summary",
        )
    ),
    *(f"privileges/{name}.sql" for name in ("schema", "table", "sequence", "functions", "views")),
)
# The install creates the server-wide role `message_store` and grants it what writers need; each test
# has a role of its own in its place, so tests share nothing and drop what they made.
ROLE_RE = re.compile(r"\b(CREATE ROLE|TO) message_store\b")


def message_db_scripts() -> Path:
    """Message DB's database/ directory, installed from npm when it is not there yet."""
    if not (DATABASE_DIR / "install.sh").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "the Message DB tests need its npm package: install npm, or run npm ci --prefix .ci/npm"
            )
        done = subprocess.run(
            [npm, "ci", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund"], capture_output=True, text=True
        )
        if done.returncode:
            pytest.fail(f"npm could not install Message DB's package into .ci/npm:\n{done.stderr}")
    return DATABASE_DIR


def install(admin_url: str, writer: str) -> None:
    base = message_db_scripts()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto'").fetchone()
        for script in SCRIPTS:
            if script == "extensions/pgcrypto.sql" and not available:
                # Message DB wants it for gen_random_uuid(), built into PostgreSQL since 13; a server
                # without the contrib modules (the embedded one) has no pgcrypto to create.
                continue
            text = (base / script).read_text()
            if script.startswith(("roles/", "privileges/")):
                text, found = ROLE_RE.subn(lambda match: f'{match[1]} "{writer}"', text)
                assert found, f"{script} no longer names the message_store role"
            conn.execute(text)
        # Message DB's functions name its objects unqualified: its role finds them because its name is
        # the schema's ("$user" in the default search_path). Ours is named otherwise, so says so.
        conn.execute(f'ALTER ROLE "{writer}" SET search_path TO message_store, public')


@dataclass
class MessageDB:
    name: str
    # What Replaydesk is given: a role that may only read.
    reader: str
    # Stands for Message DB's `message_store` role: what the team's services write with.
    writer: str
    admin_url: str
    reader_url: str
    writer_url: str

    def execute(self, statement: str, params=()) -> list[tuple]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description else []

    def write(
        self,
        stream: str,
        type_: str,
        data: dict,
        metadata: dict | None = None,
        *,
        expected_version: int | None = None,
        conn: psycopg.Connection | None = None,
    ) -> tuple[uuid.UUID, int]:
        """write_message, as a service writes with Eventide: the message's id and its global position."""
        if conn is None:
            with psycopg.connect(self.writer_url, autocommit=True) as own:
                return self.write(stream, type_, data, metadata, expected_version=expected_version, conn=own)
        message_id = uuid.uuid4()
        conn.execute(
            "SELECT message_store.write_message(%s, %s, %s, %s, %s, %s)",
            [
                str(message_id),
                stream,
                type_,
                Jsonb(data),
                Jsonb(metadata) if metadata else None,
                expected_version,
            ],
        )
        [(position,)] = conn.execute(
            "SELECT global_position FROM message_store.messages WHERE id = %s", [message_id]
        ).fetchall()
        return message_id, position


@pytest.fixture
def messagedb():
    """A scratch database with Message DB installed, a writer role and a reader role that may only read."""
    suffix = uuid.uuid4().hex[:10]
    name, reader, writer = f"rd_msgdb_{suffix}", f"rd_reader_{suffix}", f"rd_writer_{suffix}"
    found = MessageDB(
        name=name,
        reader=reader,
        writer=writer,
        admin_url=server_url(name),
        reader_url=server_url(name, user=reader),
        writer_url=server_url(name, user=writer),
    )
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f'CREATE ROLE "{reader}" LOGIN')
    try:
        install(found.admin_url, writer)
        found.execute(f'GRANT USAGE ON SCHEMA message_store TO "{reader}"')
        found.execute(f'GRANT SELECT ON message_store.messages TO "{reader}"')
        yield found
    finally:
        with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{reader}"')
            admin.execute(f'DROP ROLE IF EXISTS "{writer}"')
