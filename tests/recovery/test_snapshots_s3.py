"""Snapshots in S3-compatible object storage (REPLAYDESK_SNAPSHOT_URL=s3://bucket/prefix), against a real
S3 server on loopback (moto's server mode, started here): streamed multipart uploads, the manifest last,
checksums checked on restore, a killed upload never listed and cleaned up, retention, and a restore on
a machine that never had the snapshot on its disk."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from django.db import connection

from recovery import runner, schedule, services, snapshot_store
from recovery.models import Snapshot
from recovery.snapshots import SnapshotError, list_snapshots, load_snapshot, take_snapshot
from streams.consumers import run_projection
from streams.services import ImportBatch, import_events
from tests.ports import free_port
from tests.streams.test_projection_crashes import this_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "replaydesk-snapshots"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server on loopback, taking parts from 1 KiB (real S3: 5 MiB) so that small snapshots
    are uploaded in many parts."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": "1024"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def bucket(s3_server, settings, monkeypatch, tmp_path):
    """An empty bucket, and the console pointed at it (its local snapshot directory left empty)."""
    for name, value in {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "replaydesk",
        "AWS_SECRET_ACCESS_KEY": "replaydesk-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    for found in client.list_objects_v2(Bucket=BUCKET).get("Contents", []) if _exists(client) else []:
        client.delete_object(Bucket=BUCKET, Key=found["Key"])
    if not _exists(client):
        client.create_bucket(Bucket=BUCKET)
    for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    settings.REPLAYDESK_SNAPSHOT_URL = f"s3://{BUCKET}/prod"
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "local-snapshots"
    monkeypatch.setattr(snapshot_store, "PART_BYTES", 4096)
    return client


def _exists(client) -> bool:
    return any(found["Name"] == BUCKET for found in client.list_buckets().get("Buckets", []))


def keys(client) -> list[str]:
    return sorted(found["Key"] for found in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def users(count: int) -> None:
    batches = [
        ImportBatch(
            stream=f"user-{n}",
            events=[
                {
                    "type": "UserCreated",
                    "data": {
                        "user_id": str(n),
                        "username": f"u{n}",
                        "name": f"Name {n}",
                        "email": f"{n}@x.io",
                    },
                }
            ],
        )
        for n in range(count)
    ]
    import_events(batches=batches)
    while not run_projection("users_directory").caught_up:
        pass


def rows(schema: str, table: str = "users") -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {schema}.{table} ORDER BY 1")
        return cursor.fetchall()


def schema_exists(schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cursor.fetchone() is not None


def test_a_snapshot_goes_to_the_bucket_in_parts_with_its_manifest_and_loads_back(bucket, settings):
    users(600)

    location, manifest = take_snapshot(projection_name="users_directory")

    prefix = f"prod/users_directory/{location.name}/"
    assert keys(bucket) == sorted(
        prefix + file for file in ["manifest.json", *(t.file for t in manifest.tables)]
    )
    users_object = bucket.head_object(Bucket=BUCKET, Key=prefix + "users.copy")
    assert users_object["ETag"].strip('"').rsplit("-", 1)[1] != "1"  # a multipart upload of several parts
    assert not list(Path(settings.REPLAYDESK_SNAPSHOT_DIR).glob("**/*"))  # nothing on the local disk
    assert [found.name for found, _ in list_snapshots(projection_name="users_directory")] == [location.name]
    load_snapshot(path=location, schema="proj_users_directory__restore")
    assert rows("proj_users_directory__restore") == rows("proj_users_directory")


def test_a_corrupted_object_is_refused_on_restore_and_nothing_is_loaded(bucket):
    users(50)
    location, _ = take_snapshot(projection_name="users_directory")
    key = f"prod/users_directory/{location.name}/users.copy"
    body = bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    bucket.put_object(Bucket=BUCKET, Key=key, Body=body.replace(b"Name 7", b"Name 8"))

    with pytest.raises(SnapshotError, match="users.copy does not match its checksum; refused"):
        load_snapshot(path=location, schema="proj_users_directory__restore")

    assert not schema_exists("proj_users_directory__restore")


def test_a_restore_runs_on_a_machine_that_never_had_the_snapshot(bucket, settings, tmp_path):
    users(80)
    taken = runner.run_inline(
        services.request_job(
            kind="snapshot", params={"projection": "users_directory"}, requested_by="olivia", reason="nightly"
        ).pk
    )
    snapshot = Snapshot.objects.get(pk=taken.result["snapshot"])
    assert snapshot.bytes > 0
    expected = rows("proj_users_directory")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE proj_users_directory.users SET name = 'damaged'")
    # Another machine: its own empty snapshot directory, the same bucket.
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "another-machine"

    restored = runner.run_inline(
        services.request_job(
            kind="restore",
            params={"projection": "users_directory", "snapshot": snapshot.pk},
            requested_by="olivia",
            reason="names were damaged",
        ).pk
    )

    assert restored.state == "succeeded", restored.result
    assert rows("proj_users_directory") == expected
    assert not (tmp_path / "another-machine").exists()


def test_an_upload_killed_mid_way_is_never_listed_and_is_cleaned_up(bucket, settings):
    users(4000)
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": this_database_url(),
        "REPLAYDESK_SNAPSHOT_URL": settings.REPLAYDESK_SNAPSHOT_URL,
    }
    code = (
        "import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'console.settings'); import django; "
        "django.setup(); from recovery import snapshot_store; snapshot_store.PART_BYTES = 1024; "
        "from recovery.snapshots import take_snapshot; take_snapshot(projection_name='users_directory')"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _uploading(bucket):  # the users table is being uploaded, part by part
            assert child.poll() is None, "the snapshot finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.killpg(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)

    assert list_snapshots(projection_name="users_directory") == []
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads")

    schedule.prune()  # a killed upload is left alone until it is old…
    assert bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    snapshot_store.configured().prune_unfinished(older_than=0)  # …and then goes, with its files

    assert not bucket.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    assert keys(bucket) == []


def _uploading(client) -> bool:
    for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        if upload["Key"].endswith("/users.copy"):
            parts = client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
            if len(parts.get("Parts", [])) >= 2:
                return True
    return False


def test_retention_drops_old_scheduled_snapshots_from_the_bucket(bucket, settings):
    settings.REPLAYDESK_SNAPSHOT_KEEP = 1
    users(20)
    names = []
    for _ in range(3):
        location, manifest = take_snapshot(projection_name="users_directory")
        Snapshot.objects.create(
            projection="users_directory",
            name=location.name,
            position=manifest.position,
            version=manifest.version,
            taken_at=manifest.taken_at,
            rows=manifest.rows,
            bytes=1,
            manifest={},
            scheduled=True,
        )
        names.append(location.name)

    dropped = schedule.prune()

    assert sorted(dropped) == sorted(f"users_directory/{name}" for name in names[:2])
    assert {key.split("/")[2] for key in keys(bucket)} == {names[2]}


def test_a_bad_snapshot_url_is_a_clear_error(settings):
    settings.REPLAYDESK_SNAPSHOT_URL = "https://example.com/snapshots"
    users(1)

    with pytest.raises(SnapshotError, match=r"must be s3://bucket\[/prefix\]"):
        take_snapshot(projection_name="users_directory")
