"""Shared by the tests that walk every route (tests/console/routes.py)."""

import pytest

from recovery import runner, services
from streams.consumers import run_projection
from streams.models import Event
from tests.streams.projection_helpers import create_user


@pytest.fixture
def world(settings, tmp_path, operator):
    """Something behind every kind of route: events, projections, a finished job and its snapshot."""
    settings.REPLAYDESK_SNAPSHOT_DIR = tmp_path / "snapshots"
    for uid in range(3):
        create_user(str(uid))
    run_projection("users_directory")
    job = services.request_job(
        kind="snapshot",
        params={"projection": "users_directory"},
        requested_by="olivia",
        reason="for the test",
    )
    job = runner.run_inline(job.pk)
    event = Event.objects.order_by("position").first()
    return {
        "job_id": job.pk,
        "snapshot_id": job.result["snapshot"],
        "event_id": str(event.event_id),
        "name": "users_directory",
        "stream": "user-1",
    }
