"""The console's audit trail is a hash chain per stream; `replaydesk audit verify` finds where it breaks."""

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from core import audit_chain
from streams import audit
from streams.models import Event, Stream
from streams.services import append_events

GENESIS = "0" * 64


def record(subject: str, count: int, **data) -> None:
    for number in range(count):
        audit.record(
            subject=subject,
            type="JobRequested",
            actor="olivia",
            data={"job": number, "reason": "test", **data},
        )


def events(stream: str) -> list[Event]:
    return list(Event.objects.filter(stream__name=stream).order_by("sequence"))


def independent_hash(event: Event) -> str:
    """The documented canonical form, computed from the ORM's view of the row (no audit_chain code)."""
    document = {
        "stream": event.stream.name,
        "sequence": event.sequence,
        "id": str(event.event_id),
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "actor": event.actor,
        "recorded_at": event.recorded_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if event.appended_by is not None:
        document |= {"appended_by": event.appended_by, "appended_via": event.appended_via}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def verify(*args: str) -> tuple[int, dict]:
    """Run `audit verify --json`; its exit code and its report."""
    out = io.StringIO()
    try:
        call_command("audit", "verify", "--json", *args, stdout=out)
        code = 0
    except CommandError as refused:
        code = refused.returncode
    return code, json.loads(out.getvalue())


def sql(statement: str, params: list) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


@pytest.mark.django_db
def test_every_record_carries_the_hash_of_its_predecessor():
    record("job.1", 30, note="café ☕", ratio=0.25, nested={"b": [1, 2, {"z": None}], "a": True})

    chain = events("console-job.1")

    assert [event.sequence for event in chain] == list(range(1, 31))
    assert chain[0].metadata["prev_hash"] == GENESIS
    for before, after in zip(chain, chain[1:], strict=False):
        assert after.metadata["prev_hash"] == independent_hash(before)
    assert len({event.metadata["prev_hash"] for event in chain}) == 30


@pytest.mark.django_db
def test_streams_are_chained_separately():
    record("job.1", 2)
    record("job.2", 2)
    record("job.1", 1)

    assert events("console-job.2")[0].metadata["prev_hash"] == GENESIS
    assert events("console-job.1")[2].metadata["prev_hash"] == independent_hash(events("console-job.1")[1])


@pytest.mark.django_db(transaction=True)
def test_concurrent_records_to_one_stream_stay_one_chain():
    writers, each = 8, 12
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            start.wait()
            for number in range(each):
                with transaction.atomic():
                    audit.record(
                        subject="consumer.contended",
                        type="ConsumerPaused",
                        actor=f"writer{writer}",
                        data={"n": number},
                    )
                    # Hold the transaction open a moment, as a real action would: the others read the
                    # same predecessor meanwhile and must lose the compare-and-set, then read again.
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    chain = events("console-consumer.contended")
    assert [event.sequence for event in chain] == list(range(1, writers * each + 1))
    prev_hashes = [event.metadata["prev_hash"] for event in chain]
    assert len(set(prev_hashes)) == len(prev_hashes), "two records chained to the same predecessor"
    assert verify() == (0, {"ok": True, "streams": 1, "events": writers * each, "broken": []})


@pytest.mark.django_db
def test_verify_passes_on_an_intact_log_and_ignores_other_categories():
    record("job.1", 3)
    record("job.2", 1)
    record("consumer.users_directory", 2)
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {"user_id": "1"}}])
    out = io.StringIO()

    call_command("audit", "verify", stdout=out)

    assert out.getvalue().strip() == "checked 3 streams, 6 events: every chain holds"


@pytest.mark.django_db
def test_verify_of_an_empty_log_holds():
    assert verify() == (0, {"ok": True, "streams": 0, "events": 0, "broken": []})


