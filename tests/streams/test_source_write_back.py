"""Writing a source's lost events back: its database restored from a real backup (a copy of the whole
database taken earlier), the follower refuses to go on and says why, a write_back job (approved by a
second person) writes what the source lost from the copy through the source's own write path, in each
stream's order, leaves streams its writers changed since the restore alone and says so, writes nothing
the second time, and hands the source back to the follower, which copies what was written since the
restore and nothing twice. For a named table, Message DB and an application of the eventsourcing
library, whose repository then loads every aggregate as it was."""

from __future__ import annotations

import datetime as dt
import io
import sys
import time
import uuid
from decimal import Decimal

import psycopg
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from recovery import approvals, selectors, services
from recovery.models import Job
from recovery.params import JobParamsError
from recovery.runner import run_inline
from streams import source_follow, source_services
from streams.models import Event, Source, SourceParkedEvent
from streams.source_services import InvalidSource
from tests.conftest import bearer_token, person
from tests.streams.messagedb_helpers import messagedb  # noqa: F401 (a fixture)
from tests.streams.source_helpers import add_table_source, copy_all, server_url
from tests.streams.test_projection_crashes import Processes
from tests.streams.test_source_eventsourcing import Shop, add_shop, shop_of  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("four_eyes")]


@pytest.fixture
def backups():
    """Backups of a whole database, as CREATE DATABASE … TEMPLATE copies it, and restores over it."""
    taken: list[str] = []

    class Backups:
        def take(self, database: str) -> str:
            name = f"{database}_backup_{len(taken)}"
            with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{database}"')
            taken.append(name)
            return name

        def restore(self, database: str, backup: str) -> None:
            with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{database}" TEMPLATE "{backup}"')

    yield Backups()
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        for name in taken:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def approved_write_back(name: str, approver) -> Job:
    job = services.request_job(
        kind="write_back", params={"source": name}, requested_by="olivia", reason="restored from backup"
    )
    assert job.state == Job.State.PENDING_APPROVAL
    approvals.approve_job(job_id=job.pk, approver=approver, params_sha256=job.params_sha256)
    return run_inline(job.pk)


def backfilled(name: str = "orders_store") -> None:
    """The new source's history copied by its backfill job, as a worker would run it."""
    job = run_inline(Job.objects.get(kind="backfill", target=f"source.{name}").pk)
    assert job.state == Job.State.SUCCEEDED, job.error


def table_rows(source_db) -> list[tuple]:
    return source_db.execute("SELECT stream_name, version, body, event_id FROM events ORDER BY seq")


def test_a_table_restored_from_an_old_backup_gets_its_lost_events_back_and_is_followed_on(
    source_db, backups, approver
):
    for version in (1, 2, 3):
        source_db.append("order-1", version)
    source_db.append("order-2", 1)
    add_table_source(source_db)
    backfilled()
    backup = backups.take(source_db.name)
    source_db.append("order-1", 4)
    source_db.append("order-2", 2, body={"v": "lost"})
    source_db.append("order-3", 1)
    source_db.append("order-1", 5)
    copy_all()

    backups.restore(source_db.name, backup)
    # The team's writers go on after the restore: a stream of their own, and one the backup lost events
    # of, written again otherwise.
    source_db.append("order-4", 1)
    source_db.append("order-2", 2, body={"v": "rewritten"})

    refused = source_follow.follow(name="orders_store", budget_seconds=5, until_caught_up=True)
    assert "restored from an old backup" in refused.error

    source_services.set_write_dsn(name="orders_store", dsn=source_db.admin_url, actor="tests")
    estimate = selectors.estimate(kind="write_back", params={"source": "orders_store"})
    assert (estimate.events, estimate.streams) == (3, 2)
    assert estimate.breakdown == [("order-1", 2), ("order-3", 1)]
    assert [note for note in estimate.notes if note.startswith("order-2:")]

    job = approved_write_back("orders_store", approver)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["written"] == 3
    assert list(job.result["conflicts"]) == ["order-2"]
    rows = table_rows(source_db)
    assert [(stream, version) for stream, version, _, _ in rows] == [
        ("order-1", 1),
        ("order-1", 2),
        ("order-1", 3),
        ("order-2", 1),
        ("order-4", 1),
        ("order-2", 2),
        ("order-1", 4),
        ("order-3", 1),
        ("order-1", 5),
    ]
    # Written back as the copy has them, ids included; order-2's rewrite is left as its writers wrote it.
    for stream, version, body, event_id in rows[6:]:
        copied = Event.objects.get(stream__name=stream, sequence=version)
        assert (body, event_id) == (copied.data, copied.event_id)
    assert rows[5][2] == {"v": "rewritten"}

    # The follower goes on: it copies the new stream, parks the rewrite, and copies nothing twice.
    source = Source.objects.get()
    assert source.last_error == ""
    result = copy_all()
    assert (result.copied, result.parked) == (1, 1)
    [parked] = SourceParkedEvent.objects.all()
    assert (parked.stream, parked.sequence) == ("order-2", 2)
    assert Event.objects.filter(appended_via="source").count() == 9

    # A second write-back finds nothing to write.
    assert selectors.estimate(kind="write_back", params={"source": "orders_store"}).events == 0
    again = approved_write_back("orders_store", approver)
    assert again.result["written"] == 0
    assert len(table_rows(source_db)) == 9
    assert copy_all().copied == 0


