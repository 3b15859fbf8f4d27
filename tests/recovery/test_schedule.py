"""Scheduled snapshots with retention, the nightly verification, and the reconciler's nudges."""

import datetime as dt
import os
import time

import pytest
from django.utils import timezone

from recovery import runner, schedule, services
from recovery.models import Job, JobLane, Snapshot
from streams.consumers import run_projection
from tests.streams.projection_helpers import create_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]


@pytest.fixture(autouse=True)
def _settings(settings, tmp_path, fresh_projection_schemas):
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"
    settings.REPLAYDESK_SNAPSHOT_EVERY_MINUTES = 60
    settings.REPLAYDESK_SNAPSHOT_KEEP = 2
    settings.REPLAYDESK_VERIFY_NIGHTLY_AT = ""
    create_user("1")
    run_projection("users_directory")


def scheduled(kind):
    return list(Job.objects.filter(kind=kind, requested_by="schedule").order_by("pk"))


def test_a_projection_without_a_recent_snapshot_gets_one_and_only_one():
    started = schedule.run_schedule()
    assert [(job.kind, job.target) for job in started] == [("snapshot", "users_directory")]
    assert started[0].reason.startswith("scheduled snapshot")
    assert schedule.run_schedule() == []  # asked for already
    runner.run_inline(started[0].pk)
    assert schedule.run_schedule() == []  # taken within the hour
    assert schedule.run_schedule(now=timezone.now() + dt.timedelta(minutes=61))[0].kind == "snapshot"


def test_projections_that_never_ran_are_not_snapshotted():
    assert {job.target for job in schedule.run_schedule()} == {"users_directory"}  # not access


def test_retention_keeps_the_newest_scheduled_snapshots_and_every_asked_for_one(settings):
    settings.REPLAYDESK_SNAPSHOT_KEEP = 10
    later = timezone.now()
    for _ in range(4):
        later += dt.timedelta(minutes=61)
        (job,) = schedule.run_schedule(now=later)
        runner.run_inline(job.pk)
    by_hand = Job.objects.create(
        kind="snapshot",
        target="x",
        params={},
        params_sha256="",
        state="succeeded",
        reason="r",
        requested_by="o",
    )
    Snapshot.objects.filter(pk=Snapshot.objects.order_by("pk").first().pk).update(
        scheduled=False, job=by_hand
    )

    settings.REPLAYDESK_SNAPSHOT_KEEP = 2
    dropped = schedule.prune()

    kept = Snapshot.objects.order_by("taken_at")
    assert len(dropped) == 1 and kept.count() == 3  # the 2 newest scheduled, and the 1 asked for
    assert not kept.first().scheduled
    root = settings.REPLAYDESK_SNAPSHOT_DIR / "users_directory"
    assert sorted(p.name for p in root.iterdir()) == sorted(kept.values_list("name", flat=True))


def test_a_person_named_schedule_keeps_their_snapshots_and_does_not_hold_off_the_schedule(settings):
    settings.REPLAYDESK_SNAPSHOT_KEEP = 1
    mine = services.request_job(
        kind="snapshot", params={"projection": "users_directory"}, requested_by="schedule", reason="mine"
    )
    runner.run_inline(mine.pk)
    (due,) = schedule.run_schedule()  # a person's snapshot is not the schedule's
    runner.run_inline(due.pk)
    later = schedule.run_schedule(now=timezone.now() + dt.timedelta(minutes=61))
    runner.run_inline(later[0].pk)

    schedule.prune()

    assert not Snapshot.objects.get(job=mine).scheduled
    assert list(Snapshot.objects.filter(scheduled=False).values_list("job", flat=True)) == [mine.pk]
    assert Snapshot.objects.filter(scheduled=True).count() == 1  # the schedule's own, pruned to KEEP


def test_a_half_written_snapshot_left_by_a_killed_job_is_cleaned_up_after_an_hour(settings):
    staging = settings.REPLAYDESK_SNAPSHOT_DIR / "users_directory" / ".taking-20260101T000000-123"
    staging.mkdir(parents=True)
    schedule.prune()
    assert staging.exists()  # it may still be being written
    old = time.time() - 2 * 3600
    os.utime(staging, (old, old))
    schedule.prune()
    assert not staging.exists()


def test_the_nightly_verification_runs_once_a_night_when_turned_on(settings):
    settings.REPLAYDESK_SNAPSHOT_EVERY_MINUTES = 0
    assert schedule.run_schedule() == []  # off by default
    settings.REPLAYDESK_VERIFY_NIGHTLY_AT = "03:00"
    night = timezone.now().astimezone(dt.UTC).replace(hour=2, minute=59)
    assert schedule.run_schedule(now=night) == []
    (job,) = schedule.run_schedule(now=night + dt.timedelta(minutes=2))
    assert (job.kind, job.target, job.params["repair"]) == ("verify", "users_directory", False)
    # Requested at that night's 03:01, whatever the time of day the test runs at.
    Job.objects.filter(pk=job.pk).update(created_at=night + dt.timedelta(minutes=2))
    runner.run_inline(job.pk)
    assert schedule.run_schedule(now=night + dt.timedelta(hours=5)) == []
    assert len(schedule.run_schedule(now=night + dt.timedelta(days=1, minutes=2))) == 1


def test_the_reconciler_nudges_jobs_whose_heartbeat_stopped_and_leaves_live_ones_alone():
    stale = Job.objects.create(
        kind="snapshot",
        target="users_directory",
        params={"projection": "users_directory"},
        params_sha256="",
        state="running",
        reason="r",
        requested_by="o",
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5),
    )
    lost = Job.objects.create(
        kind="snapshot",
        target="access",
        params={"projection": "access"},
        params_sha256="",
        state="queued",
        reason="r",
        requested_by="o",
        queued_at=timezone.now() - dt.timedelta(minutes=5),
    )
    Job.objects.create(
        kind="verify",
        target="other",
        params={},
        params_sha256="",
        state="running",
        reason="r",
        requested_by="o",
        heartbeat_at=timezone.now(),
    )
    assert sorted(runner.reconcile(stale_seconds=30)) == sorted([stale.pk, lost.pk])
    assert runner.reconcile(stale_seconds=30) == []  # one nudge per stale period


def test_the_reconciler_nudges_a_lane_that_stopped_while_the_others_went_on():
    job = Job.objects.create(
        kind="replay",
        target="users_directory",
        params={"projection": "users_directory"},
        params_sha256="",
        state="running",
        stage="replaying",
        reason="r",
        requested_by="o",
        heartbeat_at=timezone.now(),  # the other lanes keep the job's heartbeat fresh
    )
    moving = JobLane.objects.create(job=job, lane=0, position=0)
    stopped = JobLane.objects.create(job=job, lane=1, position=0)
    JobLane.objects.filter(pk=stopped.pk).update(moved_at=timezone.now() - dt.timedelta(minutes=2))
    JobLane.objects.create(
        job=job, lane=2, position=0, finished=True, moved_at=timezone.now() - dt.timedelta(minutes=2)
    )

    assert runner.reconcile(stale_seconds=30) == [job.pk]
    moving.refresh_from_db()
    stopped.refresh_from_db()
    assert stopped.moved_at > moving.moved_at - dt.timedelta(seconds=1)  # nudged once, then left to work
    assert runner.reconcile(stale_seconds=30) == []