EDITS = {
    "data": "UPDATE streams_event SET data = jsonb_set(data, '{reason}', '\"approved by phone\"')",
    "type": "UPDATE streams_event SET type = 'JobRejected'",
    "actor": "UPDATE streams_event SET actor = 'mallory'",
    "appended_by": "UPDATE streams_event SET appended_by = 'user:mallory'",
    "metadata": "UPDATE streams_event SET metadata = jsonb_set(metadata, '{ip}', '\"10.0.0.1\"')",
    "recorded_at": "UPDATE streams_event SET recorded_at = recorded_at - interval '1 hour'",
}


@pytest.mark.django_db
@pytest.mark.parametrize("column", EDITS)
def test_an_edited_event_is_caught_at_its_sequence(column):
    record("job.1", 5)
    record("job.2", 5)
    target = events("console-job.1")[2]

    assert sql(EDITS[column] + " WHERE position = %s", [target.position]) == 1

    code, report = verify()
    assert code == 1
    assert report["broken"] == [
        {
            "stream": "console-job.1",
            "sequence": 3,
            "problem": "edited",
            "detail": "event 3 was changed after event 4 was recorded: its hash no longer matches the "
            "prev_hash event 4 holds (or that prev_hash was changed)",
        }
    ]
    assert (report["streams"], report["ok"]) == (2, False)


@pytest.mark.django_db
def test_an_edited_first_event_is_caught():
    record("job.1", 3)
    first = events("console-job.1")[0]
    sql(
        "UPDATE streams_event SET metadata = jsonb_set(metadata, '{prev_hash}', '\"ab\"') "
        "WHERE position = %s",
        [first.position],
    )

    code, report = verify()

    assert code == 1
    assert [(b["stream"], b["sequence"], b["problem"]) for b in report["broken"]] == [
        ("console-job.1", 1, "edited")
    ]


@pytest.mark.django_db
def test_a_deleted_middle_event_is_caught_as_a_hole():
    record("job.1", 6)
    sql("DELETE FROM streams_event WHERE position = %s", [events("console-job.1")[3].position])

    code, report = verify()

    assert code == 1
    assert report["broken"] == [
        {
            "stream": "console-job.1",
            "sequence": 4,
            "problem": "deleted",
            "detail": "event 4 is missing: the sequence jumps to 5",
        }
    ]


@pytest.mark.django_db
def test_truncated_last_events_are_caught_by_the_streams_version():
    record("job.1", 6)
    record("job.2", 2)
    sql(
        "DELETE FROM streams_event WHERE stream_id = %s AND sequence >= 5",
        [Stream.objects.get(name="console-job.1").pk],
    )

    code, report = verify()

    assert code == 1
    assert report["broken"] == [
        {
            "stream": "console-job.1",
            "sequence": 5,
            "problem": "truncated",
            "detail": "the stream's version is 6 but its events end at 4: events 5–6 are gone",
        }
    ]
    assert report["events"] == 6


@pytest.mark.django_db
def test_a_stream_emptied_of_all_its_events_is_caught():
    record("job.1", 2)
    sql("DELETE FROM streams_event WHERE stream_id = %s", [Stream.objects.get(name="console-job.1").pk])

    code, report = verify()

    assert code == 1
    assert [(b["sequence"], b["problem"]) for b in report["broken"]] == [(1, "truncated")]


@pytest.mark.django_db
def test_exported_heads_catch_what_the_chain_alone_cannot(tmp_path):
    """An attacker who truncates and also lowers streams_stream.version, or edits a stream's last event,
    leaves consistent chains; the heads exported before are what gives them away."""
    record("job.1", 4)
    record("job.2", 3)
    record("job.3", 2)
    heads = tmp_path / "heads.jsonl"
    assert verify("--export-heads", str(heads))[0] == 0
    exported = [json.loads(line) for line in heads.read_text().splitlines()]
    assert [(h["stream"], h["sequence"]) for h in exported] == [
        ("console-job.1", 4),
        ("console-job.2", 3),
        ("console-job.3", 2),
    ]
    job1, job2 = Stream.objects.get(name="console-job.1"), Stream.objects.get(name="console-job.2")
    sql("DELETE FROM streams_event WHERE stream_id = %s AND sequence = 4", [job1.pk])
    sql("UPDATE streams_stream SET version = 3 WHERE id = %s", [job1.pk])
    sql(EDITS["data"] + " WHERE stream_id = %s AND sequence = 3", [job2.pk])
    record("job.3", 1)  # recorded after the export: still fine

    assert verify()[0] == 0  # what the chain cannot see on its own
    code, report = verify("--heads", str(heads))

    assert code == 1
    assert [(b["stream"], b["sequence"], b["problem"]) for b in report["broken"]] == [
        ("console-job.1", 4, "truncated"),
        ("console-job.2", 3, "edited"),
    ]


