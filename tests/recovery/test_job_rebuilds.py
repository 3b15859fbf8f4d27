"""What replays, restores and verifications do, run to their end in this process: exclusions, snapshots,
repairs of one stream, comparisons, and the rollback of a swap."""

import datetime as dt
from contextlib import contextmanager

import pytest
from django.db import connection
from django.utils import timezone

from recovery import runner, services
from recovery.models import Job
from recovery.params import JobParamsError
from streams.consumers import run_projection
from streams.models import Event
from streams.projections import Projection, add, remove
from tests.recovery.job_helpers import (
    _snapshot_dir,  # noqa: F401 (an autouse fixture)
    rename,
    run,
    schema_exists,
    sql,
    users,
)
from tests.streams.projection_helpers import checkpoint, fold_users, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


# --- exclusions, snapshots, repairs


def test_a_replay_can_exclude_the_events_a_bad_deploy_wrote():
    users(5)
    start = timezone.now()
    bad = [rename(uid, "hacked") for uid in range(3)]
    good = rename(4, "Fine Name", actor="support")
    job = run(
        "replay",
        projection="users_directory",
        exclude={"actor": "svc-bad-deploy", "recorded_after": start.isoformat()},
    )

    assert job.state == "succeeded", job.error
    names = {uid: row[1] for uid, row in projected_users().items()}
    assert names["0"] == "User 0" and names["2"] == "User 2" and names["4"] == "Fine Name"
    assert job.result["events_excluded"] == len(bad) and good > bad[-1]
    assert job.params["exclude"]["actor"] == "svc-bad-deploy"  # recorded on the job


@contextmanager
def prepared(**params):
    """A replay requested and prepared in this process: its lanes' events are fixed at the head as it was
    then, so what the body appends is the tail's."""
    job = services.request_job(kind="replay", params=params, requested_by="olivia", reason="r")
    with runner.inline():
        runner.run_slice(job.pk, 0)
        yield job


def stream_checkpoints(schema="proj_users_directory"):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.name, c.sequence FROM {schema}.stream_checkpoint c"
            " JOIN streams_stream s ON s.id = c.stream_id"
        )
        return dict(cursor.fetchall())


def test_a_replay_records_each_streams_last_applied_event_and_not_an_excluded_one():
    users(3)
    rename(0, "hacked")  # excluded: user-0's last applied event stays its creation
    rename(1, "Fine Name", actor="support")
    with prepared(projection="users_directory", exclude={"actor": "svc-bad-deploy"}, shards=2) as job:
        rename(2, "Later", actor="support")  # after the target: the tail applies and records it
    job = runner.run_inline(job.pk)

    assert job.state == "succeeded", job.error
    assert (job.total, job.result["events_replayed"], job.result["events_excluded"]) == (5, 5, 1)
    assert stream_checkpoints() == {"user-0": 1, "user-1": 2, "user-2": 2}
    assert {uid: row[1] for uid, row in projected_users().items()} == {
        "0": "User 0",
        "1": "Fine Name",
        "2": "Later",
    }


def test_a_replay_can_exclude_events_by_id():
    users(2)
    rename(0, "Typo")
    wrong = Event.objects.filter(type="UserNameSet").get()
    job = run("replay", projection="users_directory", exclude={"event_ids": [str(wrong.event_id)]})
    assert projected_users()["0"][1] == "User 0" and job.result["events_excluded"] == 1


def test_a_replay_from_a_snapshot_applies_only_what_came_after_it():
    users(10)
    run_projection("users_directory")
    snapshot = run("snapshot", projection="users_directory")
    assert snapshot.state == "succeeded", snapshot.error
    users(3, start=10)

    job = run("replay", projection="users_directory", snapshot=snapshot.result["snapshot"])
    assert job.state == "succeeded", job.error
    assert job.result["events_replayed"] == 3 and job.result["snapshot"] == snapshot.result["name"]
    assert projected_users() == fold_users()


def test_a_restore_takes_the_latest_snapshot_before_a_time():
    users(4)
    run_projection("users_directory")
    first = run("snapshot", projection="users_directory")
    users(2, start=4)
    run_projection("users_directory")
    second = run("snapshot", projection="users_directory")

    between = services.request_job(
        kind="restore",
        params={"projection": "users_directory", "before": second.finished_at.isoformat()},
        requested_by="o",
        reason="r",
    )
    assert between.params["snapshot"] == second.result["snapshot"]
    services.cancel_job(job_id=between.pk, actor="o")
    early = services.request_job(
        kind="restore",
        params={
            "projection": "users_directory",
            "before": (first.finished_at + dt.timedelta(microseconds=1)).isoformat(),
        },
        requested_by="o",
        reason="r",
    )
    assert early.params["snapshot"] == first.result["snapshot"]
    job = runner.run_inline(early.pk)
    assert job.state == "succeeded" and job.result["rpo_events"] == 0 and job.result["rto_seconds"] >= 0
    assert projected_users() == fold_users()