def test_a_restored_source_whose_writers_have_reached_the_old_position_is_still_refused(source_db, backups):
    source_db.append("order-1", 1)
    add_table_source(source_db)
    backfilled()
    backup = backups.take(source_db.name)
    source_db.append("order-1", 2)
    source_db.append("order-1", 3)
    copy_all()
    backups.restore(source_db.name, backup)
    # As many events since the restore as it lost: its top is where the copy stood again.
    source_db.append("order-9", 1)
    source_db.append("order-9", 2)

    refused = source_follow.follow(name="orders_store", budget_seconds=5, until_caught_up=True)

    assert "order-9 sequence 2 at position 3, where order-1 sequence 3 was copied" in refused.error
    assert not Event.objects.filter(stream__name="order-9").exists()


def test_message_db_gets_its_lost_messages_back_through_write_message(
    messagedb,  # noqa: F811
    backups,
    approver,
):
    messagedb.write("account-1", "Opened", {"owner": "ada"}, expected_version=-1)
    source_services.add_source(
        name="accounts", kind="messagedb", dsn=messagedb.reader_url, options={}, actor="tests"
    )
    backfilled("accounts")
    backup = backups.take(messagedb.name)
    deposited, _ = messagedb.write(
        "account-1", "Deposited", {"amount": 5}, {"trace": "t-1"}, expected_version=0
    )
    opened, _ = messagedb.write("account-2", "Opened", {"owner": "bo"}, expected_version=-1)
    copy_all("accounts")
    backups.restore(messagedb.name, backup)
    messagedb.write("account-3", "Opened", {"owner": "cy"}, expected_version=-1)

    with pytest.raises(InvalidSource, match="may not write messages"):
        source_services.set_write_dsn(name="accounts", dsn=messagedb.reader_url, actor="tests")
    assert Source.objects.get().write_dsn_encrypted == ""
    source_services.set_write_dsn(name="accounts", dsn=messagedb.writer_url, actor="tests")
    job = approved_write_back("accounts", approver)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["written"] == 2
    messages = messagedb.execute(
        "SELECT id::uuid, stream_name, position, type, data, metadata FROM message_store.messages"
        " ORDER BY global_position"
    )
    assert [(m[1], m[2], m[3]) for m in messages] == [
        ("account-1", 0, "Opened"),
        ("account-3", 0, "Opened"),
        ("account-1", 1, "Deposited"),
        ("account-2", 0, "Opened"),
    ]
    # The same ids, data and metadata as before the restore (the log's own metadata left out).
    assert messages[2][0] == deposited and messages[3][0] == opened
    assert messages[2][4:] == ({"amount": 5}, {"trace": "t-1"})

    result = copy_all("accounts")
    assert (result.copied, result.parked) == (1, 0)
    assert Event.objects.filter(appended_via="source").count() == 4
    assert approved_write_back("accounts", approver).result["written"] == 0


def test_an_eventsourcing_application_loads_every_aggregate_as_it_was_after_the_write_back(
    source_db,
    shop_of,  # noqa: F811
    backups,
    approver,
):
    shop = shop_of(Shop)
    order = shop.place("ada", "12.50")
    add_shop(source_db)
    backfilled("shop")
    shop.close()
    backup = backups.take(source_db.name)
    shop = shop_of(Shop)
    order = shop.repository.get(order.id)
    order.add_line("tea", 2)
    reference = uuid.uuid4()
    order.pay(reference, dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC))
    shop.save(order)
    second = shop.place("bo", "3.10")
    copy_all("shop")
    before = (shop.repository.get(order.id), shop.repository.get(second.id))
    shop.close()
    backups.restore(source_db.name, backup)

    source_services.set_write_dsn(name="shop", dsn=source_db.admin_url, actor="tests")
    job = approved_write_back("shop", approver)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["written"] == 3
    shop = shop_of(Shop)
    for was in before:
        now = shop.repository.get(was.id)
        assert now.version == was.version
        assert vars(now) == vars(was)
    paid = shop.repository.get(order.id)
    assert paid.reference == reference and isinstance(paid.total, Decimal)
    assert copy_all("shop").copied == 0
    assert Event.objects.filter(appended_via="source").count() == 4


