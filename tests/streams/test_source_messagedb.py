"""The Message DB source kind, against Message DB's own SQL (tests/streams/messagedb_helpers.py): messages
written with its write_message are copied exactly once with their ids, streams, sequences, types, data,
metadata and times; concurrent writers whose global positions commit out of order and leave holes are
followed without skipping; stream names the log refuses are parked with the reason; bad configuration is
refused with a clear error and nothing saved."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import defaultdict

import psycopg
import pytest

from streams import source_follow, source_services
from streams.models import Event, Source, SourceParkedEvent, Stream
from streams.source_services import InvalidSource
from tests.streams.source_helpers import copy_all, write_while_following

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

NAME = "accounts"


def add_messagedb_source(messagedb, **given):
    given = {"name": NAME, "kind": "messagedb", "dsn": messagedb.reader_url, "options": {}, **given}
    return source_services.add_source(actor="tests", **given)


def from_source() -> list[Event]:
    return list(Event.objects.filter(appended_via="source").select_related("stream").order_by("position"))


def test_messages_written_with_write_message_are_copied_exactly_once_keeping_what_message_db_kept(messagedb):
    written = [
        messagedb.write("account-1", "Opened", {"owner": "ada"}, expected_version=-1),
        messagedb.write(
            "account-1",
            "Deposited",
            {"amount": 10},
            {"correlationStreamName": "payment-7", "schemaVersion": "1"},
            expected_version=0,
        ),
        messagedb.write("account-2", "Opened", {"owner": "bob"}, expected_version=-1),
        # A category type (`:command`): the log takes it, and its category is Message DB's.
        messagedb.write("account:command-1", "Deposit", {"amount": 10}, {"replyStreamName": "web-1"}),
    ]
    source = add_messagedb_source(messagedb)
    assert source.options == {"schema": "message_store"}

    result = copy_all(NAME)

    assert (result.copied, result.parked) == (4, 0)
    messages = messagedb.execute(
        "SELECT id, stream_name, position, type, data, metadata, time, global_position,"
        " message_store.category(stream_name) FROM message_store.messages ORDER BY global_position"
    )
    events = from_source()
    assert [e.event_id for e in events] == [message_id for message_id, _ in written]
    for event, (mid, stream, position, type_, data, metadata, when, global_position, category) in zip(
        events, messages, strict=True
    ):
        assert (event.event_id, event.stream.name, event.sequence, event.type, event.data) == (
            mid,
            stream,
            position + 1,
            type_,
            data,
        )
        kept = {k: v for k, v in event.metadata.items() if k != source_follow.METADATA_KEY}
        assert kept == (metadata or {})
        assert event.metadata[source_follow.METADATA_KEY] == {"name": NAME, "position": global_position}
        # Message DB keeps UTC without a zone.
        assert event.recorded_at == when.replace(tzinfo=dt.UTC)
        assert event.stream.category == category
    assert set(Stream.objects.filter(source__name=NAME).values_list("name", flat=True)) == {
        "account-1",
        "account-2",
        "account:command-1",
    }

    # Following again copies nothing twice; what Message DB writes next is copied after it.
    assert copy_all(NAME).copied == 0
    later, _ = messagedb.write("account-1", "Withdrawn", {"amount": 4}, expected_version=1)
    assert copy_all(NAME).copied == 1
    assert [
        (e.sequence, e.type) for e in Event.objects.filter(stream__name="account-1").order_by("sequence")
    ] == [
        (1, "Opened"),
        (2, "Deposited"),
        (3, "Withdrawn"),
    ]
    assert from_source()[-1].event_id == later
    source.refresh_from_db()
    assert (source.events_copied, source.events_parked, source.position) == (5, 0, source.head)


WRITERS = 6
TRANSACTIONS = 40


def test_concurrent_writers_that_commit_out_of_order_and_roll_back_are_followed_without_a_skip(messagedb):
    """Writers in three categories (Message DB serialises writes to a category with an advisory lock,
    so writers of different categories commit out of global_position order) and a follower at once."""
    add_messagedb_source(messagedb)
    committed: list[int] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        versions: dict[str, int] = defaultdict(lambda: -1)
        with psycopg.connect(messagedb.writer_url) as conn:
            for _ in range(TRANSACTIONS):
                stream = f"c{n % 3}-{n}.{rng.randrange(3)}"
                # The global position is drawn here; the commit comes after a delay, and a fifth of the
                # transactions roll back and leave a hole.
                _, position = messagedb.write(
                    stream, "Wrote", {"n": n}, expected_version=versions[stream], conn=conn
                )
                time.sleep(rng.random() * 0.02)
                if rng.random() < 0.2:
                    conn.rollback()
                else:
                    conn.commit()
                    committed.append(position)
                    versions[stream] += 1

    write_while_following(writer, WRITERS, NAME)

    assert set(range(1, max(committed) + 1)) - set(committed), "the rollbacks should have left holes"
    positions = [e.metadata[source_follow.METADATA_KEY]["position"] for e in from_source()]
    assert positions == sorted(committed)
    assert not SourceParkedEvent.objects.exists()
    by_stream = defaultdict(list)
    for event in from_source():
        by_stream[event.stream.name].append(event.sequence)
    assert all(sequences == list(range(1, len(sequences) + 1)) for sequences in by_stream.values())


def test_a_stream_name_the_log_refuses_is_parked_with_its_reason_and_the_rest_goes_on(messagedb):
    # A compound id: Message DB takes `+`, the log's stream names do not.
    first, _ = messagedb.write("account-123+456", "Linked", {"with": 456})
    messagedb.write("account-123+456", "Unlinked", {"with": 456})
    messagedb.write("account-7", "Opened", {"owner": "cy"})
    source = add_messagedb_source(messagedb)

    result = copy_all(NAME)

    assert (result.copied, result.parked) == (1, 2)
    parked = list(SourceParkedEvent.objects.order_by("position"))
    assert [(p.stream, p.sequence, p.type) for p in parked] == [
        ("account-123+456", 1, "Linked"),
        ("account-123+456", 2, "Unlinked"),
    ]
    assert parked[0].event_id == first and parked[0].payload["data"] == {"with": 456}
    assert all(p.reason.startswith("stream: a stream name is 1–200 characters of letters") for p in parked)
    assert [e.stream.name for e in from_source()] == ["account-7"]
    source.refresh_from_db()
    assert (source.events_parked, source.position) == (2, source.head)


def refused(messagedb, **given) -> dict[str, list[str]]:
    with pytest.raises(InvalidSource) as caught:
        add_messagedb_source(messagedb, **given)
    return caught.value.errors


def test_bad_configuration_is_a_clear_error_and_saves_nothing(messagedb, source_db):
    audited = Event.objects.count()

    # A database without Message DB, and a schema it is not in.
    assert (
        "no schema message_store: is Message DB installed"
        in refused(messagedb, dsn=source_db.reader_url)["dsn"][0]
    )
    assert "no schema mdb" in refused(messagedb, options={"schema": "mdb"})["dsn"][0]
    # Message DB's own writer role may INSERT, its owner may do anything: following takes neither.
    for writes in (messagedb.writer_url, messagedb.admin_url):
        assert "may write to message_store.messages" in refused(messagedb, dsn=writes)["dsn"][0]
    assert refused(messagedb, options={"table": "events"})["options.table"] == [
        "a messagedb source takes no option 'table'; it takes schema"
    ]
    for schema in ("message store", "Message_Store"):
        assert refused(messagedb, options={"schema": schema})["options.schema"]
    # A reader without SELECT, then without USAGE on the schema: the error says what to grant.
    messagedb.execute(f'REVOKE SELECT ON message_store.messages FROM "{messagedb.reader}"')
    assert "may not read message_store.messages" in refused(messagedb)["dsn"][0]
    messagedb.execute(f'REVOKE USAGE ON SCHEMA message_store FROM "{messagedb.reader}"')
    assert "GRANT USAGE ON SCHEMA message_store" in refused(messagedb)["dsn"][0]

    assert not Source.objects.exists() and Event.objects.count() == audited
