"""Restore end to end: a damaged projection restored from its snapshot and the log, a corrupt snapshot
refused, and a sink's receiver that lost data resynced from a position at the job's rate limit."""

import time
from pathlib import Path

import pytest
from django.db import connection

from recovery.models import Job, Snapshot
from recovery.runner import run_inline
from recovery.services import request_job
from streams.consumers import run_projection
from streams.models import Event
from streams.selectors import head
from streams.services import append_events
from streams.sink_config import create_sink
from streams.sinks import run_sink
from tests.receivers import Receiver
from tests.recovery.crash_helpers import History, checkpoint_of, clear_queues, schema_exists
from tests.streams.projection_helpers import fold_users, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

LIVE = "proj_users_directory"


@pytest.fixture(autouse=True)
def snapshot_dir(fresh_projection_schemas, settings, tmp_path):
    clear_queues()
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"
    yield settings.REPLAYDESK_SNAPSHOT_DIR
    clear_queues()


def run(kind: str, **params) -> Job:
    job = request_job(kind=kind, params=params, requested_by="olivia", reason="restore drill")
    return run_inline(job.pk)


def catch_up(name: str) -> None:
    while not run_projection(name).caught_up:
        pass


def users_events_after(position: int) -> int:
    return Event.objects.filter(
        position__gt=position,
        stream__category="user",
        type__in=("UserCreated", "UserNameSet", "UserEmailSet"),
    ).count()


def test_a_damaged_projection_is_restored_from_its_snapshot_and_the_log():
    history = History(seed=21)
    history.add(4000)
    catch_up("users_directory")
    snapshot = run("snapshot", projection="users_directory")
    assert snapshot.state == Job.State.SUCCEEDED, snapshot.error
    history.add(3000)  # after the snapshot: only the log has these
    catch_up("users_directory")
    with connection.cursor() as cursor:  # somebody's bad SQL
        cursor.execute(f"DELETE FROM {LIVE}.users WHERE user_id IN ('1', '2', '3', '40')")
        cursor.execute(f"UPDATE {LIVE}.users SET name = 'wrong', email = 'x@x' WHERE user_id IN ('5', '60')")
        cursor.execute(f"INSERT INTO {LIVE}.users VALUES ('ghost', 'ghost', 'Ghost', 'g@x', now())")
    damaged = projected_users()
    assert damaged != fold_users()

    job = run("restore", projection="users_directory", shards=3)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert projected_users() == fold_users()
    assert checkpoint_of(LIVE) >= job.result["position"] >= snapshot.result["position"]
    assert job.result["snapshot"] == snapshot.result["name"]
    assert job.result["snapshot_position"] == snapshot.result["position"]
    assert job.result["events_replayed"] == users_events_after(snapshot.result["position"])
    assert job.result["rpo_events"] == 0
    assert isinstance(job.result["rto_seconds"], float) and 0 <= job.result["rto_seconds"] < 60
    # The damaged schema is kept aside for a rollback.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {LIVE}__previous.users WHERE user_id = 'ghost'")
        assert cursor.fetchone()[0] == 1


def test_a_corrupt_snapshot_fails_the_restore_and_leaves_the_live_projection_alone(snapshot_dir):
    history = History(seed=22)
    history.add(1500)
    catch_up("users_directory")
    snapshot = run("snapshot", projection="users_directory")
    history.add(500)
    catch_up("users_directory")
    catalogued = Snapshot.objects.get(pk=snapshot.result["snapshot"])
    users_file = next(t["file"] for t in catalogued.manifest["tables"] if t["table"] == "users")
    path = Path(snapshot_dir) / "users_directory" / catalogued.name / users_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    live = (projected_users(), checkpoint_of(LIVE))

    job = run("restore", projection="users_directory", snapshot=catalogued.pk)

    assert job.state == Job.State.FAILED
    assert f"{users_file} does not match its checksum; refused" in job.error
    assert job.failures == 1, "a corrupt snapshot is not retried"
    assert (projected_users(), checkpoint_of(LIVE)) == live
    assert live[0] == fold_users()
    assert not schema_exists(f"{LIVE}__rebuild_{job.pk}")
    assert not schema_exists(f"{LIVE}__previous"), "nothing was swapped"


