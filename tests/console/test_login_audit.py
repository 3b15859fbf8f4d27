"""Logins, failed logins and logouts are audit events with the actor, IP address and user agent."""

import io
import json

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from streams.models import Event
from tests.conftest import PASSWORD

WHERE = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"}
WRONG_PASSWORD = "Tr0ub4dor&3-not-hers"


def audit_events(stream: str, type_: str) -> list[Event]:
    return list(Event.objects.filter(stream__name=stream, type=type_).order_by("sequence"))


def log_in(client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password}, **WHERE)


def test_a_login_is_recorded_with_ip_and_user_agent(client, operator):
    response = log_in(client, "olivia", PASSWORD)

    assert response.status_code == 302  # to the dashboard: she is in
    [login] = audit_events("console-user.olivia", "UserLoggedIn")
    assert login.actor == "olivia"
    assert login.data == {"user": "olivia"}
    assert (login.metadata["ip"], login.metadata["user_agent"]) == (
        "203.0.113.7",
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    )


def test_a_failed_login_records_the_username_tried_and_never_the_password(client, operator):
    response = log_in(client, "olivia", WRONG_PASSWORD)

    assert response.status_code == 200  # the form again, with its error
    assert not audit_events("console-user.olivia", "UserLoggedIn")
    [failed] = audit_events("console-user.olivia", "UserLoginFailed")
    assert (failed.actor, failed.data) == ("anonymous", {"username": "olivia"})
    assert (failed.metadata["ip"], failed.metadata["user_agent"]) == (
        WHERE["REMOTE_ADDR"],
        WHERE["HTTP_USER_AGENT"],
    )
    assert set(failed.metadata) == {"actor", "ip", "user_agent", "prev_hash"}
    # Nowhere in the store, nor even Django's mask of it.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM streams_event WHERE data::text LIKE %s OR metadata::text LIKE %s "
            "OR data::text LIKE '%%*****%%' OR metadata::text LIKE '%%*****%%'",
            [f"%{WRONG_PASSWORD}%"] * 2,
        )
        assert cursor.fetchone()[0] == 0


def test_a_failed_login_with_a_name_no_stream_may_carry_is_still_recorded(client, db):
    tried = "ops+admin é"

    log_in(client, tried, WRONG_PASSWORD)

    [failed] = Event.objects.filter(type="UserLoginFailed")
    assert failed.stream.name == "console-user.ops:2badmin:20:c3:a9"
    assert failed.data == {"username": tried}


def test_a_logout_is_recorded(client, operator):
    log_in(client, "olivia", PASSWORD)

    response = client.post(reverse("logout"), **WHERE)

    assert response.status_code == 302
    [logout] = audit_events("console-user.olivia", "UserLoggedOut")
    assert logout.actor == "olivia"
    assert (logout.metadata["ip"], logout.metadata["user_agent"]) == (
        WHERE["REMOTE_ADDR"],
        WHERE["HTTP_USER_AGENT"],
    )


def test_a_logout_without_a_session_records_nothing(client, db):
    client.post(reverse("logout"), **WHERE)

    assert not Event.objects.filter(type="UserLoggedOut").exists()


def test_the_django_admin_login_is_audited_too(client, admin_user):
    client.post("/admin/login/", {"username": "ada", "password": WRONG_PASSWORD}, **WHERE)
    client.post("/admin/login/", {"username": "ada", "password": PASSWORD}, **WHERE)

    assert [e.type for e in Event.objects.filter(stream__name="console-user.ada").order_by("sequence")] == [
        "UserLoginFailed",
        "UserLoggedIn",
    ]


def test_login_events_keep_the_users_chain(client, operator):
    log_in(client, "olivia", WRONG_PASSWORD)
    log_in(client, "olivia", PASSWORD)
    client.post(reverse("logout"), **WHERE)
    out = io.StringIO()

    call_command("audit", "verify", "--json", stdout=out)

    report = json.loads(out.getvalue())
    assert (report["ok"], report["streams"], report["events"]) == (True, 1, 3)


@pytest.mark.parametrize("username", ["olivia", "nobody"])
def test_every_failed_attempt_is_recorded_for_known_and_unknown_names(client, operator, username):
    for _ in range(3):
        log_in(client, username, WRONG_PASSWORD)

    assert Event.objects.filter(type="UserLoginFailed", data__username=username).count() == 3
