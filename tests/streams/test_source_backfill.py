"""A backfill copies a source's history in batches bigger than the live follower's: an event the log
refuses still parks with the reason an append of it gets, among thousands copied in the same batch, and
a backfill killed with kill -9 mid-batch, again and again, copies every event exactly once."""

from __future__ import annotations

import os
import random
import sys
import uuid

import pytest
from django.conf import settings
from psycopg.types.json import Jsonb

from recovery.models import Job
from recovery.runner import run_inline
from streams.models import Event, Source, SourceParkedEvent
from streams.validation import InvalidAppend, parse_append
from tests.streams.source_helpers import TABLE_OPTIONS, add_table_source, copy_all, kill_while_copying
from tests.streams.test_projection_crashes import this_database_url
from tests.streams.test_source_horizon import copied_positions

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"in": value}
    return value


def refusal(stream: str, type_: str, data: dict, metadata: dict) -> str:
    """What an append of the event is told, or "" when the log takes it."""
    try:
        parse_append(
            stream=stream,
            events=[{"id": str(uuid.uuid4()), "type": type_, "data": data, "metadata": metadata}],
            expected_version="any",
        )
    except InvalidAppend as exc:
        return " ".join(message for messages in exc.errors.values() for message in messages)
    return ""


# (stream, type, data, metadata): what the log refuses, and what it takes that looks close to it.
SPECIAL = [
    ("refused-1", "not a type!", {"a": 1}, {}),
    ("refused-2+3", "Opened", {"a": 1}, {}),
    ("console-forged", "Opened", {"a": 1}, {}),
    ("refused-4", "Opened", {"a": 1}, {"actor": 5}),
    ("refused-5", "Opened", {"a": 1}, {"correlation_id": "not-a-uuid"}),
    ("refused-6", "Opened", {"a": 1}, {"occurred_at": "yesterday"}),
    ("refused-7", "Opened", nested(65), {}),
    ("refused-8", "Opened", {"text": "x" * (1024 * 1024)}, {}),
    ("taken-1", "Opened", nested(64), {"note": "{[" * 100}),
    ("taken-2", "Opened", {"text": "a backslash and u0000: \\u0000", "café": "crème"}, {"actor": "élodie"}),
    ("taken-3", "Opened", {"a": 1}, {"replaydesk_source": {"name": "forged", "position": -1}}),
]


def test_events_the_log_refuses_park_in_a_big_batch_with_the_reason_an_append_gets(source_db):
    source_db.execute(
        "INSERT INTO events (stream_name, version, event_type, body)"
        " SELECT 'order-' || (i % 100), i / 100 + 1, 'Placed', jsonb_build_object('i', i)"
        " FROM generate_series(0, 2999) AS i"
    )
    positions = {}
    for stream, type_, data, metadata in SPECIAL:
        positions[stream] = source_db.append(stream, 1, type_, data, meta=Jsonb(metadata))
        source_db.append(stream, 2, "Later", {"b": 2})
    source_db.execute(
        "INSERT INTO events (stream_name, version, event_type, body)"
        " SELECT 'order-' || (i % 100), i / 100 + 1, 'Placed', jsonb_build_object('i', i)"
        " FROM generate_series(3000, 5999) AS i"
    )
    add_table_source(source_db)
    assert settings.REPLAYDESK_SOURCE_BACKFILL_BATCH >= 5000

    job = run_inline(Job.objects.get(kind="backfill").pk)

    assert job.state == "succeeded", job.error
    refused = {stream: refusal(stream, t, d, m) for stream, t, d, m in SPECIAL}
    assert all(refused[s] for s in refused if s.startswith("refused")), refused
    assert not any(refused[s] for s in refused if s.startswith("taken")), refused
    parked = {p.stream: p for p in SourceParkedEvent.objects.filter(sequence=1)}
    assert set(parked) == {stream for stream in refused if refused[stream]}
    for stream, reason in refused.items():
        if reason:
            assert reason in parked[stream].reason, (stream, parked[stream].reason)
            assert parked[stream].position == positions[stream]
    # A stream's later events park too: with their own reason when the log refuses them as well (the
    # stream's name), else as behind a parked event.
    for later in SourceParkedEvent.objects.filter(sequence=2):
        own = refusal(later.stream, "Later", {"b": 2}, {})
        assert (own or "an earlier event of stream") in later.reason, (later.stream, later.reason)
    assert Event.objects.filter(stream__category="order").count() == 6000
    for stream, _, data, metadata in SPECIAL:
        if stream.startswith("taken"):
            first = Event.objects.get(stream__name=stream, sequence=1)
            assert first.data == data
            assert first.metadata == {
                **metadata,
                "replaydesk_source": {"name": "orders_store", "position": positions[stream]},
            }
            assert first.actor == metadata.get("actor", "")
    source = Source.objects.get()
    assert (source.events_copied, source.events_parked) == (6000 + 3 * 2, 8 * 2)


def test_a_backfill_killed_mid_batch_again_and_again_copies_every_event_exactly_once(source_db, monkeypatch):
    total = 40_000
    source_db.execute(
        "INSERT INTO events (stream_name, version, event_type, body)"
        " SELECT 'order-' || mod(i, 2000), i / 2000 + 1, 'Placed', jsonb_build_object('i', i)"
        " FROM generate_series(0, %s) AS i",
        [total - 1],
    )
    monkeypatch.setenv("RD_TEST_SOURCE_DSN", source_db.reader_url)
    from streams import source_services

    source_services.add_source(
        name="orders_store", kind="table", dsn_env="RD_TEST_SOURCE_DSN", options=TABLE_OPTIONS, actor="tests"
    )
    job = Job.objects.get(kind="backfill")
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": this_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REPLAYDESK_SOURCE_BACKFILL_BATCH": "4000",
    }
    rng = random.Random(11)
    kill_while_copying(
        [sys.executable, "manage.py", "jobs", "--follow", str(job.pk), "--inline"],
        env,
        rounds=3,
        rng=rng,
        most_seconds=0.3,
    )
    assert Source.objects.get().events_copied < total, "the backfill should have been killed mid-way"

    finished = run_inline(job.pk)

    assert finished.state == "succeeded", finished.error
    positions = copied_positions()
    assert positions == sorted(set(positions)) and len(positions) == total
    source = Source.objects.get()
    assert (source.events_copied, source.events_parked, source.position) == (total, 0, positions[-1])
    assert copy_all().copied == 0
