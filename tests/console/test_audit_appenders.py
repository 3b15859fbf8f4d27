"""The console's own audit records say who the store authenticated as appending them, as every event
does: the signed-in person, nobody (a failed login), or the console's background work."""

import pytest
from django.urls import reverse

from console.celery import _appends_are_the_workers
from core import principals
from streams import audit
from streams.models import Event
from tests.conftest import PASSWORD


def appenders(stream: str) -> list[tuple[str, str, str | None]]:
    events = Event.objects.filter(stream__name=stream).order_by("sequence")
    return [(event.type, event.appended_by, event.appended_via) for event in events]


@pytest.mark.django_db
def test_a_login_and_a_failed_one_are_appended_by_who_was_signed_in(client, operator):
    client.post(reverse("login"), {"username": "olivia", "password": "not her password"})
    client.post(reverse("login"), {"username": "olivia", "password": PASSWORD})

    assert appenders("console-user.olivia") == [
        ("UserLoginFailed", "anonymous", None),
        ("UserLoggedIn", "user:olivia", "session"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_record_made_where_no_request_is_at_hand_is_appended_by_the_requests_user(client, admin_user):
    """The Django admin's change log is audited from a signal that sees no request."""
    client.force_login(admin_user)
    client.post("/admin/auth/group/add/", {"name": "auditors"})

    assert appenders("console-group.auditors") == [("GroupCreated", "user:ada", "session")]


@pytest.mark.django_db
def test_a_celery_worker_appends_as_the_consoles_background_work(monkeypatch):
    monkeypatch.setattr(principals, "_process", None)

    # What Celery's worker_init signal runs as a worker starts (its pool processes fork after it).
    _appends_are_the_workers()
    audit.record(subject="job.1", type="JobStarted", actor="system", data={"job": 1})

    assert appenders("console-job.1") == [("JobStarted", "system:worker", None)]
