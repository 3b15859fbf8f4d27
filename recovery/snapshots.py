"""Snapshots of a projection: a consistent copy of its schema, checkpoints included, in the snapshot
store (recovery/snapshot_store.py: a directory, or S3-compatible object storage).

A snapshot is taken in one REPEATABLE READ transaction (every table as of the same instant) with COPY,
one file per table streamed to the store, and a manifest with the position, the row counts and each
file's sha256, written last. Loading one checks every checksum as it loads, in the transaction that
loads it: a snapshot whose files do not match is refused, whatever it holds, and nothing is loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from recovery import snapshot_store
from recovery.snapshot_store import S3Snapshot, SnapshotStoreError, Store
from streams.projections import (
    Projection,
    create_indexes,
    create_schema,
    get_projection,
    quote,
    read_checkpoint,
)

# Where a snapshot is: a directory (a Path) or an object in a bucket.
Location = Path | S3Snapshot


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


def store_of(root: Path | Store | None) -> Store:
    """The store given (a directory is a store of its own), or the configured one."""
    if root is None:
        return snapshot_store.configured()
    return snapshot_store.LocalStore(root) if isinstance(root, Path) else root


def take_snapshot(*, projection_name: str, root: Path | Store | None = None) -> tuple[Location, Manifest]:
    """Copy the projection's schema to a new snapshot; return where it is and its manifest."""
    projection = _projection(projection_name)
    if connection.in_atomic_block:
        raise SnapshotError(
            "a snapshot needs a transaction of its own (REPEATABLE READ); call it outside one"
        )
    try:
        return _take(projection, store_of(root), timezone.now())
    except SnapshotStoreError as exc:
        raise SnapshotError(str(exc)) from exc


def _take(projection: Projection, store: Store, taken_at: dt.datetime) -> tuple[Location, Manifest]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        found = read_checkpoint(projection)
        if found is None:
            raise SnapshotError(f"{projection.name} has no schema yet: nothing to snapshot")
        position, version = found
        writer = store.writer(projection.name, f"{taken_at:%Y%m%dT%H%M%S%f}-p{position}")
        try:
            cursor.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
                [projection.schema],
            )
            tables = [_copy_out(cursor, projection.schema, name, writer) for (name,) in cursor.fetchall()]
            manifest = Manifest(projection.name, version, position, taken_at.isoformat(), tables)
            return writer.commit(json.dumps(asdict(manifest), indent=2)), manifest
        except BaseException:
            writer.abort()  # never leave half a snapshot behind
            raise


def _copy_out(cursor, schema: str, table: str, writer: snapshot_store.Writer) -> TableFile:
    digest, rows = hashlib.sha256(), 0
    name = f"{table}.copy"
    out = writer.file(name)
    with cursor.cursor.copy(f"COPY {quote(schema)}.{quote(table)} TO STDOUT") as copy:
        for chunk in copy:
            out.write(chunk)
            digest.update(chunk)
            rows += bytes(chunk).count(b"\n")
    writer.close_file()
    return TableFile(table=table, file=name, rows=rows, sha256=digest.hexdigest())


def manifest_dict(manifest: Manifest) -> dict:
    return asdict(manifest)


def read_manifest(path: Location) -> Manifest:
    try:
        text = snapshot_store.reader(path).manifest_text()
        raw = json.loads(text)
        return Manifest(**{**raw, "tables": [TableFile(**table) for table in raw["tables"]]})
    except (OSError, ValueError, TypeError, KeyError, SnapshotStoreError) as exc:
        raise SnapshotError(f"{path} has no readable manifest: {exc}") from exc


def file_size(path: Location, file: str) -> int:
    return snapshot_store.reader(path).size(file)


def _chunks(path: Location, table: TableFile) -> Iterator[bytes]:
    """The file's bytes; the checksum is checked as they pass, and a mismatch raises at the end."""
    stored = snapshot_store.reader(path)
    if not stored.exists(table.file):
        raise SnapshotError(f"snapshot {path.name}: {table.file} is missing")
    digest = hashlib.sha256()
    for chunk in stored.chunks(table.file):
        digest.update(chunk)
        yield chunk
    if digest.hexdigest() != table.sha256:
        raise SnapshotError(f"snapshot {path.name}: {table.file} does not match its checksum; refused")


def verify_snapshot(path: Location) -> Manifest:
    """The manifest, once every file is there with the checksum it was written with."""
    manifest = read_manifest(path)
    try:
        for table in manifest.tables:
            for _ in _chunks(path, table):
                pass
    except SnapshotStoreError as exc:
        raise SnapshotError(str(exc)) from exc
    return manifest


def load_snapshot(*, path: Location, schema: str, plain_indexes: bool = True) -> Manifest:
    """Create `schema` with the projection's tables and fill it from the snapshot, each file's checksum
    checked as it loads: a file that does not match undoes the whole load. Without `plain_indexes`, only
    its unique indexes are built (the caller builds the others, create_indexes(which="plain"))."""
    manifest = read_manifest(path)
    projection = _projection(manifest.projection)
    if not schema.startswith(projection.schema):
        raise SnapshotError(f"{projection.name} loads into {projection.schema} or a schema named after it")
    if manifest.version != projection.version:
        raise SnapshotError(
            f"snapshot {path.name} holds {projection.name} version {manifest.version}; the code is version "
            f"{projection.version}, so it cannot be loaded (replay from the log instead)"
        )
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            create_schema(projection, schema, indexes="none")
            for table in manifest.tables:
                cursor.execute(f"TRUNCATE {quote(schema)}.{quote(table.table)}")
                with cursor.cursor.copy(f"COPY {quote(schema)}.{quote(table.table)} FROM STDIN") as copy:
                    for chunk in _chunks(path, table):
                        copy.write(chunk)
            create_indexes(projection, schema, which="all" if plain_indexes else "unique")
    except SnapshotStoreError as exc:
        raise SnapshotError(str(exc)) from exc
    return manifest


def list_snapshots(
    *, projection_name: str, root: Path | Store | None = None
) -> list[tuple[Location, Manifest]]:
    """Readable snapshots of a projection, newest first (unverified: verify before use)."""
    store = store_of(root)
    found = []
    for name in sorted(store.names(projection_name), reverse=True):
        path = store.get(projection_name, name)
        try:
            found.append((path, read_manifest(path)))
        except SnapshotError:
            continue
    return found


def stored(projection: str, name: str) -> Location:
    """A catalogued snapshot, where the configured store keeps it."""
    return snapshot_store.configured().get(projection, name)


def latest_before(
    *, projection_name: str, when: dt.datetime, root: Path | Store | None = None
) -> Location | None:
    for path, manifest in list_snapshots(projection_name=projection_name, root=root):
        if dt.datetime.fromisoformat(manifest.taken_at) <= when:
            return path
    return None


def _projection(name: str) -> Projection:
    projection = get_projection(name)
    if projection is None:
        raise SnapshotError(f"no projection is named {name!r}")
    return projection
