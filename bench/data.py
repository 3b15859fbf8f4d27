"""Datasets, written fast: the demo history straight into the store's tables with COPY, the log grown
with server-side INSERT … SELECT, and the same events copied into the eventsourcing peer's table.

The demo history (demo/services.py) gives the demo projections real work: users created, renamed,
granted and revoked permissions, groups joined and left, by a few admins, with skewed activity.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import psycopg

from bench import peers

LONG_STREAM = "bench-long"
LONG_STREAM_EVENTS = 1000
FILLER_STREAMS = 1000
FILLER_CHUNK = 500_000


def _retag(value: str, tag: str) -> str:
    return f"{tag}{value}" if tag else value


def demo_rows(*, users: int, events: int, tag: str = "") -> Iterator[tuple[str, dict]]:
    """(stream, event) of the demo history in append order; a tag makes every id in it new, so that a
    second history can follow the first in the same store (the tail a restore replays)."""
    from demo.services import NAMESPACE, demo_history

    for append in demo_history(users=users, events=events):
        category, _, rest = append.stream.partition("-")
        stream = f"{category}-{_retag(rest, tag)}"
        for event in append.events:
            if tag:
                data = {
                    key: _retag(value, tag) if key in ("user_id", "group_id") else value
                    for key, value in event["data"].items()
                }
                event = {**event, "data": data, "id": str(uuid.uuid5(NAMESPACE, tag + event["id"]))}
            yield stream, event


def load_demo(url: str, *, users: int, events: int, tag: str = "") -> dict:
    """Write the demo history (and, untagged, the long stream the read benchmark uses) with COPY."""
    started = time.monotonic()
    rows = list(demo_rows(users=users, events=events, tag=tag))
    if not tag:
        rows += [
            (
                LONG_STREAM,
                {
                    "id": str(uuid.uuid4()),
                    "type": "ItemNoted",
                    "data": {"n": n},
                    "metadata": {"actor": "bench.loader", "occurred_at": "2026-02-20T12:00:00Z"},
                },
            )
            for n in range(1, LONG_STREAM_EVENTS + 1)
        ]
    versions: dict[str, int] = {}
    sequences = []
    for stream, _ in rows:
        versions[stream] = versions.get(stream, 0) + 1
        sequences.append(versions[stream])
    generated = time.monotonic() - started
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        streams_sql = "COPY streams_stream (name, category, version, created_at, updated_at) FROM STDIN"
        with cur.copy(streams_sql) as copy:
            for name, version in versions.items():
                copy.write_row((name, name.partition("-")[0], version, "2026-01-05T08:00:00Z", "now"))
        cur.execute("SELECT name, id FROM streams_stream WHERE name = ANY(%s)", [list(versions)])
        ids = dict(cur.fetchall())
        copy_sql = (
            "COPY streams_event (stream_id, category, sequence, id, type, data, metadata, actor,"
            " recorded_at) FROM STDIN"
        )
        with cur.copy(copy_sql) as copy:
            for (stream, event), sequence in zip(rows, sequences, strict=True):
                metadata = event["metadata"]
                copy.write_row(
                    (
                        ids[stream],
                        stream.partition("-")[0],
                        sequence,
                        event["id"],
                        event["type"],
                        json.dumps(event["data"]),
                        json.dumps(metadata),
                        metadata.get("actor", ""),
                        metadata["occurred_at"],
                    )
                )
        conn.commit()
    settle(url)
    return {
        "events": len(rows),
        "streams": len(versions),
        "generate_seconds": round(generated, 2),
        "seconds": round(time.monotonic() - started, 2),
    }


def grow_log(url: str, *, to: int, streams: int = FILLER_STREAMS) -> dict:
    """Append filler events (category `load`, followed by no projection) until the log holds `to`, spread
    evenly over `streams` filler streams."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        have = conn.execute("SELECT count(*) FROM streams_event").fetchone()[0]
        missing = max(0, to - have)
        if not missing:
            return {"added": 0, "seconds": 0.0}
        conn.execute(
            "INSERT INTO streams_stream (name, category, version) "
            "SELECT 'load-' || g, 'load', 0 FROM generate_series(1, %s) g ON CONFLICT (name) DO NOTHING",
            [streams],
        )
        first = conn.execute("SELECT min(id) FROM streams_stream WHERE category = 'load'").fetchone()[0]
        done = conn.execute(
            "SELECT COALESCE(sum(version), 0)::bigint FROM streams_stream WHERE category = 'load'"
        ).fetchone()[0]
        for start in range(done, done + missing, FILLER_CHUNK):
            stop = min(start + FILLER_CHUNK, done + missing)
            conn.execute(
                """
                INSERT INTO streams_event (stream_id, category, sequence, id, type, data, metadata, actor,
                                           recorded_at)
                SELECT %(first)s + g %% %(streams)s, 'load', g / %(streams)s + 1, gen_random_uuid(),
                       'ReadingTaken',
                       jsonb_build_object('meter', 'm' || (g %% %(streams)s), 'value', g %% 1000),
                       '{"actor": "bench.loader"}'::jsonb, 'bench.loader',
                       timestamptz '2026-03-01' + g * interval '10 ms'
                  FROM generate_series(%(start)s, %(stop)s - 1) g
                """,
                {"first": first, "streams": streams, "start": start, "stop": stop},
            )
        conn.execute(
            "UPDATE streams_stream s SET version = v.version FROM "
            "(SELECT stream_id, max(sequence) AS version FROM streams_event e JOIN streams_stream s "
            "ON s.id = e.stream_id WHERE s.category = 'load' GROUP BY stream_id) v WHERE s.id = v.stream_id"
        )
    settle(url)
    return {"added": missing, "seconds": round(time.monotonic() - started, 2)}


