"""Snapshots of a projection: consistent copies with checksums, refused when corrupt."""

import datetime as dt

import pytest
from django.db import connection, transaction

from recovery.snapshots import (
    SnapshotError,
    latest_before,
    list_snapshots,
    load_snapshot,
    take_snapshot,
    verify_snapshot,
)
from streams.consumers import run_projection
from streams.projections import get_projection
from tests.streams.projection_helpers import create_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


def create_users(*uids):
    for uid in uids:
        create_user(uid)


def rows(schema, table):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {schema}.{table} ORDER BY 1")
        return cursor.fetchall()


def schema_exists(schema):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cursor.fetchone() is not None


def test_a_snapshot_holds_every_table_with_the_checkpoint_counts_and_checksums(tmp_path):
    create_users("1", "2", "3")
    run_projection("users_directory")
    path, manifest = take_snapshot(projection_name="users_directory", root=tmp_path)

    assert (manifest.projection, manifest.version) == ("users_directory", 1)
    assert manifest.position == rows("proj_users_directory", "checkpoint")[0][1]
    counts = {t.table: t.rows for t in manifest.tables}
    assert counts == {"checkpoint": 1, "stream_checkpoint": 3, "users": 3}
    assert all(len(t.sha256) == 64 and (path / t.file).is_file() for t in manifest.tables)
    assert verify_snapshot(path) == manifest


def test_a_snapshot_loads_into_a_fresh_schema_equal_to_the_original(tmp_path):
    create_users("1", "2")
    run_projection("users_directory")
    path, _ = take_snapshot(projection_name="users_directory", root=tmp_path)
    create_users("3")
    run_projection("users_directory")

    load_snapshot(path=path, schema="proj_users_directory__restore")

    assert len(rows("proj_users_directory__restore", "users")) == 2
    assert rows("proj_users_directory__restore", "users") == rows("proj_users_directory", "users")[:2]
    assert (
        rows("proj_users_directory__restore", "checkpoint")[0][1]
        < rows("proj_users_directory", "checkpoint")[0][1]
    )


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "delete"])
def test_a_corrupt_snapshot_is_refused_and_nothing_is_loaded(tmp_path, damage):
    create_users("1", "2")
    run_projection("users_directory")
    path, manifest = take_snapshot(projection_name="users_directory", root=tmp_path)
    file = path / next(t.file for t in manifest.tables if t.table == "users")
    if damage == "flip a byte":
        data = bytearray(file.read_bytes())
        data[5] ^= 0x01
        file.write_bytes(bytes(data))
    elif damage == "truncate":
        file.write_bytes(file.read_bytes()[:-3])
    else:
        file.unlink()

    with pytest.raises(SnapshotError, match="checksum|missing"):
        load_snapshot(path=path, schema="proj_users_directory__restore")
    assert not schema_exists("proj_users_directory__restore")


def test_a_snapshot_of_another_version_is_refused(tmp_path, monkeypatch):
    create_users("1")
    run_projection("users_directory")
    path, _ = take_snapshot(projection_name="users_directory", root=tmp_path)
    monkeypatch.setattr(type(get_projection("users_directory")), "version", 2)
    with pytest.raises(SnapshotError, match="version 1; the code is version 2"):
        load_snapshot(path=path, schema="proj_users_directory__restore")


def test_snapshots_are_listed_newest_first_and_found_by_time(tmp_path):
    create_users("1")
    run_projection("users_directory")
    first, _ = take_snapshot(projection_name="users_directory", root=tmp_path)
    create_users("2")
    run_projection("users_directory")
    second, _ = take_snapshot(projection_name="users_directory", root=tmp_path)

    assert [p for p, _ in list_snapshots(projection_name="users_directory", root=tmp_path)] == [second, first]
    assert (
        latest_before(projection_name="users_directory", when=dt.datetime.now(dt.UTC), root=tmp_path)
        == second
    )
    long_ago = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert latest_before(projection_name="users_directory", when=long_ago, root=tmp_path) is None


def test_bad_requests_are_refused_clearly(tmp_path):
    with pytest.raises(SnapshotError, match="no projection is named"):
        take_snapshot(projection_name="nope", root=tmp_path)
    with pytest.raises(SnapshotError, match="no schema yet"):
        take_snapshot(projection_name="users_directory", root=tmp_path)
    assert list(tmp_path.rglob("*")) == []  # nothing written: no half-taken snapshot left
    with pytest.raises(SnapshotError, match="outside one"), transaction.atomic():
        take_snapshot(projection_name="users_directory", root=tmp_path)
    with pytest.raises(SnapshotError, match="no readable manifest"):
        verify_snapshot(tmp_path)