@pytest.mark.django_db
def test_a_stream_dropped_altogether_is_caught_by_exported_heads(tmp_path):
    record("job.1", 2)
    heads = tmp_path / "heads.jsonl"
    verify("--export-heads", str(heads))
    sql("DELETE FROM streams_event WHERE stream_id = %s", [Stream.objects.get(name="console-job.1").pk])
    sql("DELETE FROM streams_stream WHERE name = 'console-job.1'", [])

    code, report = verify("--heads", str(heads))

    assert code == 1
    assert report["broken"] == [
        {
            "stream": "console-job.1",
            "sequence": 1,
            "problem": "gone",
            "detail": "the stream is gone; its exported head was event 2",
        }
    ]


@pytest.mark.django_db
def test_an_event_appended_to_a_console_stream_around_the_audit_is_caught():
    record("job.1", 2)
    # Code that claims to be the audit trail but writes no chain (the store refuses anyone else).
    append_events(
        stream="console-job.1",
        events=[{"type": "JobApproved", "data": {"job": 1}}],
        actor="mallory",
        audit_trail=True,
    )

    code, report = verify()

    assert code == 1
    assert [(b["sequence"], b["problem"]) for b in report["broken"]] == [(3, "unchained")]


@pytest.mark.django_db
def test_walks_streams_and_events_page_by_page(monkeypatch):
    monkeypatch.setattr(audit_chain, "EVENT_PAGE", 3)
    for job in range(1, 6):
        record(f"job.{job}", job + 1)
    sql("DELETE FROM streams_event WHERE position = %s", [events("console-job.4")[2].position])
    sql(EDITS["type"] + " WHERE position = %s", [events("console-job.5")[0].position])

    report = audit_chain.verify(stream_page=2)

    assert (report.streams, report.events) == (5, 2 + 3 + 4 + 4 + 6)
    assert [(b.stream, b.sequence, b.problem) for b in report.breaks] == [
        ("console-job.4", 3, "deleted"),
        ("console-job.5", 1, "edited"),
    ]


@pytest.mark.django_db
def test_a_bad_heads_file_is_a_clear_error(tmp_path):
    heads = tmp_path / "heads.jsonl"
    heads.write_text('{"stream": "console-job.1", "sequence": 2, "hash": "ab"}\nnot json\n')

    with pytest.raises(CommandError, match=r"heads.jsonl, line 2: not a chain head"):
        call_command("audit", "verify", "--heads", str(heads), stdout=io.StringIO())
    with pytest.raises(CommandError, match="cannot read the heads file"):
        call_command("audit", "verify", "--heads", str(tmp_path / "missing"), stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_command_line_exits_1_and_names_the_broken_link():
    record("job.7", 3)
    sql("DELETE FROM streams_event WHERE position = %s", [events("console-job.7")[1].position])
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"])),
    }
    replaydesk = str(Path(sys.executable).with_name("replaydesk"))

    done = subprocess.run(
        [replaydesk, "audit", "verify"], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "console-job.7 @2 deleted: event 2 is missing: the sequence jumps to 3",
        "checked 1 streams, 2 events: 1 broken",
    ]
    assert "1 audit chain(s) broken" in done.stderr
