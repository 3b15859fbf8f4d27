"""Where snapshots are kept: a directory (the embedded default, REPLAYDESK_SNAPSHOT_DIR), or S3-compatible
object storage (REPLAYDESK_SNAPSHOT_URL=s3://bucket/prefix; the endpoint, region and credentials from
boto3's usual environment variables: AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, …).

Both keep a snapshot as `<projection>/<name>/`: one file per table and `manifest.json`, which is
written last, so that a snapshot half written (a worker killed mid-way) is never listed:
- in a directory the files are written into a `.taking-…` directory that is renamed when complete;
- in a bucket each file is a multipart upload streamed in parts of PART_BYTES (a snapshot larger than
  memory never sits in memory), and the manifest is put once every file is complete. What a killed
  upload leaves (unfinished multipart uploads, files without a manifest) is removed by
  `prune_unfinished` after a while.

A snapshot stored is read back as a `Stored` (a Path for a directory, an `S3Snapshot` for a bucket):
its name, its manifest's text, each file as a stream of chunks and each file's size.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from django.conf import settings

MANIFEST = "manifest.json"
CHUNK = 1 << 20
# S3 takes parts of at least 5 MiB (but the last); bigger parts, fewer requests.
PART_BYTES = 8 << 20


class SnapshotStoreError(Exception):
    """The store cannot be reached or refuses; the message says what it answered."""


class FileWriter(Protocol):
    def write(self, chunk: bytes) -> None: ...


class Writer(Protocol):
    """One snapshot being written: its files, then commit (with the manifest) or abort."""

    def file(self, name: str) -> FileWriter: ...
    def close_file(self) -> None: ...
    def commit(self, manifest: str) -> Stored: ...
    def abort(self) -> None: ...


class Stored(Protocol):
    @property
    def name(self) -> str: ...


class Store(Protocol):
    def writer(self, projection: str, name: str) -> Writer: ...
    def names(self, projection: str) -> list[str]: ...
    def get(self, projection: str, name: str) -> Stored: ...
    def delete(self, projection: str, name: str) -> None: ...
    def prune_unfinished(self, older_than: float) -> None: ...


def configured() -> Store:
    url = getattr(settings, "REPLAYDESK_SNAPSHOT_URL", "")
    if url:
        return S3Store.from_url(url)
    return LocalStore(Path(settings.REPLAYDESK_SNAPSHOT_DIR))


# --- a directory


class LocalStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def writer(self, projection: str, name: str) -> LocalWriter:
        return LocalWriter(self.root / projection, name)

    def names(self, projection: str) -> list[str]:
        directory = self.root / projection
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.glob("*-p*") if not p.name.startswith("."))

    def get(self, projection: str, name: str) -> Path:
        return self.root / projection / name

    def delete(self, projection: str, name: str) -> None:
        shutil.rmtree(self.root / projection / name, ignore_errors=True)

    def prune_unfinished(self, older_than: float) -> None:
        for staging in self.root.glob("*/.taking-*"):
            if time.time() - staging.stat().st_mtime > older_than:
                shutil.rmtree(staging, ignore_errors=True)


class LocalWriter:
    """Files go to a `.taking-…` directory, renamed to the snapshot's name once the manifest is in."""

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name
        self.staging = directory / f".taking-{name}-{os.getpid()}"
        self.staging.mkdir(parents=True)
        self._open = None

    def file(self, name: str):
        self.close_file()
        self._open = (self.staging / name).open("wb")
        return self._open

    def close_file(self) -> None:
        if self._open is not None:
            self._open.close()
            self._open = None

    def commit(self, manifest: str) -> Path:
        self.close_file()
        (self.staging / MANIFEST).write_text(manifest)
        final = self.directory / self.name
        self.staging.rename(final)  # a snapshot appears whole or not at all
        return final

    def abort(self) -> None:
        self.close_file()
        shutil.rmtree(self.staging, ignore_errors=True)


