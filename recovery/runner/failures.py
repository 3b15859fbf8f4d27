"""A failed slice: try it again (with a pause) up to MAX_FAILURES times in a row, then fail the job.

What was decided is kept as JobFailure rows stamped by the database clock, and decided again from them
in SQL with now(): the job's log says the same to people and is never read back, and no time of the
worker's clock is compared with one of the database's.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable

import psycopg
from django.db import connection, transaction
from django.utils import timezone

from core.audit import AuditType
from recovery import services
from recovery.models import Job, JobFailure

logger = logging.getLogger(__name__)

MAX_FAILURES = 3
# Lost database sessions are retried, with pauses that grow, until they have gone on this long without
# the job making progress; then the job fails.
LOST_SESSIONS_GIVE_UP = dt.timedelta(minutes=15)
# How the log says a session was lost (people and the chaos tests read it; the runner does not).
LOST_SESSION = "lost its database session,"
# Parts of a job (lanes) that fail within this long of each other count as one failed attempt. Shorter
# than the pause before the first retry (2 s).
SAME_FAILURE = dt.timedelta(seconds=1)


def record_failure(job: Job, exc: Exception, *, retry: Callable[[float], None], where: str) -> None:
    """A slice of `job` (`where`: "main line" or "lane N") raised `exc`: record it, and either call
    `retry` with a pause (in seconds, once committed) or fail the job.

    A lost database session is no failure of the work: it is tried again, with a pause of a tenth of the
    time sessions have been lost without progress (1 to 30 s), until that is LOST_SESSIONS_GIVE_UP.
    A failed job keeps its checkpoints; retrying it goes on from them."""
    error = describe(exc)
    logger.warning("job %s: slice failed: %s", job.pk, error)
    lost = session_lost(exc)
    try:
        connection.close()  # whatever the error did to the connection, the next step starts clean
    except Exception:  # noqa: BLE001
        pass
    with transaction.atomic():
        current = Job.objects.select_for_update().get(pk=job.pk)
        if current.state != Job.State.RUNNING:
            return
        if lost:
            # The database ended the session (a restart, a failover, pg_terminate_backend): the work did
            # not fail, and parallel lanes losing their sessions at once must not use up the attempts.
            # But a database that goes on ending sessions must not keep a job retrying for ever.
            streak = _lost_sessions_for(current)
            if streak < LOST_SESSIONS_GIVE_UP.total_seconds():
                pause = min(max(1.0, streak / 10), 30.0)
                JobFailure.objects.create(job=current, part=where, outcome=JobFailure.Outcome.LOST_SESSION)
                services.log(job, f"{LOST_SESSION} trying again in {pause:.0f} s: {error}", level="warning")
                transaction.on_commit(lambda: retry(pause))
                return
            error = (
                f"the database ended this job's sessions again and again for {streak / 60:.0f} minutes "
                f"without progress; retry the job once the database is stable. The last: {error}"
            )
        final = lost or getattr(exc, "final", False)
        if not final and _same_failure_elsewhere(current, where):
            # Another lane failed a moment ago and this one had not: most likely one cause (a database
            # error, a poisoned batch of the same kind). One attempt of the job, not one per lane, or
            # parallel lanes would use the attempts up at once.
            JobFailure.objects.create(job=current, part=where, outcome=JobFailure.Outcome.TOGETHER)
            services.log(job, f"{where} failed too: {error}", level="warning")
            transaction.on_commit(lambda: retry(min(2.0**current.failures, 30.0)))
            return
        failures = current.failures + 1
        JobFailure.objects.create(job=current, part=where, outcome=JobFailure.Outcome.ATTEMPT)
        if failures < MAX_FAILURES and not final:
            Job.objects.filter(pk=job.pk).update(failures=failures, error=error)
            services.log(job, f"attempt {failures} failed ({where}), trying again: {error}", level="warning")
            transaction.on_commit(lambda: retry(min(2.0**failures, 30.0)))
            return
        services.transition(
            current,
            to=Job.State.FAILED,
            values={"failures": failures, "error": error, "finished_at": timezone.now()},
            message=f"failed: {error}",
            level="error",
            audit=AuditType.JOB_FAILED,
            error=error[:2000],
        )


def _same_failure_elsewhere(job: Job, where: str) -> bool:
    """Whether another part of the job counted an attempt within SAME_FAILURE, while this part did not
    fail in that time. SAME_FAILURE is shorter than the first retry's pause, so a part's own retry
    failing again always counts."""
    if not job.failures:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT EXISTS (SELECT 1 FROM recovery_jobfailure
                            WHERE job_id = %(job)s AND outcome = %(attempt)s AND part <> %(part)s
                              AND at >= now() - make_interval(secs => %(within)s)),
                   EXISTS (SELECT 1 FROM recovery_jobfailure
                            WHERE job_id = %(job)s AND outcome IN (%(attempt)s, %(together)s)
                              AND part = %(part)s AND at >= now() - make_interval(secs => %(within)s))
            """,
            {
                "job": job.pk,
                "part": where,
                "attempt": JobFailure.Outcome.ATTEMPT,
                "together": JobFailure.Outcome.TOGETHER,
                "within": SAME_FAILURE.total_seconds(),
            },
        )
        counted_elsewhere, own = cursor.fetchone()
    return counted_elsewhere and not own


def _lost_sessions_for(job: Job) -> float:
    """Seconds since the first session this job lost after its last progress (0: this is the first)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT COALESCE(extract(epoch FROM now() - min(f.at)), 0)
              FROM recovery_jobfailure f JOIN recovery_job j ON j.id = f.job_id
             WHERE f.job_id = %s AND f.outcome = %s
               AND f.at > COALESCE(j.progress_at, j.started_at, now())
            """,
            [job.pk, JobFailure.Outcome.LOST_SESSION],
        )
        return float(cursor.fetchone()[0])


def session_lost(exc: BaseException) -> bool:
    """Whether the error, or one it came from, says the database session went away: a connection
    exception (SQLSTATE class 08), a server shutting sessions down (57P0x), or a connection psycopg found
    closed (no SQLSTATE). A cancelled statement or a failed query is not."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.OperationalError) and (
            exc.sqlstate is None or exc.sqlstate.startswith(("08", "57P"))
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def describe(exc: Exception) -> str:
    if exc.__class__.__module__.startswith("recovery"):
        return str(exc)[:4000]
    return "".join(traceback.format_exception_only(exc)).strip()[:4000]
