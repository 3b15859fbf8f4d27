"""Section 9: every page of the console's menu, rendered for a logged-in operator, on a large store.

The store: the demo history (users, groups, grants, by a few admins, with correlation ids), grown with
filler events to `page_events` events in `page_streams` streams, settled (VACUUM (ANALYZE)); the lag
section's ten consumers at checkpoints from the head to 10% of the log behind; `page_jobs` jobs of the
recovery app's kinds in a mix of states, written straight into the tables. Each page is a GET through
Django's test client (the whole request: middleware, session, the view, the template), as an operator
logged in with `force_login`. Every response's status is checked: a page that answers 500, or sends the
operator elsewhere, stops the section rather than being timed.
"""

from __future__ import annotations

import datetime as dt
import importlib
import random
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import psycopg

from bench import data
from bench.context import Context
from bench.measure import percentile, row
from bench.suite_store import make_consumers

OPERATOR = "bench.operator"
# What the pages are asked for, by name (a row and a target each; bench/report.py states the targets).
PAGES = (
    "dashboard",
    "streams list",
    "streams list, prefix search",
    "streams list, category filter",
    f"stream page, {data.LONG_STREAM_EVENTS:,} events",
    "stream page, a typical stream",
    "event page",
    "global log",
    "global log, one correlation",
    "audit search, empty",
    "audit search, actor",
    "audit search, a bare value",
    "audit search, an entity id",
    "look-up box, a correlation id",
    "consumers list",
    "consumer page",
    "consumer page, its jobs panel",
    "jobs list",
    "job page",
    "job page, its approvals panel",
    "sources",
    "approvals",
    "snapshots",
    "drills",
)
PAGE_TARGET_MS = 100.0

# The jobs' states, by weight: most finished, some waiting for approval, one running and one queued.
JOB_STATES = (("succeeded", 70), ("failed", 10), ("cancelled", 8), ("rejected", 5), ("pending_approval", 7))
JOB_KINDS = ("replay", "snapshot", "verify")
DRILLS = 20
LOG_LINES = 4


@dataclass(frozen=True)
class Page:
    name: str
    url: str
    # A redirect is what some pages answer (the look-up box): the status and where it must lead.
    status: int = 200
    location: str | None = None
    # Loaded into its page by htmx (hx-trigger="load"), with htmx's header.
    htmx: bool = False


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    ctx.log(f"pages: a store of {sizes.page_events:,} events in {sizes.page_streams:,} streams")
    data.clear_store(ctx.url)
    ctx.notes["pages_demo_load"] = data.load_demo(ctx.url, users=sizes.users, events=sizes.events)
    with psycopg.connect(ctx.url) as conn:
        have = conn.execute("SELECT count(*) FROM streams_stream").fetchone()[0]
    ctx.notes["pages_growth"] = data.grow_log(
        ctx.url, to=sizes.page_events, streams=sizes.page_streams - have
    )
    ctx.log(f"pages: loaded {ctx.notes['pages_demo_load']} {ctx.notes['pages_growth']}")
    prepare(ctx)
    measure(ctx, pages(ctx.url))