@dataclass(frozen=True)
class LocalSnapshot:
    """A snapshot in a directory, read as an S3Snapshot is: its manifest, its files and their sizes."""

    path: Path

    def manifest_text(self) -> str:
        return (self.path / MANIFEST).read_text()

    def exists(self, file: str) -> bool:
        return (self.path / file).is_file()

    def chunks(self, file: str) -> Iterator[bytes]:
        with (self.path / file).open("rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    def size(self, file: str) -> int:
        return (self.path / file).stat().st_size


def reader(location: Path | S3Snapshot) -> LocalSnapshot | S3Snapshot:
    """What reads a stored snapshot: a directory's (a Path) or a bucket's."""
    return LocalSnapshot(location) if isinstance(location, Path) else location


# --- S3-compatible object storage


@dataclass(frozen=True)
class S3Snapshot:
    store: S3Store
    projection: str
    name: str

    def key(self, file: str) -> str:
        return self.store.key(self.projection, self.name, file)

    def manifest_text(self) -> str:
        return self.store.call("get_object", Key=self.key(MANIFEST))["Body"].read().decode()

    def exists(self, file: str) -> bool:
        try:
            self.store.call("head_object", Key=self.key(file))
        except SnapshotStoreError as exc:
            if "404" in str(exc) or "Not Found" in str(exc):
                return False
            raise
        return True

    def chunks(self, file: str) -> Iterator[bytes]:
        body = self.store.call("get_object", Key=self.key(file))["Body"]
        yield from body.iter_chunks(CHUNK)

    def size(self, file: str) -> int:
        return int(self.store.call("head_object", Key=self.key(file))["ContentLength"])

    def __str__(self) -> str:
        return f"s3://{self.store.bucket}/{self.key('')}"


class S3Store:
    def __init__(self, bucket: str, prefix: str):
        import boto3  # only where snapshots go to a bucket

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.client("s3")

    @classmethod
    def from_url(cls, url: str) -> S3Store:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise SnapshotStoreError(f"REPLAYDESK_SNAPSHOT_URL must be s3://bucket[/prefix], not {url!r}")
        return cls(parts.netloc, parts.path)

    def key(self, projection: str, name: str, file: str = "") -> str:
        return "/".join(part for part in (self.prefix, projection, name, file) if part) + (
            "" if file else "/"
        )

    def call(self, operation: str, **params):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SnapshotStoreError(
                f"the snapshot bucket {self.bucket} refused {operation}: {error.get('Code')} "
                f"{error.get('Message') or ''}".strip()
            ) from exc
        except BotoCoreError as exc:
            raise SnapshotStoreError(f"the snapshot bucket {self.bucket} cannot be reached: {exc}") from exc

    def writer(self, projection: str, name: str) -> S3Writer:
        return S3Writer(self, projection, name)

    def names(self, projection: str) -> list[str]:
        """The snapshots of a projection that have their manifest (those whose upload completed)."""
        prefix = self.key(projection, "")
        found = []
        for page in self._pages(prefix):
            for item in page.get("Contents", []):
                rest = item["Key"][len(prefix) :]
                name, _, file = rest.partition("/")
                if file == MANIFEST:
                    found.append(name)
        return sorted(found)

    def _pages(self, prefix: str) -> Iterator[dict]:
        token = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self.call("list_objects_v2", Prefix=prefix, **extra)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def get(self, projection: str, name: str) -> S3Snapshot:
        return S3Snapshot(self, projection, name)

    def delete(self, projection: str, name: str) -> None:
        """The manifest first: a snapshot half deleted is never listed."""
        prefix = self.key(projection, name)
        self.call("delete_object", Key=prefix + MANIFEST)
        for page in self._pages(prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.call("delete_objects", Delete={"Objects": keys, "Quiet": True})

    def prune_unfinished(self, older_than: float) -> None:
        """Multipart uploads a killed snapshot left unfinished, and files never given a manifest, once
        the snapshot was begun `older_than` seconds ago (by the time in its name, which every store
        keeps as written; some S3-compatible servers report odd upload times)."""
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than)
        base = f"{self.prefix}/" if self.prefix else ""
        for upload in self.call("list_multipart_uploads", Prefix=base).get("Uploads", []):
            if _begun(upload["Key"][len(base) :], upload["Initiated"]) <= cutoff:
                self.call("abort_multipart_upload", Key=upload["Key"], UploadId=upload["UploadId"])
        begun: dict[tuple[str, str], dt.datetime] = {}
        complete: set[tuple[str, str]] = set()
        for page in self._pages(base):
            for item in page.get("Contents", []):
                parts = item["Key"][len(base) :].split("/")
                if len(parts) != 3:
                    continue
                snapshot = (parts[0], parts[1])
                begun[snapshot] = _begun(item["Key"][len(base) :], item["LastModified"])
                if parts[2] == MANIFEST:
                    complete.add(snapshot)
        for (projection, name), when in begun.items():
            if (projection, name) not in complete and when <= cutoff:
                self.delete(projection, name)


def _begun(key: str, otherwise: dt.datetime) -> dt.datetime:
    """When the snapshot of `<projection>/<name>/<file>` was begun: the time its name starts with."""
    parts = key.split("/")
    try:
        stamp = parts[1].rsplit("-p", 1)[0]
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)
    except (IndexError, ValueError):
        return otherwise


class S3Writer:
    """Files go to the snapshot's own keys as they are copied; the manifest is put last, and until it is
    the snapshot is not listed (a killed writer leaves files that prune_unfinished removes)."""

    def __init__(self, store: S3Store, projection: str, name: str):
        self.store, self.projection, self.name = store, projection, name
        self._upload: _MultipartUpload | None = None

    def file(self, name: str) -> _MultipartUpload:
        self.close_file()
        self._upload = _MultipartUpload(self.store, self.store.key(self.projection, self.name, name))
        return self._upload

    def close_file(self) -> None:
        if self._upload is not None:
            self._upload.complete()
            self._upload = None

    def commit(self, manifest: str) -> S3Snapshot:
        self.close_file()
        key = self.store.key(self.projection, self.name, MANIFEST)
        self.store.call("put_object", Key=key, Body=manifest.encode())
        return S3Snapshot(self.store, self.projection, self.name)

    def abort(self) -> None:
        if self._upload is not None:
            self._upload.abort()
            self._upload = None
        self.store.delete(self.projection, self.name)


class _MultipartUpload:
    """An object written in parts as its bytes come (a part once PART_BYTES are buffered)."""

    def __init__(self, store: S3Store, key: str):
        self.store, self.key = store, key
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.upload_id = store.call("create_multipart_upload", Key=key)["UploadId"]

    def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) >= PART_BYTES:
            self._send()

    def _send(self) -> None:
        number = len(self.parts) + 1
        answer = self.store.call(
            "upload_part", Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=bytes(self.buffer)
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.buffer.clear()

    def complete(self) -> None:
        if self.buffer or not self.parts:
            self._send()
        self.store.call(
            "complete_multipart_upload",
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        self.store.call("abort_multipart_upload", Key=self.key, UploadId=self.upload_id)