@pytest.fixture
def receiver():
    running = Receiver(secret="s3cret-for-the-test")
    yield running
    running.stop()


def crm_sink(receiver, **settings) -> None:
    create_sink(
        name="crm_hook",
        url=receiver.url,
        secret="s3cret-for-the-test",
        rate_per_second=5000,
        actor="olivia",
        **settings,
    )


def test_a_receiver_that_lost_data_is_resynced_from_a_position_once_per_event_at_the_rate(receiver):
    history = History(seed=23)
    history.add(3000)
    crm_sink(receiver, batch_size=100, categories=["user", "group"])
    while not run_sink("crm_hook").caught_up:
        pass
    every_id = {
        str(i)
        for i in Event.objects.filter(stream__category__in=["user", "group"]).values_list(
            "event_id", flat=True
        )
    }
    assert set(receiver.kept) == every_id
    lost_after = head() - 800
    assert receiver.lose_after(lost_after) > 700
    from_position = lost_after - 400  # some events it still has come again

    rate = 400.0
    started = time.monotonic()
    job = run("resync", sink="crm_hook", from_position=from_position, rate_per_second=rate)
    elapsed = time.monotonic() - started

    assert job.state == Job.State.SUCCEEDED, job.error
    assert set(receiver.kept) == every_id, "every event is back at the receiver"
    assert set(receiver.effects.values()) == {1}, "and each had its effect once"
    assert any(times > 1 for times in receiver.received.values()), "some came twice over the wire"
    resent = Event.objects.filter(
        position__gt=from_position,
        position__lte=job.result["up_to_position"],
        stream__category__in=["user", "group"],
    ).count()
    assert job.result["events_resent"] == resent
    assert (job.result["from_position"], job.result["sink"]) == (from_position, "crm_hook")
    batch = min(100, int(rate))
    assert elapsed >= (resent - batch) / rate, f"{resent} events at {rate}/s took only {elapsed:.2f} s"


def test_a_resync_sends_batches_within_the_byte_bound_and_passes_over_nothing(receiver, settings):
    settings.REPLAYDESK_READ_MAX_BYTES = 5_000
    for i in range(7):
        append_events(stream=f"user-{i}", events=[{"type": "UserCreated", "data": {"bio": "x" * 2_000}}])
    crm_sink(receiver, batch_size=100, categories=["user"], from_head=True)

    job = run("resync", sink="crm_hook", from_position=0)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert receiver.batch_sizes == [2, 2, 2, 1]
    assert set(receiver.kept) == {
        str(i) for i in Event.objects.filter(stream__category="user").values_list("event_id", flat=True)
    }


def test_a_resync_leaves_out_the_events_it_excludes(receiver):
    history = History(seed=29)
    history.add(400)
    bad = append_events(
        stream="user-1",
        events=[{"type": "UserEmailSet", "data": {"user_id": "1", "email": "oops@bad.invalid"}}] * 3,
        actor="deploy-bug",
    )
    history.add(100)
    crm_sink(receiver, categories=["user"], from_head=True)

    job = run("resync", sink="crm_hook", from_position=0, exclude={"actor": "deploy-bug"})

    assert job.state == Job.State.SUCCEEDED, job.error
    sent = {event["position"] for event in receiver.kept.values()}
    assert sent.isdisjoint(bad.positions), "the excluded events were not sent"
    good = Event.objects.filter(stream__category="user").exclude(actor="deploy-bug")
    assert sent == set(good.values_list("position", flat=True))
    assert job.result["events_resent"] == good.count()


def test_a_resync_whose_batch_outlasts_a_slice_at_its_rate_still_sends(receiver, settings):
    settings.REPLAYDESK_JOB_SLICE_SECONDS = 0.2  # a batch of 100 at 200 events/s takes 0.5 s
    History(seed=31).add(60)
    crm_sink(receiver, batch_size=100, from_head=True)

    job = run("resync", sink="crm_hook", from_position=0, rate_per_second=200)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["events_resent"] == len(receiver.kept) > 0
