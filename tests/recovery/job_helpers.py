"""What the tests of recovery jobs share: run a job to its end in this process, and the data it works on."""

import pytest
from django.db import connection

from recovery import runner, services
from streams.models import Event
from streams.services import append_events
from tests.streams.projection_helpers import create_user


@pytest.fixture(autouse=True)
def _snapshot_dir(settings, tmp_path):
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"


def run(kind, reason="recovery drill", **params):
    job = services.request_job(kind=kind, params=params, requested_by="olivia", reason=reason)
    return runner.run_inline(job.pk)


def users(n, start=0):
    for uid in range(start, start + n):
        create_user(str(uid))


def rename(uid, name, actor="svc-bad-deploy"):
    return append_events(
        stream=f"user-{uid}",
        events=[{"type": "UserNameSet", "data": {"user_id": str(uid), "name": name}}],
        actor=actor,
    ).last_position


def audit_types(job):
    return list(
        Event.objects.filter(stream__name=f"console-job.{job.pk}")
        .order_by("position")
        .values_list("type", flat=True)
    )


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def schema_exists(schema):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        return cursor.fetchone() is not None