def copy_to_peer(url: str) -> dict:
    """The store's events, as they are, into the eventsourcing recorder's table (same ids, same order),
    with topics naming the classes the library's mapper decodes them into (bench/es_model.py)."""
    from bench import es_model

    started = time.monotonic()
    table = f"{peers.ES_SCHEMA}.{peers.ES_EVENTS}"
    with psycopg.connect(url, autocommit=True) as conn:
        after = conn.execute(f"SELECT COALESCE(max(notification_id), 0) FROM {table}").fetchone()[0]
        cur = conn.execute(
            f"""
            INSERT INTO {table} (originator_id, originator_version, topic, state, notification_id)
            SELECT md5(s.name)::uuid, e.sequence, %s || e.type,
                   convert_to(jsonb_build_object('data', e.data, 'metadata', e.metadata)::text, 'UTF8'),
                   e.position
              FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
             WHERE e.position > %s ORDER BY e.position
            """,
            [es_model.topic(""), after],
        )
        copied = cur.rowcount
        conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'notification_id'), "
            f"(SELECT max(notification_id) FROM {table}))"
        )
        conn.execute(f"VACUUM (ANALYZE) {table}")
    return {"copied": copied, "seconds": round(time.monotonic() - started, 2)}


def settle(url: str) -> None:
    """What autovacuum does within a minute or two of a bulk load on a live store: statistics, and the
    visibility map that lets index-only scans skip the table (the audit look-ups use them). Measuring
    right after a COPY of a million rows, before that, would measure a state a live store leaves soon."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) streams_event")
        conn.execute("VACUUM (ANALYZE) streams_stream")


def clear_store(url: str) -> None:
    """Empty the log of all three systems (after the append benchmark, before the datasets)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE streams_event, streams_stream, streams_parkedevent RESTART IDENTITY CASCADE")
        conn.execute(f"TRUNCATE {peers.ES_SCHEMA}.{peers.ES_EVENTS} RESTART IDENTITY")
        conn.execute(f"TRUNCATE {peers.RAW_SCHEMA}.streams_event RESTART IDENTITY")


def stream_name_uuid(name: str) -> uuid.UUID:
    """The eventsourcing originator id of a store stream (what copy_to_peer computes in SQL)."""
    import hashlib

    return uuid.UUID(hashlib.md5(name.encode()).hexdigest())
