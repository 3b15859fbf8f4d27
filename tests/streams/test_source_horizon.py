"""A source's order, where its transactions commit out of position order: the follower never passes over
an event that commits later with a lower position (streams/source_horizon.py), and a follower killed
with kill -9 mid-batch copies nothing twice and skips nothing."""

from __future__ import annotations

import os
import random
import sys
import time
from collections import defaultdict

import psycopg
import pytest
from django.conf import settings
from psycopg.types.json import Jsonb

from streams import source_horizon, source_services
from streams.models import Event, Source, SourceParkedEvent
from streams.source_kinds import Read, Snapshot, SourceEvent
from tests.streams.source_helpers import (
    TABLE_OPTIONS,
    add_table_source,
    copy_all,
    kill_while_copying,
    write_while_following,
)
from tests.streams.test_projection_crashes import this_database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

WRITERS = 6
TRANSACTIONS = 40


def copied_positions() -> list[int]:
    """The source positions of what the log holds from the source, in the log's order."""
    events = Event.objects.filter(appended_via="source").order_by("position")
    return [
        metadata["replaydesk_source"]["position"] for metadata in events.values_list("metadata", flat=True)
    ]


def test_a_follower_never_passes_over_an_event_that_commits_later_with_a_lower_position(source_db):
    add_table_source(source_db)
    committed: list[int] = []

    def writer(n: int) -> None:
        rng, version = random.Random(n), 0
        with psycopg.connect(source_db.admin_url) as conn:
            for _ in range(TRANSACTIONS):
                # The position is drawn here; the commit comes after a delay, so writers commit out of
                # position order, and a fifth of them roll back and leave a hole.
                [(seq,)] = conn.execute(
                    "INSERT INTO events (stream_name, version, event_type, body) VALUES (%s, %s, 'Wrote', %s)"
                    " RETURNING seq",
                    [f"writer-{n}", version + 1, Jsonb({"n": n})],
                ).fetchall()
                time.sleep(rng.random() * 0.02)
                if rng.random() < 0.2:
                    conn.rollback()
                else:
                    conn.commit()
                    committed.append(seq)
                    version += 1

    write_while_following(writer, WRITERS)

    assert copied_positions() == sorted(committed)
    assert not SourceParkedEvent.objects.exists()
    by_stream = defaultdict(list)
    for stream, sequence in (
        Event.objects.filter(appended_via="source")
        .order_by("position")
        .values_list("stream__name", "sequence")
    ):
        by_stream[stream].append(sequence)
    assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in by_stream.values())


def test_a_hole_waits_for_the_transactions_that_may_still_fill_it_then_is_passed(source_db):
    """The settle round on its own, read by read: a hole stops the copy until the horizon passes it."""
    now = source_horizon.Settle()
    events = [SourceEvent(position=p, stream="s", sequence=p, id=None, type="T", data={}) for p in (1, 2, 4)]
    read = Read(events=events, top=4, snapshot=Snapshot(xmin=100, xmax=105))

    taken, blocked = source_horizon.copyable(events, after=0, final_through=0)
    assert [e.position for e in taken] == [1, 2] and blocked
    import datetime as dt

    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    now = source_horizon.advance(now, read=read, blocked=True, now=start)
    assert (now.through, now.xmax, now.final_through) == (4, None, 0)
    # Before the grace has passed, no horizon is taken: a transaction may still be getting its id.
    assert source_horizon.advance(now, read=read, blocked=True, now=start).xmax is None
    later = start + dt.timedelta(seconds=source_horizon.GRACE_SECONDS)
    now = source_horizon.advance(now, read=read, blocked=True, now=later)
    assert now.xmax == 105
    # A transaction that started before then is still running: the hole may yet be filled.
    still = Read(events=events, top=4, snapshot=Snapshot(xmin=104, xmax=110))
    assert source_horizon.advance(now, read=still, blocked=True, now=later).final_through == 0
    done = Read(events=events, top=4, snapshot=Snapshot(xmin=105, xmax=110))
    now = source_horizon.advance(now, read=done, blocked=True, now=later)
    assert now == source_horizon.Settle(final_through=4)
    taken, blocked = source_horizon.copyable(events[2:], after=2, final_through=now.final_through)
    assert [e.position for e in taken] == [4] and not blocked


def test_a_follower_killed_mid_batch_five_times_copies_every_event_exactly_once(source_db, monkeypatch):
    source_db.execute(
        "INSERT INTO events (stream_name, version, event_type, body)"
        " SELECT 'order-' || (i % 50), i / 50 + 1, 'Placed', jsonb_build_object('i', i)"
        " FROM generate_series(0, 19999) AS i"
    )
    monkeypatch.setenv("RD_TEST_SOURCE_DSN", source_db.reader_url)
    source_services.add_source(
        name="orders_store", kind="table", dsn_env="RD_TEST_SOURCE_DSN", options=TABLE_OPTIONS, actor="tests"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DATABASE_URL": this_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REPLAYDESK_SOURCE_BATCH": "250",
    }
    rng = random.Random(7)
    kill_while_copying(
        [sys.executable, "manage.py", "source", "follow", "orders_store"],
        env,
        rounds=5,
        rng=rng,
        most_seconds=0.2,
    )
    assert Source.objects.get().events_copied < 20_000, "the follower should have been killed mid-way"

    copy_all(timeout=120)

    positions = copied_positions()
    assert positions == sorted(set(positions)) and len(positions) == 20_000
    source = Source.objects.get()
    assert (source.events_copied, source.events_parked, source.position) == (20_000, 0, positions[-1])
