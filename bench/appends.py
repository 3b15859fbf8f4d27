"""Append throughput: writer processes (spawned once, reused) append to skewed streams for a fixed time.

Every system gets the same work: writer w of W owns the streams n ≡ w (mod W) of `streams`, picks one
with a skewed choice (a few hot streams take most appends), and appends 1 event (or a batch) with the
stream's expected version, which it tracks itself after reading it once before the clock starts:

- replaydesk: streams.services.append_events (in-process, Django), expected_version = N;
- eventsourcing: PostgresApplicationRecorder.insert_events with originator_version N+1…;
- raw: INSERT + COMMIT (1 event) or COPY + COMMIT (a batch) into raw.streams_event;
- http: POST /api/v1/streams/{stream}/events through gunicorn, with a bearer token.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import random
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench import peers

RESOURCES = ("issueABC", "issueXYZ", "issue42", "repo-payments", "repo-web", "billing", "wiki-eng")
ACTORS = ("alice.admin", "bruno.admin", "chen.admin", "dana.admin")
CATEGORY = "acct"


def stream_name(n: int) -> str:
    return f"{CATEGORY}-{n}"


def payload(n: int, i: int) -> tuple[dict, dict]:
    data = {"user_id": str(n), "resource": RESOURCES[i % len(RESOURCES)], "permission": "read"}
    metadata = {"actor": ACTORS[i % len(ACTORS)], "correlation_id": str(uuid.uuid4())}
    return data, metadata


@dataclass(frozen=True)
class Task:
    system: str
    writer: int
    writers: int
    batch: int
    streams: int
    conninfo: dict
    url: str
    http: dict | None = None


class _Writer:
    def __init__(self, task: Task):
        self.task = task
        self.rng = random.Random(1000 * task.writers + task.writer)
        self.versions: dict[int, int] = {}
        self.appended = 0

    def pick(self) -> int:
        own = max(1, self.task.streams // self.task.writers)
        return int(own * self.rng.random() ** 3) * self.task.writers + self.task.writer

    def mine(self, n: int) -> bool:
        return n % self.task.writers == self.task.writer

    def step(self) -> int:
        n = self.pick()
        version = self.versions.get(n, 0)
        self.append(n, version, self.task.batch)
        self.versions[n] = version + self.task.batch
        return self.task.batch

    def close(self) -> None:
        pass


class ReplaydeskWriter(_Writer):
    def prepare(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT name, version FROM streams_stream WHERE category = %s", [CATEGORY])
            for name, version in cursor.fetchall():
                n = int(name.partition("-")[2])
                if self.mine(n):
                    self.versions[n] = version

    def append(self, n: int, version: int, count: int) -> None:
        from streams.services import append_events

        events = []
        for i in range(count):
            data, metadata = payload(n, version + i)
            events.append({"type": "PermissionGranted", "data": data, "metadata": metadata})
        append_events(stream=stream_name(n), events=events, expected_version=version)

    def close(self) -> None:
        from django.db import connection

        connection.close()


class EventsourcingWriter(_Writer):
    def prepare(self) -> None:
        from bench.data import stream_name_uuid

        self.datastore = peers.es_datastore(self.task.conninfo)
        self.recorder = peers.es_recorder(self.datastore)
        self.ids = {}
        by_uuid = {}
        for n in range(self.task.writer, self.task.streams, self.task.writers):
            self.ids[n] = stream_name_uuid(stream_name(n))
            by_uuid[self.ids[n]] = n
        with self.datastore.get_connection() as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT originator_id, max(originator_version) AS v "
                f"FROM {peers.ES_SCHEMA}.{peers.ES_EVENTS} "
                "WHERE originator_id = ANY(%s) GROUP BY originator_id",
                [list(by_uuid)],
            )
            for row in cur.fetchall():
                self.versions[by_uuid[row["originator_id"]]] = row["v"]

    def append(self, n: int, version: int, count: int) -> None:
        from eventsourcing.persistence import StoredEvent

        events = []
        for i in range(count):
            data, metadata = payload(n, version + i)
            state = json.dumps({"data": data, "metadata": metadata}).encode()
            events.append(StoredEvent(self.ids[n], version + i + 1, "PermissionGranted", state))
        self.recorder.insert_events(events)

    def close(self) -> None:
        self.datastore.close()


class RawWriter(_Writer):
    def prepare(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.task.url)
        rows = self.conn.execute(
            f"SELECT stream_id, max(sequence) FROM {peers.RAW_SCHEMA}.streams_event "
            "WHERE stream_id %% %s = %s GROUP BY stream_id",
            [self.task.writers, self.task.writer],
        ).fetchall()
        self.conn.commit()
        self.versions.update(dict(rows))

    def append(self, n: int, version: int, count: int) -> None:
        table = f"{peers.RAW_SCHEMA}.streams_event"
        columns = "(stream_id, category, sequence, id, type, data, metadata, actor, recorded_at)"
        rows = []
        for i in range(count):
            data, metadata = payload(n, version + i)
            rows.append(
                (
                    n,
                    CATEGORY,
                    version + i + 1,
                    uuid.uuid4(),
                    "PermissionGranted",
                    json.dumps(data),
                    json.dumps(metadata),
                    metadata["actor"],
                )
            )
        with self.conn.cursor() as cur:
            if count == 1:
                cur.execute(
                    f"INSERT INTO {table} {columns}"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())",
                    rows[0],
                )
            else:
                with cur.copy(f"COPY {table} {columns} FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row((*row, "now"))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class HttpWriter(ReplaydeskWriter):
    """An API client as light as the standard library's: one kept-alive HTTP/1.1 connection. The clients
    share the machine's CPUs with the server, and httpx took 1.2-1.3 ms of CPU a request, as much as the
    server's whole request (bench/README.md, *Appends over HTTP*)."""

    def prepare(self) -> None:
        super().prepare()
        url = urlsplit(self.task.http["base_url"])
        self.client = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.headers = {
            "Authorization": f"Bearer {self.task.http['token']}",
            "Content-Type": "application/json",
        }
        self.close_db()

    def close_db(self) -> None:
        from django.db import connection

        connection.close()

    def append(self, n: int, version: int, count: int) -> None:
        events = []
        for i in range(count):
            data, metadata = payload(n, version + i)
            events.append({"type": "PermissionGranted", "data": data, "metadata": metadata})
        body = json.dumps({"expected_version": version or "no_stream", "events": events}).encode()
        self.client.request("POST", f"/api/v1/streams/{stream_name(n)}/events", body, self.headers)
        response = self.client.getresponse()
        answer = response.read()
        if response.status != 201:
            raise RuntimeError(f"append over HTTP answered {response.status}: {answer[:300]!r}")

    def close(self) -> None:
        self.client.close()


