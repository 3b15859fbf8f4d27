"""Fault drills: `replaydesk drill` plays a restore from an old backup in a scratch database and reports
RPO, RTO, events replayed and re-sent; its checks fail when the recovery is wrong; the console starts one
as a job whose page shows the report. The store a drill is started from is never touched."""

import json
import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from recovery import params as job_params
from recovery.drill import REPORT_KEYS, admin_connection, sandbox, scratch_name
from recovery.models import Job
from recovery.runner import run_inline
from recovery.services import cancel_job, request_job
from streams.models import Event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]


@pytest.fixture(autouse=True)
def snapshots_aside(settings, tmp_path, fresh_projection_schemas):
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"


def scratch_databases() -> list[str]:
    with admin_connection() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%\\_drill%'")
        return [row[0] for row in rows]


def test_the_drill_command_restores_from_an_old_backup_and_reports_rpo_and_rto():
    out, err = StringIO(), StringIO()

    call_command("drill", "--quick", "--json", stdout=out, stderr=err)

    report = json.loads(out.getvalue())
    assert set(REPORT_KEYS) <= set(report)
    assert report["passed"] is True, report["checks"]
    assert report["rpo_events"] == 0
    assert report["events_replayed"] > 0 and report["events_excluded"] == sandbox.QUICK.bad_events
    damage = report["damage"]
    # Everything good the downstream lost came again (its lost effects include the bad events, which
    # were not re-sent).
    good_lost = damage["downstream_effects_lost"] - damage["bad_events_received_downstream"]
    assert report["downstream_resent"] >= good_lost > 0
    assert report["damage"]["bad_events_received_downstream"] == sandbox.QUICK.bad_events
    assert report["damage"]["rows_deleted"] + report["damage"]["rows_rewritten"] > 0
    assert 0 < report["rto_seconds"] < 120
    assert "[recovering]" in err.getvalue()  # the stages as they happen
    assert Event.objects.count() == 0, "the drill wrote nothing into the store it was started from"
    assert scratch_name() not in scratch_databases(), "its scratch database was dropped"


def test_the_source_drill_writes_back_what_a_restore_lost_and_the_application_loads_it_all():
    out, err = StringIO(), StringIO()

    call_command("drill", "--source", "eventsourcing", "--quick", "--json", stdout=out, stderr=err)

    report = json.loads(out.getvalue())
    assert report["passed"] is True, report["checks"]
    assert report["rpo_events"] == 0
    assert report["events_written_back"] == report["events_lost_by_restore"] > 0
    assert "restored from an old backup" in report["follower_refused"]
    assert report["checks"]["second_write_back_wrote"] == 0
    assert 0 < report["rto_seconds"] < 120
    assert "[recovering]" in err.getvalue()
    assert Event.objects.count() == 0, "the drill wrote nothing into the store it was started from"
    left = [name for name in scratch_databases() if name.startswith(scratch_name())]
    assert left == [], "its scratch databases (the store's, the application's and its backup) were dropped"


def test_a_recovery_that_forgets_the_bad_events_fails_the_drills_checks(settings, monkeypatch):
    """Played here (the test database is a scratch database too), with the exclusion sabotaged: the
    bad events come back in the projection and downstream, and the checks say so."""
    settings.REPLAYDESK_CONSUMERS_WAKE = False
    monkeypatch.setattr(sandbox, "QUICK", sandbox.Sizes(150, 2_000, 300, 40, 300, 5_000))
    run = sandbox.run_job

    def without_exclusions(kind, **params):
        params.pop("exclude", None)
        return run(kind, **params)

    monkeypatch.setattr(sandbox, "run_job", without_exclusions)

    report = sandbox.play(quick=True, say=lambda stage, message: None)

    assert report["passed"] is False
    assert report["checks"]["projection_rows_wrong"] > 0
    assert report["checks"]["downstream_bad_events_in_effect"] == 40
    assert report["checks"]["downstream_events_missing"] == 0


def test_a_drill_started_from_its_page_runs_as_a_job_and_shows_its_report(client, operator):
    client.force_login(operator)
    started = client.post("/drills/start", {"size": "quick", "reason": "quarterly drill"})
    job = Job.objects.get(kind=Job.Kind.DRILL)
    assert started.status_code == 302 and started["Location"] == f"/jobs/{job.pk}/"
    assert (job.params, job.target, job.requested_by) == ({"quick": True}, "drill-sandbox", operator.username)

    job = run_inline(job.pk)

    assert job.state == Job.State.SUCCEEDED, job.error
    assert job.result["passed"] is True and job.done == job.total
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert "The drill passed" in page
    assert f'data-figure="rpo_events">{job.result["rpo_events"]} events lost' in page
    listing = client.get("/drills/").content.decode()
    assert f'data-job="{job.pk}"' in listing and "passed" in listing
    assert scratch_name(job.pk) not in scratch_databases()


def test_a_drills_scratch_database_is_named_after_the_store_it_is_started_from():
    """Two stores on one server (production and staging, the tests' workers) drill side by side."""
    store = connection.settings_dict["NAME"]
    assert (scratch_name(), scratch_name(7)) == (f"{store}_drill", f"{store}_drill_7")


def test_a_drill_job_takes_only_whether_it_is_quick():
    with pytest.raises(job_params.JobParamsError) as refused:
        request_job(kind="drill", params={"quick": "yes", "projection": "x"}, requested_by="o", reason="r")
    assert set(refused.value.errors) == {"quick", "projection"}
    assert not Job.objects.exists()


def test_a_cancelled_drill_stops_and_drops_its_scratch_database():
    job = request_job(kind="drill", params={"quick": True}, requested_by="olivia", reason="try it")

    def work() -> None:
        try:
            run_inline(job.pk)
        finally:
            connection.close()  # this thread's own

    running = threading.Thread(target=work)
    running.start()
    deadline = time.monotonic() + 60
    while Job.objects.get(pk=job.pk).stage not in ("loading", "snapshot", "writing"):
        assert time.monotonic() < deadline, "the drill never got going"
        time.sleep(0.1)
    assert scratch_name(job.pk) in scratch_databases()

    cancel_job(job_id=job.pk, actor="olivia")
    running.join(timeout=60)

    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert scratch_name(job.pk) not in scratch_databases()