def test_a_replay_prepared_before_checkpoints_were_recorded_up_front_records_them_after_its_lanes():
    # An upgrade in the middle of a replay: the job was prepared by a version that recorded its
    # per-stream checkpoints only once the lanes were done.
    users(3)
    rename(1, "Fine Name", actor="support")
    with prepared(projection="users_directory") as job:
        job.refresh_from_db()
    sql(f"DELETE FROM {job.work['schema']}.stream_checkpoint")
    Job.objects.filter(pk=job.pk).update(work={k: v for k, v in job.work.items() if k != "streams_recorded"})

    job = runner.run_inline(job.pk)
    assert job.state == "succeeded", job.error
    assert stream_checkpoints() == {"user-0": 1, "user-1": 2, "user-2": 1}


class IndexesSeen(Projection, register=False):
    """Notes, for each event it folds, whether its plain and its unique index were there."""

    name = "test_indexes_seen"
    categories = ("user",)
    fold_reads_indexes = False
    tables = (
        "CREATE TABLE seen (position bigint PRIMARY KEY, stream text, plain boolean, is_unique boolean)",
        "CREATE INDEX seen_stream ON seen (stream)",
        "CREATE UNIQUE INDEX seen_stream_position ON seen (stream, position)",
    )

    def apply_rows(self, cursor, rows):
        cursor.execute(
            f"""
            INSERT INTO seen SELECT position, stream, to_regclass('seen_stream') IS NOT NULL,
                                    to_regclass('seen_stream_position') IS NOT NULL FROM {rows}
            """
        )


class IndexesRead(IndexesSeen, register=False):
    name = "test_indexes_read"
    fold_reads_indexes = True


@pytest.fixture
def indexes_seen():
    add(IndexesSeen)
    add(IndexesRead)
    yield
    remove("test_indexes_seen")
    remove("test_indexes_read")


def seen(projection) -> dict[int, tuple[bool, bool]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT position, plain, is_unique FROM proj_{projection}.seen ORDER BY position")
        return {position: (plain, unique) for position, plain, unique in cursor.fetchall()}


def indexes_of(projection) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [f"proj_{projection}"])
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.usefixtures("indexes_seen")
@pytest.mark.parametrize(("projection", "while_lanes_run"), [("indexes_seen", False), ("indexes_read", True)])
def test_a_fold_that_reads_no_plain_index_is_replayed_without_it_until_the_tail(projection, while_lanes_run):
    users(3)
    lanes = set(Event.objects.filter(stream__name__startswith="user-").values_list("position", flat=True))
    with prepared(projection=f"test_{projection}", shards=2) as job:
        tail = rename(0, "Later")
    job = runner.run_inline(job.pk)

    assert job.state == "succeeded", job.error
    assert seen(f"test_{projection}") == {
        **{position: (while_lanes_run, True) for position in lanes},
        tail: (True, True),
    }
    assert {"seen_stream", "seen_stream_position"} <= indexes_of(f"test_{projection}")


@pytest.mark.usefixtures("indexes_seen")
def test_a_restore_builds_the_plain_indexes_a_fold_does_not_read_after_its_lanes():
    users(2)
    run_projection("test_indexes_seen")
    snapshot = run("snapshot", projection="test_indexes_seen")
    assert snapshot.state == "succeeded", snapshot.error
    users(2, start=2)
    after = set(
        Event.objects.filter(type="UserCreated", position__gt=snapshot.result["position"]).values_list(
            "position", flat=True
        )
    )

    job = run("restore", projection="test_indexes_seen", snapshot=snapshot.result["snapshot"])
    assert job.state == "succeeded", job.error
    assert {
        position: found for position, found in seen("test_indexes_seen").items() if position in after
    } == {position: (False, True) for position in after}
    assert {"seen_stream", "seen_stream_position"} <= indexes_of("test_indexes_seen")


class BatchesSeen(Projection, register=False):
    """Notes the size of each batch it folds, set-based."""

    name = "test_batches_rows"
    categories = ("user",)
    batch_size = 1
    tables = ("CREATE TABLE batches (n serial PRIMARY KEY, events int NOT NULL)",)

    def apply_rows(self, cursor, rows):
        cursor.execute(f"INSERT INTO batches (events) SELECT count(*) FROM {rows}")


class BatchesSeenAsObjects(BatchesSeen, register=False):
    name = "test_batches_objects"

    def apply(self, cursor, events):
        cursor.execute("INSERT INTO batches (events) VALUES (%s)", [len(events)])