WRITERS = {
    "replaydesk": ReplaydeskWriter,
    "eventsourcing": EventsourcingWriter,
    "raw": RawWriter,
    "http": HttpWriter,
}


def _worker(env: dict, commands, results) -> None:
    os.environ.update(env)
    import django

    django.setup()
    import streams.services  # noqa: F401 — the append path as it was when the run started
    from core import principals

    # In-process appends say who appends, as every append does (core/principals.py).
    principals.run_as(principals.system("bench"))

    while True:
        task = _next(commands)
        if task is None:
            return
        writer = WRITERS[task.system](task)
        try:
            writer.prepare()
            results.put(("ready", task.writer))
            start_at, end_at = _next(commands)
            time.sleep(max(0.0, start_at - time.time()))
            while time.time() < end_at:
                writer.appended += writer.step()
            results.put(("done", task.writer, writer.appended, time.time()))
        except Exception as exc:  # noqa: BLE001 — reported to the parent, which stops the run
            results.put(("error", task.writer, f"{type(exc).__name__}: {exc}"))
        finally:
            writer.close()


def _next(commands):
    """The next message; None when the parent has gone (a killed run leaves no writers behind)."""
    import queue

    while True:
        try:
            return commands.get(timeout=2)
        except queue.Empty:
            parent = multiprocessing.parent_process()
            if parent is None or not parent.is_alive():
                return None


class WriterPool:
    """Writer processes, spawned once (Django set up in each) and given one task per measurement."""

    def __init__(self, *, size: int, env: dict):
        context = multiprocessing.get_context("spawn")
        self.results = context.Queue()
        self.commands = [context.Queue() for _ in range(size)]
        self.processes = [
            context.Process(target=_worker, args=(env, queue, self.results), daemon=True)
            for queue in self.commands
        ]
        for process in self.processes:
            process.start()

    def run(
        self,
        *,
        system: str,
        writers: int,
        batch: int,
        seconds: float,
        streams: int,
        conninfo: dict,
        url: str,
        http: dict | None = None,
    ) -> float:
        """Events per second, all writers together."""
        for w in range(writers):
            self.commands[w].put(Task(system, w, writers, batch, streams, conninfo, url, http))
        for _ in range(writers):
            self._expect("ready")
        start_at = time.time() + 0.2
        for w in range(writers):
            self.commands[w].put((start_at, start_at + seconds))
        total, finished = 0, start_at
        for _ in range(writers):
            _, _, appended, ended = self._expect("done")
            total += appended
            finished = max(finished, ended)
        return total / (finished - start_at)

    def _expect(self, kind: str) -> tuple:
        message = self.results.get(timeout=300)
        if message[0] == "error":
            raise RuntimeError(f"writer {message[1]} failed: {message[2]}")
        assert message[0] == kind, message
        return message

    def close(self) -> None:
        for queue in self.commands:
            queue.put(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
