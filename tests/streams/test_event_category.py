"""Each event carries its stream's category (streams/migrations/0017): written with it by every path that
writes events, and filled in on a store that held events before, while the code before it still
appends."""

import importlib
import threading
import uuid

import psycopg
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

from streams.models import Event
from streams.services import ImportBatch, append_events, import_events
from tests.streams.source_helpers import server_url

BEFORE = ("streams", "0016_stream_fillfactor")
AFTER = ("streams", "0017_event_category")


def _categories() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, category in Event.objects.values_list("stream__name", "category"):
        found.setdefault(name, set()).add(category)
    return found


@pytest.mark.django_db
def test_appends_and_imports_write_the_category_of_the_stream():
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {"user_id": "1"}}])
    append_events(
        stream="order-7-line-2",
        events=[{"type": "LineAdded", "data": {"n": n}} for n in range(3)],
        expected_version="no_stream",
    )
    append_events(stream="plain", events=[{"type": "Noted", "data": {}}])
    import_events(
        batches=[
            ImportBatch(stream="invoice-9", events=[{"type": "InvoiceRaised", "data": {"total": 5}}]),
            ImportBatch(stream="user-1", events=[{"type": "UserNameSet", "data": {"name": "Ann"}}]),
        ]
    )

    assert _categories() == {
        "user-1": {"user"},
        "order-7-line-2": {"order"},
        "plain": {"plain"},
        "invoice-9": {"invoice"},
    }


def _old_append(conn: psycopg.Connection, stream_id: int, sequence: int) -> int:
    """An append as the code before the migration writes it: a slot, then an event without a category."""
    conn.execute("SELECT replaydesk_append_slot()")
    return conn.execute(
        "INSERT INTO streams_event (stream_id, sequence, id, type, data, metadata, actor)"
        " VALUES (%s, %s, %s, 'Old', '{}', '{}', '') RETURNING position",
        [stream_id, sequence, uuid.uuid4()],
    ).fetchone()[0]


@pytest.fixture
def before_the_migration():
    """The schema as it was before 0017; migrated forward again whatever the test did."""
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    yield
    executor = MigrationExecutor(connection)
    if AFTER not in executor.loader.applied_migrations:
        with connection.cursor() as cursor:  # left half done by a failed test
            cursor.execute(
                "ALTER TABLE streams_event DROP CONSTRAINT IF EXISTS streams_event_category_filled"
            )
            cursor.execute("ALTER TABLE streams_event DROP COLUMN IF EXISTS category")
        executor.migrate([AFTER])


def _old_store(url: str) -> dict[str, int]:
    """Three streams of 20 events each, written as the code before the migration wrote them."""
    with psycopg.connect(url, autocommit=True) as conn:
        streams = {}
        for name in ("user-1", "group-2", "plain"):
            streams[name] = conn.execute(
                "INSERT INTO streams_stream (name, category, version, created_at, updated_at)"
                " VALUES (%s, %s, 0, now(), now()) RETURNING id",
                [name, name.partition("-")[0]],
            ).fetchone()[0]
        for sequence in range(1, 21):
            for stream_id in streams.values():
                _old_append(conn, stream_id, sequence)
                conn.execute("UPDATE streams_stream SET version = %s WHERE id = %s", [sequence, stream_id])
    return streams


def _assert_filled_and_required(url: str, streams: dict[str, int], events: int) -> None:
    assert Event.objects.count() == events
    assert _categories() == {"user-1": {"user"}, "group-2": {"group"}, "plain": {"plain"}}
    with psycopg.connect(url, autocommit=True) as conn:
        checks = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'streams_event_category_filled'"
        ).fetchone()[0]
        assert checks == 0
        # From here an append without a category is refused, not stored as an event no lag counts.
        with pytest.raises(psycopg.errors.NotNullViolation):
            _old_append(conn, streams["plain"], 21)


@pytest.mark.django_db(transaction=True)
def test_the_migration_fills_the_events_written_before_it(before_the_migration, monkeypatch):
    migration = importlib.import_module("streams.migrations.0017_event_category")
    monkeypatch.setattr(migration, "BATCH", 7)  # ranges of 7 positions: many commits, the last one partial
    url = server_url(connection.settings_dict["NAME"])
    streams = _old_store(url)

    MigrationExecutor(connection).migrate([AFTER])

    _assert_filled_and_required(url, streams, 60)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_the_fill_waits_for_an_old_writer_s_append_under_way(before_the_migration, monkeypatch):
    """The column is there and an old writer's append has drawn its position, above the settled head,
    when the fill starts: the fill must wait for it, then fill it, rather than leave it without a
    category (and fail to make the column NOT NULL)."""
    migration = importlib.import_module("streams.migrations.0017_event_category")
    monkeypatch.setattr(migration, "BATCH", 7)
    url = server_url(connection.settings_dict["NAME"])
    streams = _old_store(url)
    with connection.cursor() as cursor:
        cursor.execute(migration.ADD)
    held = psycopg.connect(url)
    try:
        held_position = _old_append(held, streams["user-1"], 21)
        done, failed = threading.Event(), []

        def fill():
            try:
                with connection.schema_editor(atomic=False) as editor:
                    migration.fill(None, editor)
            except Exception as exc:  # noqa: BLE001 - reported by the test below
                failed.append(exc)
            finally:
                connection.close()
                done.set()

        threading.Thread(target=fill, daemon=True).start()
        with psycopg.connect(url, autocommit=True) as watch:
            for _ in range(1200):  # until the fill waits for the append's lock on the table
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE c.relname = 'streams_event' AND l.mode = 'ShareRowExclusiveLock'"
                    " AND NOT l.granted"
                ).fetchone()[0]
                if waiting or done.wait(0.05):
                    break
        assert not done.is_set(), failed
        filled = dict(Event.objects.filter(position__lt=held_position).values_list("position", "category"))
        assert len(filled) == 60 and None not in filled.values()  # the ranges below were filled meanwhile
        held.commit()
    finally:
        held.close()
    assert done.wait(60)
    assert not failed, failed
    MigrationRecorder(connection).record_applied(*AFTER)

    assert Event.objects.get(position=held_position).category == "user"
    _assert_filled_and_required(url, streams, 61)