@pytest.mark.parametrize(
    ("projection", "cap", "sizes"),
    [
        (BatchesSeen, 0, [40, 40, 20]),  # forty live batches: the batch stays in PostgreSQL
        (BatchesSeenAsObjects, 0, [10] * 10),  # ten: the batch is held in Python
        (BatchesSeen, 25, [25] * 4),  # REPLAYDESK_REPLAY_BATCH_MAX
    ],
)
def test_a_replay_folds_bigger_batches_of_a_set_based_projection(projection, cap, sizes, settings):
    settings.REPLAYDESK_REPLAY_BATCH_MAX = cap
    users(100)
    add(projection)
    try:
        job = run("replay", projection=projection.name, shards=1)
        assert job.state == "succeeded", job.error
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT events FROM proj_{projection.name}.batches ORDER BY n")
            assert [events for (events,) in cursor.fetchall()] == sizes
    finally:
        remove(projection.name)


def test_a_single_stream_replay_repairs_one_entity_in_place():
    users(3)
    rename(1, "Right")
    run_projection("users_directory")
    sql("UPDATE proj_users_directory.users SET name = 'wrong', email = 'x' WHERE user_id IN ('1', '2')")

    job = run("replay", projection="users_directory", stream="user-1")
    assert job.state == "succeeded", job.error
    assert projected_users()["1"] == ("u1", "Right", "u1@example.com")
    assert projected_users()["2"][1] == "wrong"  # only the stream asked for
    assert job.result == {
        "stream": "user-1",
        "position": checkpoint("proj_users_directory"),
        "events_replayed": 2,
        "events_excluded": 0,
    }


def test_a_projection_without_a_forget_step_cannot_repair_one_stream():
    users(1)

    class NoForget(Projection, register=False):
        name = "test_no_forget"
        categories = ("user",)
        tables = ("CREATE TABLE seen (position bigint PRIMARY KEY)",)

        def apply(self, cursor, events):
            cursor.execute("INSERT INTO seen SELECT unnest(%s::bigint[])", [[e.position for e in events]])

    add(NoForget)
    try:
        with pytest.raises(JobParamsError) as refused:
            services.request_job(
                kind="replay",
                params={"projection": "test_no_forget", "stream": "user-0"},
                requested_by="o",
                reason="r",
            )
        assert "replay it whole" in refused.value.errors["stream"][0]
    finally:
        remove("test_no_forget")


# --- verify, rollback


def test_verify_finds_missing_extra_and_different_rows_with_samples():
    users(6)
    run_projection("users_directory")
    sql("DELETE FROM proj_users_directory.users WHERE user_id = '1'")
    sql("UPDATE proj_users_directory.users SET email = 'evil@example.com' WHERE user_id = '2'")
    sql("INSERT INTO proj_users_directory.users VALUES ('ghost', 'g', 'Ghost', 'g@example.com', now())")

    job = run("verify", projection="users_directory")
    table = job.result["tables"]["users"]
    assert (job.result["equal"], job.result["repaired"]) == (False, False)
    assert (table["missing"], table["extra"], table["different"]) == (1, 1, 1)
    assert table["samples"]["missing"][0]["user_id"] == "1"
    assert table["samples"]["extra"][0]["user_id"] == "ghost"
    assert table["samples"]["different"][0]["found"]["email"] == "evil@example.com"
    assert table["samples"]["different"][0]["expected"]["email"] == "u2@example.com"
    assert not schema_exists(f"proj_users_directory__rebuild_{job.pk}")  # the scratch schema is gone
    assert "ghost" in projected_users()  # and nothing was repaired


def test_verify_with_repair_swaps_in_the_rebuilt_schema():
    users(4)
    run_projection("users_directory")
    sql("DELETE FROM proj_users_directory.users")
    job = run("verify", projection="users_directory", repair=True)
    assert job.result["repaired"] and projected_users() == fold_users()
    assert run("verify", projection="users_directory").result["equal"]


def test_rollback_brings_back_the_schema_a_replay_replaced():
    users(3)
    run_projection("users_directory")
    sql("UPDATE proj_users_directory.users SET name = 'before the replay'")
    run("replay", projection="users_directory")
    assert projected_users() == fold_users()

    services.rollback_projection(projection="users_directory", actor="olivia")
    assert {row[1] for row in projected_users().values()} == {"before the replay"}
    services.rollback_projection(projection="users_directory", actor="olivia")  # and forward again
    assert projected_users() == fold_users()
    assert (
        Event.objects.filter(
            stream__name="console-consumer.users_directory", type="ProjectionRolledBack"
        ).count()
        == 2
    )


def test_rollback_without_a_previous_schema_says_so():
    users(1)
    run_projection("users_directory")
    with pytest.raises(services.JobError, match="no previous schema"):
        services.rollback_projection(projection="users_directory", actor="olivia")
