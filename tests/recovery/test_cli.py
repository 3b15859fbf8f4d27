"""The job commands: `replaydesk snapshot|replay|restore|resync|verify|jobs`, against real PostgreSQL and
Redis; exit codes and Ctrl-C through a real `replaydesk` process."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from recovery import follow, services
from recovery.models import Job, Snapshot
from recovery.terminal import format_bytes, render_progress
from streams.consumers import run_projection
from streams.services import append_events
from tests.streams.projection_helpers import create_user, fold_users, projected_users
from tests.streams.test_projection_crashes import this_database_url
from tests.streams.test_sinks import make_sink, receiver  # noqa: F401 — the webhook receiver fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _snapshot_dir(settings, tmp_path):
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def run(*args, stdout=None, stderr=None) -> str:
    out = stdout if stdout is not None else io.StringIO()
    call_command(*args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


def users(n, start=0):
    for uid in range(start, start + n):
        create_user(str(uid))


def rename(uid, name, actor="svc-bad-deploy"):
    append_events(
        stream=f"user-{uid}",
        events=[{"type": "UserNameSet", "data": {"user_id": str(uid), "name": name}}],
        actor=actor,
    )


def damage_users():
    with connection.cursor() as cursor:
        cursor.execute("UPDATE proj_users_directory.users SET name = 'damaged' WHERE user_id = '1'")


def live_projection(n=10):
    users(n)
    run_projection("users_directory")


# --- each command, run here with --inline


def test_replay_inline_rebuilds_the_projection_and_prints_its_progress_log_and_summary():
    live_projection(30)
    damage_users()

    output = run("replay", "users_directory", "--reason", "damaged rows", "--inline", "--shards", "2")

    job = Job.objects.get()
    assert (job.state, job.kind, job.reason) == ("succeeded", "replay", "damaged rows")
    assert job.requested_by == follow.default_actor() and job.requested_by.startswith("cli")
    assert projected_users() == fold_users()
    lines = output.splitlines()
    assert lines[0] == f"job {job.pk}: replay users_directory is queued"
    assert any(line.endswith("stage: replaying (30 events)") for line in lines)
    assert any("100%  30/30 events" in line and line.endswith("done") for line in lines)
    assert lines[-2] == (
        f"users_directory rebuilt and swapped in at position {job.result['position']:,}: "
        "30 events replayed, 0 excluded"
    )
    assert lines[-1] == "the schema it replaced is kept as proj_users_directory__previous until the next swap"


def test_replay_leaves_out_the_events_of_a_bad_deploy():
    live_projection(5)
    rename(2, "garbage")
    rename(3, "also garbage")
    run_projection("users_directory")

    output = run(
        "replay",
        "users_directory",
        "--exclude-actor",
        "svc-bad-deploy",
        "--exclude-type",
        "UserNameSet",
        "--reason",
        "INC-42 bad deploy",
        "--inline",
    )

    assert "5 events replayed, 2 excluded" in output
    assert projected_users()["2"][1] == "User 2"
    assert Job.objects.get().params["exclude"]["actor"] == "svc-bad-deploy"


def test_replay_of_one_stream_repairs_it_in_place():
    live_projection(5)
    damage_users()

    output = run("replay", "users_directory", "--stream", "user-1", "--reason", "one bad row", "--inline")

    assert "user-1 replayed in place in users_directory up to position" in output
    assert ": 1 events replayed, 0 excluded" in output
    assert projected_users() == fold_users()


def test_snapshot_inline_takes_a_snapshot_and_says_where():
    live_projection(4)

    output = run("snapshot", "users_directory", "--reason", "before the migration", "--inline")

    snapshot = Snapshot.objects.get()
    assert output.splitlines()[-1] == (
        f"snapshot {snapshot.pk} of users_directory: {snapshot.name} at position {snapshot.position:,}, "
        f"{snapshot.rows:,} rows, {format_bytes(snapshot.bytes)}"
    )
    assert snapshot.rows == 4 + 4 + 1  # users, stream checkpoints, the checkpoint


def test_restore_inline_prints_the_rpo_and_rto():
    live_projection(6)
    run("snapshot", "users_directory", "--reason", "nightly", "--inline")
    snapshot = Snapshot.objects.get()
    users(3, start=6)
    damage_users()

    output = run("restore", "users_directory", "--reason", "restore drill", "--inline")

    restore = Job.objects.get(kind="restore")
    assert restore.params["snapshot"] == snapshot.pk  # the latest snapshot, when none is named
    assert projected_users() == fold_users()
    assert (
        f"users_directory restored from snapshot {snapshot.name} (position {snapshot.position:,})" in output
    )
    assert "3 events replayed, 0 excluded" in output
    rpo_rto = output.splitlines()[-2]
    assert rpo_rto == f"RPO 0 events lost   RTO {restore.result['rto_seconds']:.1f} s to recover"


def test_verify_says_equal_or_names_the_differing_tables_and_repairs_when_asked():
    live_projection(5)

    assert "users_directory agrees with the log at position" in run(
        "verify", "users_directory", "--reason", "nightly check", "--inline"
    )

    damage_users()
    out = io.StringIO()
    with pytest.raises(CommandError) as differs:
        run("verify", "users_directory", "--reason", "after the incident", "--inline", stdout=out)
    assert differs.value.returncode == 2  # like diff(1), for scripts and cron
    output = out.getvalue()
    assert "users_directory differs from the log at position" in output
    assert "  users: 0 missing, 0 extra, 1 different" in output
    assert "nothing was changed; replaydesk verify users_directory --repair swaps in" in output
    assert projected_users()["1"][1] == "damaged"

    output = run("verify", "users_directory", "--repair", "--reason", "fix it", "--inline")
    assert "repaired: the rebuilt schema was swapped in" in output
    assert projected_users() == fold_users()


def test_resync_inline_resends_events_to_the_sink(receiver):  # noqa: F811
    users(5)
    make_sink(receiver, rate_per_second=1000)

    output = run("resync", "crm_hook", "--from-position", "0", "--reason", "CRM lost a day", "--inline")

    job = Job.objects.get()
    assert output.splitlines()[-1] == (
        f"re-sent 5 events to crm_hook (after position 0 up to {job.params['up_to_position']:,})"
    )
    assert len(receiver.applied) == 5

    output = run(
        "resync", "crm_hook", "--stream", "user-1", "--stream", "user-3", "--reason", "two", "--inline"
    )
    assert "re-sent 2 events to crm_hook" in output
    assert len(receiver.requests[-1]["ids"]) == 2


def test_json_prints_the_finished_job_as_one_object_and_progress_elsewhere():
    live_projection(3)
    stderr = io.StringIO()

    output = run("verify", "users_directory", "--reason", "check", "--inline", "--json", stderr=stderr)

    job = json.loads(output)
    assert (job["kind"], job["state"], job["result"]["equal"]) == ("verify", "succeeded", True)
    assert job["progress"]["stage"] == "done" and job["finished_at"]
    assert "100%" in stderr.getvalue()


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    live_projection(8)
    terminal = Terminal()

    run("replay", "users_directory", "--reason", "bar", "--inline", stdout=terminal)

    output = terminal.getvalue()
    assert "\rreplay users_directory  [##################] 100%  8/8 events" in output
    assert "\r\033[K" in output  # log lines clear the bar before they are printed


# --- dry runs and refusals


def test_dry_run_prints_the_estimate_and_creates_nothing():
    live_projection(12)
    rename(3, "bad")

    output = run("replay", "users_directory", "--exclude-actor", "svc-bad-deploy", "--dry-run")

    assert not Job.objects.exists()
    assert output.splitlines()[0] == "dry run of replay users_directory (nothing was created):"
    assert "  events  12 in 12 streams (1 excluded)" in output
    assert "assumed 5,000 events/s" in output
    estimate = json.loads(run("replay", "users_directory", "--dry-run", "--json"))
    assert (estimate["events"], estimate["streams"], estimate["excluded"]) == (13, 12, 0)
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("args", "messages"),
    [
        (["replay", "users_directory"], ["--reason: say why this job should run"]),
        (
            ["replay", "nope", "--reason", "r", "--shards", "99"],
            ["PROJECTION: no projection is named 'nope'", "--shards: must be a whole number from 1 to 32"],
        ),
        (
            ["replay", "users_directory", "--reason", "r", "--exclude-event", "not-an-id"],
            ["--exclude-event: 'not-an-id' is not an event id"],
        ),
        (["restore", "users_directory", "--reason", "r"], ["--snapshot: users_directory has no snapshot"]),
        (["restore", "users_directory", "--reason", "r", "--before", "yesterday"], ["--before: must be"]),
        (["resync", "nosuch", "--reason", "r", "--from-position", "0"], ["SINK: no sink is named 'nosuch'"]),
        (
            ["snapshot", "users_directory", "--reason", "r", "--dry-run", "--no-wait", "--inline"],
            ["--inline"],
        ),
    ],
)
def test_bad_parameters_are_refused_field_by_field_and_create_nothing(args, messages):
    live_projection(2)
    with pytest.raises(CommandError) as refused:
        run(*args)
    for message in messages:
        assert message in str(refused.value)
    assert refused.value.returncode != 0
    assert not Job.objects.exists()


def test_no_wait_prints_the_id_and_leaves_the_job_queued():
    live_projection(2)

    output = run("replay", "users_directory", "--reason", "later", "--no-wait")

    job = Job.objects.get()
    assert output == f"{job.pk}\n"
    assert job.state == "queued"


def test_a_second_job_on_the_same_projection_names_the_one_in_the_way():
    live_projection(2)
    first = run("replay", "users_directory", "--reason", "first", "--no-wait").strip()

    with pytest.raises(CommandError) as refused:
        run("verify", "users_directory", "--reason", "second")

    assert f"job {first} (replay, queued) is working on users_directory" in str(refused.value)
    assert f"replaydesk jobs --cancel {first}" in str(refused.value)
    assert Job.objects.count() == 1


# --- the end of a job


def test_a_failed_job_exits_1_with_its_error_and_how_to_retry():
    users(2)  # no live schema: nothing to verify against

    with pytest.raises(CommandError) as failed:
        run("verify", "users_directory", "--reason", "check", "--inline")

    job = Job.objects.get()
    assert job.state == "failed"
    assert failed.value.returncode == 1
    assert f"job {job.pk} (verify users_directory) failed: users_directory has no live schema" in str(
        failed.value
    )
    assert f"replaydesk jobs --retry {job.pk}" in str(failed.value)


def test_a_job_cancelled_while_followed_exits_1(monkeypatch):
    monkeypatch.setattr(follow, "NO_WORKER_HINT_SECONDS", 0.3)
    live_projection(2)
    job_id = int(run("replay", "users_directory", "--reason", "r", "--no-wait"))

    def cancel_soon():
        time.sleep(1)
        services.cancel_job(job_id=job_id, actor="olivia")
        connection.close()

    threading.Thread(target=cancel_soon).start()
    output = io.StringIO()
    with pytest.raises(CommandError) as stopped:
        run("jobs", "--follow", str(job_id), stdout=output)

    assert f"no worker has started job {job_id} yet" in output.getvalue()  # said once, while queued
    assert output.getvalue().count("no worker has started") == 1
    assert stopped.value.returncode == 1
    assert f"job {job_id} (replay users_directory) was cancelled by olivia" in str(stopped.value)


# --- replaydesk jobs


def test_jobs_lists_newest_first_with_filters():
    live_projection(2)
    run("replay", "users_directory", "--reason", "nightly", "--inline")
    snapshot = int(run("snapshot", "users_directory", "--reason", "a reason " * 10, "--no-wait"))

    lines = run("jobs").splitlines()

    assert lines[0].split() == [
        "ID",
        "KIND",
        "TARGET",
        "STATE",
        "STAGE",
        "PROGRESS",
        "BY",
        "CREATED",
        "REASON",
    ]
    assert [line.split()[:6] for line in lines[1:]] == [
        [str(snapshot), "snapshot", "users_directory", "queued", "-", "-"],
        [str(snapshot - 1), "replay", "users_directory", "succeeded", "done", "100%"],
    ]
    assert "100% 2/2" in lines[2] and lines[2].endswith("nightly")
    assert lines[1].endswith("a reason a r…")  # long reasons are cut
    replays = [json.loads(line) for line in run("jobs", "--kind", "replay", "--json").splitlines()]
    assert [(j["id"], j["state"]) for j in replays] == [(snapshot - 1, "succeeded")]
    assert run("jobs", "--state", "failed") == "No jobs match.\n"


def test_jobs_cancel_cancels_a_queued_job_and_refuses_twice():
    live_projection(2)
    job_id = run("replay", "users_directory", "--reason", "r", "--no-wait").strip()

    output = run("jobs", "--cancel", job_id, "--actor", "olivia")

    assert output == f"job {job_id} (replay users_directory) cancelled; it had not started\n"
    job = Job.objects.get()
    assert (job.state, job.cancel_requested_by) == ("cancelled", "olivia")
    with pytest.raises(CommandError, match="has cancelled already"):
        run("jobs", "--cancel", job_id)


def test_jobs_retry_queues_a_failed_job_and_follows_it_to_the_end():
    users(3)
    with pytest.raises(CommandError):
        run("verify", "users_directory", "--reason", "check", "--inline")
    job = Job.objects.get()
    run_projection("users_directory")  # what was missing

    output = run("jobs", "--retry", str(job.pk), "--inline")

    assert output.splitlines()[0] == f"job {job.pk} queued again; it goes on from stage start"
    assert "users_directory agrees with the log" in output
    job.refresh_from_db()
    assert job.state == "succeeded"
    with pytest.raises(CommandError, match=f"only a failed job can be retried; job {job.pk} is succeeded"):
        run("jobs", "--retry", str(job.pk))


def test_jobs_refuses_an_unknown_job():
    with pytest.raises(CommandError, match="no job has id 999"):
        run("jobs", "--cancel", "999")
    with pytest.raises(CommandError, match="no job has id 999"):
        run("jobs", "--follow", "999")


# --- a real `replaydesk` process: exit codes and Ctrl-C


def replaydesk(*args, **kwargs) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": this_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        # As in the test process (tests/conftest.py): these tests are about commands, not approvals.
        "REPLAYDESK_APPROVALS": "replay=0,restore=0,resync=0,snapshot=0,verify=0",
        "PYTHONUNBUFFERED": "1",
        **kwargs.pop("env", {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "console.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_the_exit_code_is_1_when_the_job_fails_and_0_when_it_succeeds(tmp_path):
    users(2)
    process = replaydesk("verify", "users_directory", "--reason", "check", "--inline")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, out + err
    assert "failed: users_directory has no live schema to verify" in err

    run_projection("users_directory")
    process = replaydesk("verify", "users_directory", "--reason", "check", "--inline")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, out + err
    assert "users_directory agrees with the log" in out


def test_ctrl_c_stops_following_but_not_the_job_and_says_how_to_cancel_it():
    live_projection(2)
    process = replaydesk("replay", "users_directory", "--reason", "no worker here")
    first = process.stdout.readline()  # the job exists once this is printed
    job = Job.objects.get()
    assert first == f"job {job.pk}: replay users_directory is queued\n"
    time.sleep(1)

    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 130, out + err
    assert f"stopped following job {job.pk}; the job goes on." in err
    assert f"cancel it: replaydesk jobs --cancel {job.pk}" in err
    job.refresh_from_db()
    assert job.state == "queued"


# --- the progress line


def test_the_progress_bar_draws_percentage_counts_rate_eta_and_stage():
    line = render_progress(
        label="replay users_directory",
        done=12_345,
        total=23_700,
        rate=3210.4,
        eta_seconds=3.6,
        stage="catching_up",
    )
    assert line == (
        "replay users_directory  [#########.........] 52%  12,345/23,700 events  3,210/s  ETA 4s  catching_up"
    )


def test_the_progress_bar_with_no_total_yet_shows_the_count_only():
    line = render_progress(
        label="resync crm_hook", done=1_500, total=None, rate=None, eta_seconds=None, stage="preparing"
    )
    assert line == "resync crm_hook  [..................]  1,500 events  preparing"


@pytest.mark.parametrize(
    ("done", "total", "rate", "eta", "expected"),
    [
        (0, 0, None, None, "x  [##################] 100%  0/0 events  done"),
        (130, 120, 2.5, 3.0, "x  [##################] 100%  130/120 events  2.5/s  done"),
        (1, 1000, 0.5, 200, "x  [..................] 0%  1/1,000 events  0.5/s  ETA 3m 20s  done"),
        (500, 1000, 12.0, 7300, "x  [#########.........] 50%  500/1,000 events  12/s  ETA 2h 01m  done"),
    ],
)
def test_the_progress_bar_at_the_edges(done, total, rate, eta, expected):
    assert render_progress(label="x", done=done, total=total, rate=rate, eta_seconds=eta, stage="done") == (
        expected
    )


def test_the_plain_progress_line_has_no_bar():
    line = render_progress(
        label="snapshot access",
        done=3,
        total=4,
        rate=None,
        eta_seconds=None,
        stage="copying",
        unit="rows",
        bar=False,
    )
    assert line == "snapshot access  75%  3/4 rows  copying"