def prepare(ctx: Context) -> None:
    """The consumers, the jobs and the operator, on the loaded store."""
    from streams import selectors

    started = time.monotonic()
    consumers = make_consumers(ctx, selectors.head())
    targets = ["users_directory", "access", *(consumer.name for consumer, _, _ in consumers)]
    jobs = make_jobs(targets, count=ctx.sizes.page_jobs)
    operator()
    with psycopg.connect(ctx.url, autocommit=True) as conn:
        for table in ("recovery_job", "recovery_joblogline", "streams_consumer"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    ctx.notes["pages_prepared"] = {
        "consumers": len(consumers),
        "jobs": jobs,
        "seconds": round(time.monotonic() - started, 2),
    }


def make_jobs(targets: list[str], *, count: int) -> dict[str, int]:
    """`count` jobs straight into the tables, created over the last 30 days: the kinds on the consumers,
    canonical parameters as a request would have them, finished ones with their times and progress, a
    few log lines each; some fault drills among them; one running and one queued job."""
    from django.utils import timezone

    from recovery import params as job_params
    from recovery.models import Job, JobLogLine

    rng = random.Random(18)
    now = timezone.now()
    states = [state for state, weight in JOB_STATES for _ in range(weight)]
    made: list[Job] = []
    for n in range(count):
        created = now - dt.timedelta(days=30) * (1 - n / count)
        if n < DRILLS:
            kind, params, target = "drill", {"quick": n % 3 != 0}, "drill-sandbox"
        else:
            kind = JOB_KINDS[n % len(JOB_KINDS)]
            params = job_params.check(kind, {"projection": rng.choice(targets)})
            target = job_params.target_of(kind, params)
        state = rng.choice(states)
        job = Job(
            kind=kind,
            target=target,
            params=params,
            params_sha256=job_params.params_sha256(params),
            state=state,
            reason=f"bench job {n}",
            requested_by=OPERATOR,
            created_at=created,
        )
        if state not in ("pending_approval", "rejected"):
            total = rng.randrange(10_000, 2_000_000)
            job.queued_at = job.started_at = created + dt.timedelta(seconds=2)
            job.finished_at = created + dt.timedelta(seconds=2 + total / 60_000)
            job.stage, job.done, job.total = "done", total, total
            if kind == "drill":
                job.result = {
                    "passed": state == "succeeded",
                    "checks": {"projection_rows_wrong": 0 if state == "succeeded" else 3},
                    "rpo_events": 0,
                    "rto_seconds": 12.3,
                    "events_replayed": total,
                    "downstream_resent": total // 10,
                }
        elif state == "rejected":
            job.finished_at = created + dt.timedelta(hours=1)
        made.append(job)
    # One of the newest jobs runs and one is queued, on targets no other active job holds.
    for job, state in zip(made[-2:], ("running", "queued"), strict=True):
        job.state, job.finished_at, job.stage = state, None, "replaying"
        job.done, job.queued_at, job.started_at = job.total // 2 if job.total else 0, now, now
        job.heartbeat_at = job.progress_at = now
    jobs = Job.objects.bulk_create(made, batch_size=500)
    JobLogLine.objects.bulk_create(
        (
            JobLogLine(job=job, message=f"{job.kind} {job.target}: step {i + 1}")
            for job in jobs
            for i in range(LOG_LINES)
        ),
        batch_size=2000,
    )
    return {
        state: sum(1 for job in jobs if job.state == state) for state in sorted({job.state for job in jobs})
    }


def operator():
    """An operator, as `replaydesk user NAME --role operator` makes one."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from core.roles import OPERATOR as ROLE
    from core.roles import ensure_groups

    ensure_groups()
    user, _ = get_user_model().objects.get_or_create(username=OPERATOR, defaults={"email": "ops@example.com"})
    user.groups.set(Group.objects.filter(name=ROLE))
    return user


def pages(url: str) -> list[Page]:
    """The pages of the menu, with what they show picked from the store as a person would open them."""
    from django.urls import reverse

    from recovery.models import Job
    from streams.models import Consumer

    with psycopg.connect(url) as conn:
        head = conn.execute("SELECT max(position) FROM streams_event").fetchone()[0]
        users = conn.execute("SELECT count(*) FROM streams_stream WHERE category = 'user'").fetchone()[0]
        typical = conn.execute(
            "SELECT name FROM streams_stream WHERE category = 'user' ORDER BY name OFFSET %s LIMIT 1",
            [users // 2],
        ).fetchone()[0]
        middle_event, correlation = conn.execute(
            "SELECT e.id, e.metadata->>'correlation_id' FROM streams_event e JOIN streams_stream s "
            "ON s.id = e.stream_id WHERE s.category = 'user' AND e.position >= %s "
            "ORDER BY e.position LIMIT 1",
            # The demo history is the log's first tenth: an event from the middle of it.
            [head // 20],
        ).fetchone()
    consumer = Consumer.objects.filter(name__startswith="bench_lag_").order_by("name")[5].name
    job = Job.objects.filter(kind="replay", state="succeeded").order_by("-pk").first().pk
    # A finished job's approvals panel answers 286 (stop polling): the panel of one that waits.
    waiting = Job.objects.filter(state="pending_approval").order_by("-pk").first().pk
    audit = reverse("streams:audit")
    return [
        Page("dashboard", reverse("dashboard")),
        Page("streams list", reverse("streams:list")),
        Page("streams list, prefix search", f"{reverse('streams:list')}?prefix=user-1"),
        Page("streams list, category filter", f"{reverse('streams:list')}?category=group"),
        Page(
            f"stream page, {data.LONG_STREAM_EVENTS:,} events",
            reverse("streams:detail", args=[data.LONG_STREAM]),
        ),
        Page("stream page, a typical stream", reverse("streams:detail", args=[typical])),
        Page("event page", reverse("streams:event", args=[middle_event])),
        Page("global log", reverse("streams:log")),
        Page(
            "global log, one correlation",
            f"{reverse('streams:log')}?{urlencode({'correlation_id': correlation})}",
        ),
        Page("audit search, empty", audit),
        Page("audit search, actor", f"{audit}?q=actor:alice.admin"),
        Page("audit search, a bare value", f"{audit}?q=issueABC"),
        Page("audit search, an entity id", f"{audit}?{urlencode({'q': typical})}"),
        Page(
            "look-up box, a correlation id",
            f"{reverse('streams:lookup')}?q={correlation}",
            status=302,
            location=f"{reverse('streams:log')}?{urlencode({'correlation_id': correlation})}",
        ),
        Page("consumers list", reverse("streams:consumers")),
        Page("consumer page", reverse("streams:consumer", args=[consumer])),
        Page(
            "consumer page, its jobs panel",
            reverse("recovery:consumer-recovery", args=[consumer]),
            htmx=True,
        ),
        Page("jobs list", reverse("recovery:jobs")),
        Page("job page", reverse("recovery:job", args=[job])),
        Page("job page, its approvals panel", reverse("recovery:job-approvals", args=[waiting]), htmx=True),
        Page("sources", reverse("streams:sources")),
        Page("approvals", reverse("recovery:approvals")),
        Page("snapshots", reverse("recovery:snapshots")),
        Page("drills", reverse("recovery:drills")),
    ]


def client():
    from django.test import Client

    browser = Client(HTTP_HOST="localhost")
    browser.force_login(operator())
    return browser


def get(browser, page: Page) -> float:
    """One GET of the page, its status checked; milliseconds."""
    started = time.perf_counter()
    response = browser.get(page.url, headers={"HX-Request": "true"} if page.htmx else None)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != page.status or (page.location and response["Location"] != page.location):
        where = response.get("Location", "")
        raise AssertionError(
            f"{page.name}: GET {page.url} answered {response.status_code} {where}, not {page.status} "
            f"{page.location or ''}".rstrip()
        )
    return elapsed


def measure(ctx: Context, shown: list[Page]) -> None:
    """Each page once to warm it, then rounds of every page in a shuffled order, `page_samples` rounds a
    repetition; per page the p50 and p95 of each repetition, medians over repetitions."""
    assert [page.name for page in shown] == list(PAGES), "the page list and PAGES disagree"
    browser = client()
    for page in shown:
        get(browser, page)
    # This process, set up and warm, made what a web worker is when console.wsgi has loaded (which
    # freezes what the process holds then, out of the collector's full walks).
    importlib.import_module("console.wsgi")
    p50 = {page.name: [] for page in shown}
    p95 = {page.name: [] for page in shown}
    rng = random.Random(9)
    for _ in range(ctx.sizes.repetitions):
        times = {page.name: [] for page in shown}
        for _ in range(ctx.sizes.page_samples):
            for page in rng.sample(shown, len(shown)):
                times[page.name].append(get(browser, page))
        for name, values in times.items():
            p50[name].append(percentile(values, 50))
            p95[name].append(percentile(values, 95))
    extra = {"events": ctx.sizes.page_events, "streams": ctx.sizes.page_streams, "jobs": ctx.sizes.page_jobs}
    for page in shown:
        for label, found in (("p50", p50), ("p95", p95)):
            ctx.rows.append(
                row(
                    "pages",
                    f"page: {page.name} ({label})",
                    "ms",
                    "lower",
                    {"replaydesk": found[page.name]},
                    url=page.url,
                    **extra,
                )
            )
        figures = (ctx.rows[-2]["values"]["replaydesk"], ctx.rows[-1]["values"]["replaydesk"])
        ctx.log(f"pages: {page.name}: p50 {figures[0]} p95 {figures[1]} ms")
