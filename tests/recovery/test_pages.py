"""The recovery pages through Django's test client: the jobs list, the new-job form with its dry run, a job's
page and its polled progress, cancel and retry, snapshots, the dashboard's running jobs and a consumer's
recovery panel. Jobs run to their end in this process (recovery.runner.run_inline)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from recovery import runner, selectors, services
from recovery.models import Job, JobLogLine, Snapshot
from streams import sink_config
from streams.consumers import run_projection
from streams.models import Event
from tests.streams.projection_helpers import create_user, fold_users, projected_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _snapshot_dir(settings, tmp_path):
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"


@pytest.fixture
def directory():
    """The users directory over ten users, caught up."""
    for uid in range(10):
        create_user(str(uid))
    run_projection("users_directory")


def request(kind: str, reason: str = "drill", **params) -> Job:
    return services.request_job(kind=kind, params=params, requested_by="olivia", reason=reason)


def run(kind: str, **params) -> Job:
    return runner.run_inline(request(kind, **params).pk)


def form(**changes) -> dict[str, str]:
    """What an operator fills in: a replay of the users directory."""
    return {"kind": "replay", "projection": "users_directory", "reason": "names were damaged", **changes}


def field_errors(response, field: str) -> str:
    html = response.content.decode()
    start = html.find(f'id="id_{field}_error"')
    return html[start : html.find("</ul>", start)] if start != -1 else ""


def rows(response) -> list[str]:
    """The job ids of a jobs table, in the order shown."""
    return re.findall(r'<tr class="job" data-job="(\d+)"', response.content.decode())


def checked_kind(response) -> str:
    return re.search(r'name="kind" value="(\w+)"[^>]* checked', response.content.decode()).group(1)


def audit_count() -> int:
    return Event.objects.filter(stream__category="console").count()


# --- login


def test_every_page_and_action_asks_for_a_login(client, directory):
    job = request("verify", projection="users_directory")
    for url in ("/jobs/", "/jobs/new", f"/jobs/{job.pk}/", f"/jobs/{job.pk}/progress", "/snapshots/"):
        response = client.get(url, secure=True)
        assertRedirects(response, f"/login/?next={url}", fetch_redirect_response=False)
    response = client.post(f"/jobs/{job.pk}/cancel", secure=True)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    response = client.post("/jobs/new", form(), secure=True)
    assert response.status_code == 302 and Job.objects.count() == 1
    response = client.get(f"/jobs/{job.pk}/progress", secure=True, **HTMX)
    assert response["HX-Redirect"].startswith("/login/")
    job.refresh_from_db()
    assert job.state == "queued"


# --- the jobs list


def test_the_jobs_list_shows_each_job_newest_first(browser_client, directory):
    done = run("replay", projection="users_directory")
    waiting = request("verify", projection="users_directory", reason="nightly check")

    response = browser_client.get("/jobs/", secure=True)

    assert rows(response) == [str(waiting.pk), str(done.pk)]
    html = response.content.decode()
    row = html[html.find(f'data-job="{done.pk}"') :]
    row = row[: row.find("</tr>")]
    for text in (
        "replay",
        "users_directory",
        "succeeded",
        "olivia",
        f'value="{done.total}" max="{done.total}"',
    ):
        assert text in row
    assertContains(response, f'<a href="/jobs/{waiting.pk}/">Job {waiting.pk}</a>', html=True)
    assertContains(response, 'aria-current="page">Jobs</a>')


def test_the_jobs_list_filters_by_kind_and_state(browser_client, directory):
    replay = run("replay", projection="users_directory")
    verify = request("verify", projection="access")
    snapshot = run("snapshot", projection="users_directory")

    assert rows(browser_client.get("/jobs/?kind=replay", secure=True)) == [str(replay.pk)]
    assert rows(browser_client.get("/jobs/?state=queued", secure=True)) == [str(verify.pk)]
    both = browser_client.get("/jobs/?kind=snapshot&state=succeeded", secure=True)
    assert rows(both) == [str(snapshot.pk)]
    assertContains(both, '<option value="snapshot" selected>snapshot</option>', html=True)
    assertContains(browser_client.get("/jobs/?kind=restore", secure=True), "No job matches these filters")

    bad = browser_client.get("/jobs/?kind=rebuild", secure=True)
    assert bad.status_code == 400
    assertContains(bad, "must be one of snapshot, restore, replay, resync, verify", status_code=400)


def test_the_jobs_list_pages_to_older_jobs_with_a_cursor(browser_client, directory):
    jobs = [run("snapshot", projection="users_directory") for _ in range(5)]
    newest_first = [str(job.pk) for job in reversed(jobs)]

    first = browser_client.get("/jobs/?kind=snapshot&limit=2", secure=True)
    assert rows(first) == newest_first[:2]
    older = (
        re.search(r'id="jobs-older" href="([^"]+)"', first.content.decode()).group(1).replace("&amp;", "&")
    )
    assert f"before={newest_first[1]}" in older and "kind=snapshot" in older

    second = browser_client.get("/jobs/" + older, secure=True)
    assert rows(second) == newest_first[2:4]
    third_url = re.search(r'id="jobs-older" href="([^"]+)"', second.content.decode()).group(1)
    third = browser_client.get("/jobs/" + third_url.replace("&amp;", "&"), secure=True)
    assert rows(third) == newest_first[4:]
    assertNotContains(third, 'id="jobs-older"')
    assertContains(third, 'id="jobs-newest"')


# --- the new-job form


def test_the_form_is_prefilled_from_its_link(browser_client, directory):
    response = browser_client.get("/jobs/new?kind=verify&projection=access", secure=True)

    assert response.status_code == 200
    assert checked_kind(response) == "verify"
    assertContains(response, '<option value="access" selected>access</option>', html=True)


def test_the_form_chooses_no_kind_for_the_operator_and_asks_for_one(browser_client, directory):
    page = browser_client.get("/jobs/new", secure=True)
    kindless = browser_client.post("/jobs/new", form(kind=""), secure=True)

    assert page.status_code == 200
    assert not re.search(r'name="kind"[^>]* checked', page.content.decode())
    assertContains(page, "Choose a kind above")
    assertContains(kindless, "Choose the kind of job.", status_code=400)
    assert Job.objects.count() == 0


def test_the_snapshot_is_chosen_from_the_snapshots_by_name_time_and_size(browser_client, directory):
    taken = run("snapshot", projection="users_directory")
    snapshot = Snapshot.objects.get(pk=taken.result["snapshot"])

    response = browser_client.get(f"/jobs/new?kind=restore&snapshot={snapshot.pk}", secure=True)
    started = browser_client.post(
        "/jobs/new", form(kind="restore", snapshot=str(snapshot.pk), reason="undo"), secure=True
    )

    html = response.content.decode()
    option = re.search(rf'<option value="{snapshot.pk}"[^>]*>([^<]*)</option>', html)
    assert checked_kind(response) == "restore"
    assert snapshot.name in option.group(1) and snapshot.taken_at.strftime("%Y-%m-%d %H:%M") in option.group(
        1
    )
    assert re.search(r"\d+(\.\d)? (bytes|KB|MB)", option.group(1))
    assert "selected" in option.group(0)
    assert "Snapshot id" not in html
    assert started.status_code == 302
    assert Job.objects.get(kind="restore").params["snapshot"] == snapshot.pk


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("2026-01-31 14:30", "2026-01-31T14:30:00+00:00"), ("2026-01-31", "2026-01-31T00:00:00+00:00")],
)
def test_a_time_is_read_as_its_hint_says(typed, meant):
    from recovery.forms import JobForm

    form = JobForm({"kind": "replay", "from_time": typed, "exclude_recorded_after": typed})

    assert form.is_valid(), form.errors
    assert form.cleaned_data["from_time"] == form.cleaned_data["exclude_recorded_after"] == meant
    assert "YYYY-MM-DD HH:MM" in form.fields["from_time"].help_text


def test_the_button_requests_approval_for_a_kind_that_needs_it(browser_client, directory, four_eyes):
    html = browser_client.get("/jobs/new", secure=True).content.decode()

    start = re.search(r'<button[^>]*id="start-button"[^>]*data-kinds="([^"]*)"[^>]*>Start job<', html)
    ask = re.search(r'<button[^>]*id="request-button"[^>]*data-kinds="([^"]*)"[^>]*>Request approval<', html)
    assert {"snapshot", "verify"} <= set(start.group(1).split())
    assert {"replay", "restore", "resync"} <= set(ask.group(1).split())
    assert not set(start.group(1).split()) & set(ask.group(1).split())


def test_a_dry_run_shows_the_estimate_and_writes_nothing(browser_client, directory):
    jobs, audits = Job.objects.count(), audit_count()
    expected = selectors.estimate(kind="replay", params={"projection": "users_directory"})

    response = browser_client.post("/jobs/new/dry-run", form(reason=""), secure=True, **HTMX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="job-form"')  # the form again, swapped in by htmx
    dry_run = html[html.find('id="dry-run"') :]
    assert '<dt>Events affected</dt><dd class="figure">10</dd>' in dry_run
    assert '<dt>Streams affected</dt><dd class="figure">10</dd>' in dry_run
    assert expected.params_sha256 in dry_run and expected.basis in dry_run
    assert (Job.objects.count(), audit_count()) == (jobs, audits)


def test_a_restores_dry_run_says_the_rows_it_replaces_the_tail_it_applies_and_the_time(
    browser_client, directory
):
    taken = run("snapshot", projection="users_directory")
    snapshot = Snapshot.objects.get(pk=taken.result["snapshot"])
    at_head = selectors.estimate(kind="restore", params={"projection": "users_directory"})
    for uid in ("a", "b"):
        create_user(uid)

    response = browser_client.post(
        "/jobs/new/dry-run", form(kind="restore", snapshot=str(snapshot.pk)), secure=True, **HTMX
    )

    # Nothing recorded after the snapshot, yet the restore still loads and swaps in every row of it.
    assert snapshot.rows > 10
    assert (at_head.rows, at_head.events) == (snapshot.rows, 0)
    assert at_head.seconds > 0 and "rows/s" in at_head.basis
    assert any(
        f"{snapshot.rows:,} rows, which replace the live users_directory's" in n for n in at_head.notes
    )
    html = response.content.decode()
    figures = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>([^<]+)</dd>", html))
    assert figures["Rows replaced"] == f"{snapshot.rows:,}"
    assert figures["Tail events to apply"] == "2"
    assert figures["Duration, about"] != "0 s"
    assert "Events affected" not in figures
    assertContains(response, f"Loads snapshot {snapshot.name}")
    assert Job.objects.filter(kind="restore").count() == 0


def test_a_dry_runs_measured_rate_names_its_jobs_in_the_right_number(browser_client, directory):
    run("replay", projection="users_directory")
    after_one = selectors.estimate(kind="replay", params={"projection": "users_directory"})
    run("replay", projection="users_directory")
    after_two = browser_client.post("/jobs/new/dry-run", form(), secure=True, **HTMX)

    assert "over the last replay job on users_directory" in after_one.basis
    assert "1 replay jobs" not in after_one.basis
    assertContains(after_two, "over the last 2 replay jobs on users_directory")


def test_a_dry_run_counts_what_an_exclusion_leaves_out(browser_client, directory):
    bad = Event.objects.filter(stream__name="user-3").values_list("event_id", flat=True).get()

    response = browser_client.post(
        "/jobs/new/dry-run", form(exclude_event_ids=f"{bad}\n"), secure=True, **HTMX
    )

    assertContains(response, '<dt>Events affected</dt><dd class="figure">9</dd>', html=True)
    assertContains(response, '<dt>Excluded</dt><dd class="figure">1</dd>', html=True)
    assert Job.objects.count() == 0


def test_a_dry_run_of_bad_parameters_shows_the_errors_next_to_the_fields(browser_client, directory):
    response = browser_client.post(
        "/jobs/new/dry-run", form(stream="user-999", shards="99"), secure=True, **HTMX
    )

    assert response.status_code == 200  # htmx swaps only 2xx answers in
    assert "no stream is named &#x27;user-999&#x27;" in field_errors(response, "stream")
    assert "must be a whole number from 1 to 32" in field_errors(response, "shards")
    assertNotContains(response, 'id="dry-run"')
    assert Job.objects.count() == 0


def test_a_bad_form_shows_each_error_next_to_its_field_and_creates_nothing(browser_client, directory):
    audits = audit_count()

    response = browser_client.post(
        "/jobs/new",
        form(reason="  ", exclude_event_ids="not-an-id", exclude_recorded_after="yesterday"),
        secure=True,
    )

    assert response.status_code == 400
    assert "say why this job should run" in field_errors(response, "reason")
    assert "&#x27;not-an-id&#x27; is not an event id" in field_errors(response, "exclude_event_ids")
    assert "ISO 8601 time with a zone" in field_errors(response, "exclude_recorded_after")
    assertContains(response, "Nothing was started", status_code=400)
    assertContains(response, "not-an-id</textarea>", status_code=400)  # what was typed is kept
    assert (Job.objects.count(), audit_count()) == (0, audits)


def test_a_value_the_form_cannot_read_is_refused_before_the_service(browser_client, directory):
    response = browser_client.post("/jobs/new", form(snapshot="latest"), secure=True)

    assert response.status_code == 400
    assert "Select a valid choice" in field_errors(response, "snapshot")
    assert Job.objects.count() == 0


def test_start_creates_the_job_and_shows_its_page(browser_client, directory):
    response = browser_client.post("/jobs/new", form(shards="2"), secure=True)

    job = Job.objects.get()
    assertRedirects(response, f"/jobs/{job.pk}/", fetch_redirect_response=False)
    assert (job.kind, job.target, job.state, job.requested_by) == (
        "replay",
        "users_directory",
        "queued",
        "olivia",
    )
    assert job.params["shards"] == 2 and job.reason == "names were damaged"
    assert Event.objects.filter(stream__name=f"console-job.{job.pk}", type="JobRequested").exists()
    page = browser_client.get(response["Location"], secure=True)
    assertContains(page, f"Requested job {job.pk}, a replay of users_directory: queued.")


def test_only_the_fields_of_the_chosen_kind_are_sent(browser_client, directory):
    # The form keeps every field; a snapshot takes only its projection, so the rest is left out.
    response = browser_client.post(
        "/jobs/new", form(kind="snapshot", stream="user-1", from_position="3", repair="on"), secure=True
    )

    assert response.status_code == 302
    assert Job.objects.get().params == {"projection": "users_directory"}


def test_start_is_refused_while_another_job_holds_the_target_and_names_it(browser_client, directory):
    holder = request("verify", projection="users_directory")

    response = browser_client.post("/jobs/new", form(), secure=True)

    assert response.status_code == 400
    assertContains(response, f'<a href="/jobs/{holder.pk}/">job {holder.pk}</a>', status_code=400)
    assertContains(response, "is working on users_directory", status_code=400)
    assert Job.objects.count() == 1


def test_a_resync_is_started_for_a_sink(browser_client, directory):
    sink_config.create_sink(
        name="crm_hook",
        url="https://hooks.example.com/in",
        secret="s" * 20,
        rate_per_second=50,
        actor="olivia",
    )

    response = browser_client.post(
        "/jobs/new",
        {
            "kind": "resync",
            "sink": "crm_hook",
            "streams": "user-1, user-2",
            "rate_per_second": "10",
            "reason": "lost",
        },
        secure=True,
    )

    job = Job.objects.get()
    assert response.status_code == 302 and job.target == "crm_hook"
    assert job.params["streams"] == ["user-1", "user-2"] and job.params["rate_per_second"] == 10.0


# --- a job's page and its progress


def test_a_finished_replay_shows_its_facts_log_and_swapped_position(browser_client, directory):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE proj_users_directory.users SET name = 'damaged'")
    job = run("replay", projection="users_directory")
    assert projected_users() == fold_users()

    response = browser_client.get(f"/jobs/{job.pk}/", secure=True)

    for text in (job.params_sha256, "drill", "olivia", "&quot;projection&quot;: &quot;users_directory&quot;"):
        assertContains(response, text)
    assertContains(response, "stage: replaying")
    assertContains(response, f'<dd class="figure swapped-position">{job.result["position"]}</dd>', html=True)
    assertContains(response, f"now stands at position {job.result['position']}")
    assertContains(
        response, f'<progress value="{job.total}" max="{job.total}" aria-label="Progress of job {job.pk}">'
    )
    assertContains(response, "<dt>Rate, overall</dt>")
    assertContains(response, "<dt>Took</dt>")
    main = response.content.decode().split('<main id="main"', 1)[1]
    assert "hx-trigger" not in main  # finished: nothing on the job's page polls (the menu's count does)
    assertNotContains(response, 'id="cancel-job"')


def test_the_progress_fragment_polls_while_the_job_runs_and_answers_286_once_it_is_finished(
    browser_client, directory
):
    job = request("replay", projection="users_directory")

    waiting = browser_client.get(f"/jobs/{job.pk}/progress", secure=True, **HTMX)
    assert waiting.status_code == 200
    assertContains(waiting, 'hx-trigger="load delay:0.5s, every 1s"')
    assertContains(waiting, f'hx-get="/jobs/{job.pk}/progress"')
    assertContains(waiting, "waiting for a worker")
    assertContains(waiting, 'id="cancel-job"')

    runner.run_inline(job.pk)
    finished = browser_client.get(f"/jobs/{job.pk}/progress", secure=True, **HTMX)

    assert finished.status_code == 286
    assertNotContains(finished, "hx-trigger", status_code=286)
    assertContains(finished, '<dd class="job-state-text">succeeded</dd>', html=True, status_code=286)
    assertContains(finished, "Swapped in", status_code=286)
    assertNotContains(finished, 'id="cancel-job"', status_code=286)


def test_a_poll_of_the_progress_carries_only_the_log_lines_after_the_pages_cursor(browser_client, directory):
    job = request("replay", projection="users_directory")
    for n in range(3):
        services.log(job, f"line number {n}")
    page = browser_client.get(f"/jobs/{job.pk}/", secure=True)
    cursor = re.search(r'"after": (\d+), "shown": (\d+)', page.content.decode()).groups()
    assertContains(page, "line number 0")
    services.log(job, "line number 3")

    poll = browser_client.get(
        f"/jobs/{job.pk}/progress", {"after": cursor[0], "shown": cursor[1]}, secure=True, **HTMX
    )

    assert poll.status_code == 200
    assertNotContains(poll, "line number 0")
    assertContains(poll, "line number 3")
    assertContains(poll, 'id="job-log-lines" hx-swap-oob="beforeend"')
    latest = JobLogLine.objects.filter(job=job).latest("pk").pk
    assertContains(poll, f'"after": {latest}, "shown": {int(cursor[1]) + 1}')


def test_cancel_stops_a_job_that_has_not_started(browser_client, directory):
    job = request("replay", projection="users_directory")
    assert browser_client.get(f"/jobs/{job.pk}/cancel", secure=True).status_code == 405

    response = browser_client.post(f"/jobs/{job.pk}/cancel", secure=True)

    assertRedirects(response, f"/jobs/{job.pk}/", fetch_redirect_response=False)
    job.refresh_from_db()
    assert job.state == "cancelled" and job.cancel_requested_by == "olivia"
    page = browser_client.get(f"/jobs/{job.pk}/", secure=True)
    assertContains(page, "Cancel asked")
    assertContains(page, "cancelled by olivia before it started")
    again = browser_client.post(f"/jobs/{job.pk}/cancel", secure=True, follow=True)
    assertContains(again, f"Not done: job {job.pk} has cancelled already.")


def test_a_confirmed_cancel_from_htmx_loads_the_job_page_again(browser_client, directory):
    job = request("replay", projection="users_directory")

    response = browser_client.post(f"/jobs/{job.pk}/cancel", secure=True, **HTMX)

    assert response["HX-Redirect"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert job.state == "cancelled"


def test_a_failed_job_shows_its_error_and_is_retried_from_its_page(browser_client):
    # Nothing has built the users directory yet: a verification has no live schema to compare with.
    create_user("1")
    job = run("verify", projection="users_directory")
    assert job.state == "failed"

    page = browser_client.get(f"/jobs/{job.pk}/progress", secure=True)
    assert page.status_code == 286
    assertContains(page, "users_directory has no live schema to verify", status_code=286)
    assertContains(page, 'id="retry-job"', status_code=286)

    response = browser_client.post(f"/jobs/{job.pk}/retry", secure=True, follow=True)

    job.refresh_from_db()
    assert job.state == "queued"
    assertContains(response, "Queued again")
    assertContains(response, "retried by olivia")
    refused = browser_client.post(f"/jobs/{job.pk}/retry", secure=True, follow=True)
    assertContains(refused, f"only a failed job can be retried; job {job.pk} is queued")


def test_a_verification_shows_each_tables_differences_with_samples(browser_client, directory):
    with connection.cursor() as cursor:
        cursor.execute("UPDATE proj_users_directory.users SET name = 'damaged' WHERE user_id = '3'")
        cursor.execute("DELETE FROM proj_users_directory.users WHERE user_id = '4'")
    job = run("verify", projection="users_directory")

    response = browser_client.get(f"/jobs/{job.pk}/", secure=True)

    html = response.content.decode()
    users_row = html[html.find('<tr data-table="users">') :]
    users_row = users_row[: users_row.find("</tr>")]
    assert re.findall(r'<td class="num">(\d+)</td>', users_row) == ["1", "0", "1"]
    assert "damaged" in users_row and "different: 1 sample" in users_row
    assertContains(response, "users_directory differs from the log")


def test_a_restore_shows_its_rpo_and_rto(browser_client, directory):
    snapshot_job = run("snapshot", projection="users_directory")
    create_user("10")
    job = run("restore", projection="users_directory", snapshot=snapshot_job.result["snapshot"])
    assert job.state == "succeeded", job.error

    response = browser_client.get(f"/jobs/{job.pk}/", secure=True)

    assertContains(response, '<dt>RPO</dt><dd class="figure">0 events lost</dd>', html=True)
    assertContains(response, f"({job.result['rto_seconds']} s)")
    assertContains(response, snapshot_job.result["name"])


def test_an_unknown_job_is_404(browser_client):
    assertContains(browser_client.get("/jobs/4040/", secure=True), "No job has the id 4040.", status_code=404)
    assert browser_client.post("/jobs/4040/cancel", secure=True).status_code == 404


# --- snapshots


def test_snapshots_are_listed_filtered_and_shown_with_their_manifest(browser_client, directory):
    run_projection("access")
    users = run("snapshot", projection="users_directory")
    access = run("snapshot", projection="access")
    snapshot = Snapshot.objects.get(pk=users.result["snapshot"])

    listed = browser_client.get("/snapshots/", secure=True)
    assert re.findall(r'data-snapshot="(\d+)"', listed.content.decode()) == [
        str(access.result["snapshot"]),
        str(snapshot.pk),
    ]
    only = browser_client.get("/snapshots/?projection=users_directory", secure=True)
    assert re.findall(r'data-snapshot="(\d+)"', only.content.decode()) == [str(snapshot.pk)]
    assert browser_client.get("/snapshots/?projection=nope", secure=True).status_code == 400

    page = browser_client.get(f"/snapshots/{snapshot.pk}/", secure=True)
    for table in snapshot.manifest["tables"]:
        assertContains(page, table["sha256"])
    assertContains(page, '<tr data-table="users"><td class="wrap">users</td>', count=1)
    assertContains(page, f"?kind=restore&amp;projection=users_directory&amp;snapshot={snapshot.pk}")
    assertContains(page, "?kind=snapshot&amp;projection=users_directory")

    prefilled = browser_client.get(
        f"/jobs/new?kind=restore&projection=users_directory&snapshot={snapshot.pk}", secure=True
    )
    assertContains(prefilled, f'value="{snapshot.pk}"')
    assert checked_kind(prefilled) == "restore"


# --- the dashboard and a consumer's page


def test_the_dashboard_lists_queued_and_running_jobs(browser_client, directory):
    empty = browser_client.get("/dashboard/", secure=True)
    assertContains(empty, "None: no job is queued or running.")

    job = request("replay", projection="users_directory")
    page = browser_client.get("/dashboard/", secure=True)
    panel = browser_client.get("/jobs/running", secure=True, **HTMX)

    for response in (page, panel):
        assertContains(response, f'<a href="/jobs/{job.pk}/">Job {job.pk}</a>', html=True)
        assertContains(response, f'aria-label="Progress of job {job.pk}"')
    runner.run_inline(job.pk)
    assertContains(
        browser_client.get("/jobs/running", secure=True, **HTMX), "None: no job is queued or running."
    )


def test_a_projections_page_links_to_its_jobs_and_rolls_back_a_swap(browser_client, directory):
    page = browser_client.get("/consumers/users_directory/", secure=True)
    for kind in ("replay", "verify", "snapshot"):
        assertContains(page, f"/jobs/new?kind={kind}&amp;projection=users_directory")
    panel = browser_client.get("/consumers/users_directory/jobs", secure=True, **HTMX)
    assertContains(panel, "No job has worked on users_directory.")
    assertNotContains(panel, "Roll back")

    with connection.cursor() as cursor:
        cursor.execute("UPDATE proj_users_directory.users SET name = 'before the replay'")
    job = run("replay", projection="users_directory")
    panel = browser_client.get("/consumers/users_directory/jobs", secure=True, **HTMX)
    assertContains(panel, f'<a href="/jobs/{job.pk}/">Job {job.pk}</a>', html=True)
    assertContains(panel, 'id="rollback-button"')

    response = browser_client.post(
        "/consumers/users_directory/rollback", {"reason": "the replay was wrong"}, secure=True, follow=True
    )

    assertContains(response, "Rolled users_directory back")
    assert {row[1] for row in projected_users().values()} == {"before the replay"}
    rolled = Event.objects.get(type="ProjectionRolledBack")
    assert rolled.data["reason"] == "the replay was wrong" and rolled.actor == "olivia"


def test_a_support_agent_sees_a_projections_jobs_without_the_buttons_to_start_or_roll_back(
    client, support_agent, directory
):
    job = run("replay", projection="users_directory")
    client.force_login(support_agent)

    page = client.get("/consumers/users_directory/", secure=True)
    panel = client.get("/consumers/users_directory/jobs", secure=True, **HTMX)

    assertNotContains(page, "/jobs/new?kind=")
    assertContains(panel, f'<a href="/jobs/{job.pk}/">Job {job.pk}</a>', html=True)
    assertNotContains(panel, 'id="rollback-button"')


def test_a_rollback_without_a_previous_schema_says_so(browser_client, directory):
    response = browser_client.post("/consumers/users_directory/rollback", secure=True, follow=True)

    assertContains(response, "has no previous schema to roll back to")
    assert not Event.objects.filter(type="ProjectionRolledBack").exists()


def test_a_sinks_page_links_to_a_resync(browser_client):
    sink_config.create_sink(
        name="crm_hook",
        url="https://hooks.example.com/in",
        secret="s" * 20,
        rate_per_second=50,
        actor="olivia",
    )

    page = browser_client.get("/consumers/crm_hook/", secure=True)

    assertContains(page, "/jobs/new?kind=resync&amp;sink=crm_hook")
    assertNotContains(page, "kind=replay")