def test_the_write_dsn_is_an_admins_to_give_is_checked_and_is_never_shown(source_db):
    add_table_source(source_db)
    admin, operator = person("ada", "admin"), person("otto", "operator")
    url = "/api/v1/sources/orders_store/write-dsn"

    as_operator = APIClient()
    as_operator.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(operator)}")
    assert as_operator.put(url, {"dsn": source_db.admin_url}, format="json").status_code == 403
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(admin)}")
    refused = api.put(url, {"dsn": source_db.reader_url}, format="json")
    assert refused.status_code == 422
    assert "may not INSERT into events" in str(refused.json())
    assert api.get("/api/v1/sources/orders_store").json()["write_back"] is False
    with pytest.raises(JobParamsError, match="no DSN to write back with"):
        services.request_job(
            kind="write_back", params={"source": "orders_store"}, requested_by="o", reason="r"
        )

    given = api.put(url, {"dsn": source_db.admin_url}, format="json")

    assert given.status_code == 200 and given.json()["write_back"] is True
    password_free = source_db.admin_url.rpartition("@")[2]
    assert password_free not in given.content.decode()
    assert source_db.admin_url not in api.get("/api/v1/sources/orders_store").content.decode()
    assert api.delete(url).json()["write_back"] is False
    assert not Job.objects.filter(kind="write_back").exists()


def test_the_command_line_gives_a_write_dsn_and_dry_runs_a_write_back_stream_by_stream(source_db, backups):
    source_db.append("order-1", 1)
    add_table_source(source_db)
    backfilled()
    backup = backups.take(source_db.name)
    source_db.append("order-1", 2)
    source_db.append("order-5", 1)
    copy_all()
    backups.restore(source_db.name, backup)
    with pytest.raises(CommandError, match="may not INSERT"):
        call_command("source", "write-dsn", "orders_store", "--dsn", source_db.reader_url)
    call_command("source", "write-dsn", "orders_store", "--dsn", source_db.admin_url, stdout=io.StringIO())

    out = io.StringIO()
    call_command("write_back", "orders_store", "--dry-run", stdout=out)

    printed = out.getvalue()
    assert "events  2 in 2 streams" in printed
    assert "1  order-1" in printed and "1  order-5" in printed
    assert not Job.objects.filter(kind="write_back").exists()
    assert len(source_db.execute("SELECT 1 FROM events")) == 1


def test_a_write_back_killed_mid_batch_finishes_on_its_next_run_with_every_event_once(
    source_db, backups, tmp_path
):
    """kill -9 of the process running a write-back between the source's transactions: the job's next
    slice makes the plan again from what the source holds and writes the rest, each event once."""
    source_db.append("order-0", 1)
    add_table_source(source_db)
    backfilled()
    backup = backups.take(source_db.name)
    for n in range(1200):
        source_db.append(f"order-{n % 40 + 1}", n // 40 + 1)
    copy_all()
    backups.restore(source_db.name, backup)
    # Each row the write-back inserts takes a few milliseconds, so that the kill lands mid-way.
    source_db.execute(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_sleep(0.003); RETURN NEW; END $$"
    )
    source_db.execute("CREATE TRIGGER slow BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION slow()")
    source_services.set_write_dsn(name="orders_store", dsn=source_db.admin_url, actor="tests")
    lost = Event.objects.filter(appended_via="source").count() - 1
    processes = Processes(tmp_path)
    processes.env["REPLAYDESK_APPROVALS"] = "write_back=0"  # what it does after an approval, here
    argv = [sys.executable, "-m", "console.cli", "write_back", "orders_store", "--inline", "--reason", "r"]

    try:
        child = processes.start("write-back", argv)
        deadline = time.monotonic() + 60
        while len(table_rows(source_db)) < 1 + 600:
            assert child.poll() is None and time.monotonic() < deadline, (
                tmp_path / "write-back.log"
            ).read_text()
            time.sleep(0.05)
        processes.kill(child)
    finally:
        processes.stop_all()

    written = len(table_rows(source_db)) - 1
    assert 600 <= written < lost, "killed mid-way"
    job = Job.objects.get(kind="write_back")
    assert job.state == Job.State.RUNNING
    finished = run_inline(job.pk)
    assert finished.state == Job.State.SUCCEEDED, finished.error
    rows = table_rows(source_db)
    assert len(rows) == 1 + lost
    assert len({(stream, version) for stream, version, _, _ in rows}) == len(rows)
    by_stream: dict[str, list[int]] = {}
    for stream, version, _, _ in rows:
        by_stream.setdefault(stream, []).append(version)
    assert all(versions == list(range(1, len(versions) + 1)) for versions in by_stream.values())
    assert copy_all().copied == 0
