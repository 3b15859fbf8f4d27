"""Snapshots of a projection: a consistent copy of its schema, checkpoints included, on disk.

A snapshot is taken in one REPEATABLE READ transaction (every table as of the same instant) with COPY,
one file per table, and a manifest with the position, the row counts and each file's sha256. Loading
one checks every checksum first: a snapshot whose files do not match is refused, whatever it holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from streams.projections import Projection, create_schema, get_projection, quote, read_checkpoint

MANIFEST = "manifest.json"
CHUNK = 1 << 20


class SnapshotError(Exception):
    """A snapshot that cannot be taken or used; the message says why."""


@dataclass(frozen=True)
class TableFile:
    table: str
    file: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    projection: str
    version: int
    position: int
    taken_at: str
    tables: list[TableFile]

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)


def snapshot_root() -> Path:
    return Path(settings.REPLAYDESK_SNAPSHOT_DIR)


def take_snapshot(*, projection_name: str, root: Path | None = None) -> tuple[Path, Manifest]:
    """Copy the projection's schema to a new snapshot directory; return it and its manifest."""
    projection = _projection(projection_name)
    if connection.in_atomic_block:
        raise SnapshotError(
            "a snapshot needs a transaction of its own (REPEATABLE READ); call it outside one"
        )
    root = root or snapshot_root()
    taken_at = timezone.now()
    staging = root / projection.name / f".taking-{taken_at:%Y%m%dT%H%M%S%f}-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        return _take(projection, staging, root, taken_at)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # never leave half a snapshot behind
        raise


def _take(projection: Projection, staging: Path, root: Path, taken_at: dt.datetime) -> tuple[Path, Manifest]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        found = read_checkpoint(projection)
        if found is None:
            raise SnapshotError(f"{projection.name} has no schema yet: nothing to snapshot")
        position, version = found
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", [projection.schema]
        )
        tables = [_copy_out(cursor, projection.schema, name, staging) for (name,) in cursor.fetchall()]
    manifest = Manifest(projection.name, version, position, taken_at.isoformat(), tables)
    (staging / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
    final = root / projection.name / f"{taken_at:%Y%m%dT%H%M%S%f}-p{position}"
    staging.rename(final)  # a snapshot appears whole or not at all
    return final, manifest


def _copy_out(cursor, schema: str, table: str, directory: Path) -> TableFile:
    digest, rows = hashlib.sha256(), 0
    path = directory / f"{table}.copy"
    with path.open("wb") as out, cursor.cursor.copy(f"COPY {quote(schema)}.{quote(table)} TO STDOUT") as copy:
        for chunk in copy:
            out.write(chunk)
            digest.update(chunk)
            rows += bytes(chunk).count(b"\n")
    return TableFile(table=table, file=path.name, rows=rows, sha256=digest.hexdigest())


def manifest_dict(manifest: Manifest) -> dict:
    return asdict(manifest)


def read_manifest(path: Path) -> Manifest:
    try:
        raw = json.loads((path / MANIFEST).read_text())
        return Manifest(**{**raw, "tables": [TableFile(**table) for table in raw["tables"]]})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise SnapshotError(f"{path} has no readable manifest: {exc}") from exc


def verify_snapshot(path: Path) -> Manifest:
    """The manifest, once every file is there with the checksum it was written with."""
    manifest = read_manifest(path)
    for table in manifest.tables:
        file = path / table.file
        if not file.is_file():
            raise SnapshotError(f"snapshot {path.name}: {table.file} is missing")
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != table.sha256:
            raise SnapshotError(f"snapshot {path.name}: {table.file} does not match its checksum; refused")
    return manifest


def load_snapshot(*, path: Path, schema: str) -> Manifest:
    """Create `schema` with the projection's tables and fill it from a verified snapshot."""
    manifest = verify_snapshot(path)
    projection = _projection(manifest.projection)
    if not schema.startswith(projection.schema):
        raise SnapshotError(f"{projection.name} loads into {projection.schema} or a schema named after it")
    if manifest.version != projection.version:
        raise SnapshotError(
            f"snapshot {path.name} holds {projection.name} version {manifest.version}; the code is version "
            f"{projection.version}, so it cannot be loaded (replay from the log instead)"
        )
    with transaction.atomic(), connection.cursor() as cursor:
        create_schema(projection, schema)
        for table in manifest.tables:
            cursor.execute(f"TRUNCATE {quote(schema)}.{quote(table.table)}")
            with (
                (path / table.file).open("rb") as source,
                cursor.cursor.copy(f"COPY {quote(schema)}.{quote(table.table)} FROM STDIN") as copy,
            ):
                while chunk := source.read(CHUNK):
                    copy.write(chunk)
    return manifest


def list_snapshots(*, projection_name: str, root: Path | None = None) -> list[tuple[Path, Manifest]]:
    """Readable snapshots of a projection, newest first (unverified: verify before use)."""
    directory = (root or snapshot_root()) / projection_name
    found = []
    for path in sorted(directory.glob("*-p*"), reverse=True) if directory.is_dir() else []:
        try:
            found.append((path, read_manifest(path)))
        except SnapshotError:
            continue
    return found


def latest_before(*, projection_name: str, when: dt.datetime, root: Path | None = None) -> Path | None:
    for path, manifest in list_snapshots(projection_name=projection_name, root=root):
        if dt.datetime.fromisoformat(manifest.taken_at) <= when:
            return path
    return None


def _projection(name: str) -> Projection:
    projection = get_projection(name)
    if projection is None:
        raise SnapshotError(f"no projection is named {name!r}")
    return projection
