"""`replaydesk token USER`: a new token printed once, listed by prefix only, revocable."""

import io
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from console.models import ApiToken
from streams.models import Event


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def token_of(username: str, *options: str) -> str:
    return run(username, *options)[0].strip()


def client_with(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_prints_a_new_token_each_time_and_keeps_only_its_hash(operator):
    first, second = token_of("olivia"), token_of("olivia")

    assert first != second and first.startswith("rd_")
    assert ApiToken.objects.filter(user=operator).count() == 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM console_apitoken")
        stored = repr(cursor.fetchall())
    secret = first.rsplit("_", 1)[1]
    assert first not in stored and secret not in stored


def test_printed_token_opens_the_api_as_that_user(operator):
    assert client_with(token_of("olivia")).get("/api/v1/streams").status_code == 200


def test_issuing_says_the_prefix_and_the_expiry_and_is_audited_without_the_token(operator, settings):
    settings.REPLAYDESK_TOKEN_DAYS = 30
    out, err = run("olivia", "--name", "billing service")
    token = ApiToken.objects.get(user=operator)

    assert token.name == "billing service"
    assert token.expires_at - token.created_at == timedelta(days=30)
    assert token.prefix in err and "shown only this once" in err
    [issued] = Event.objects.filter(type="ApiTokenIssued")
    assert issued.stream.name == f"console-token.{token.prefix}"
    assert issued.data["user"] == "olivia" and issued.data["token"] == token.prefix
    assert out.strip() not in repr((issued.data, issued.metadata))


def test_days_and_no_expiry_set_the_lifetime(operator):
    token_of("olivia", "--days", "7")
    token_of("olivia", "--no-expiry")
    week, forever = ApiToken.objects.filter(user=operator).order_by("pk")

    assert week.expires_at - week.created_at == timedelta(days=7)
    assert forever.expires_at is None


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_a_lifetime_that_is_not_a_number_of_days_is_refused(operator, days):
    with pytest.raises(CommandError, match="number of days"):
        run("olivia", "--days", days)
    assert not ApiToken.objects.exists()


def test_the_list_shows_prefixes_names_and_dates_never_a_token(operator):
    kept = token_of("olivia", "--name", "ci")
    revoked = token_of("olivia", "--name", "laptop")
    run("olivia", "--revoke", revoked.split("_")[1])
    client_with(kept).get("/api/v1/streams")

    listing = run("olivia", "--list")[0]

    assert kept not in listing and revoked not in listing
    header, ci, laptop = (re.split(r"\s{2,}", line) for line in listing.splitlines())
    assert header == ["PREFIX", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATE"]
    assert ci[:2] == [kept.split("_")[1], "ci"] and ci[5] == "active"
    assert "never" not in (ci[3], ci[4])  # it expires, and was used just now
    assert laptop[:2] == [revoked.split("_")[1], "laptop"] and laptop[5].startswith("revoked ")
    assert laptop[4] == "never"


def test_a_revoked_token_is_refused_and_the_revocation_audited(operator):
    token = token_of("olivia")
    prefix = token.split("_")[1]

    assert run("olivia", "--revoke", prefix)[0].strip() == f"olivia's token {prefix} revoked"
    assert client_with(token).get("/api/v1/streams").status_code == 401
    [revoked] = Event.objects.filter(type="ApiTokenRevoked")
    assert revoked.data["token"] == prefix and revoked.actor.startswith("cli:")
    with pytest.raises(CommandError, match="revoked already"):
        run("olivia", "--revoke", prefix)


def test_nobody_revokes_another_users_token_by_naming_its_prefix(operator, approver):
    prefix = token_of("avery").split("_")[1]

    with pytest.raises(CommandError, match=f"olivia has no token '{prefix}'"):
        run("olivia", "--revoke", prefix)
    assert ApiToken.objects.get(prefix=prefix).revoked_at is None


def test_unknown_user_is_an_error_that_names_the_user(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        token_of("nobody")


def test_inactive_user_gets_no_token(operator):
    operator.is_active = False
    operator.save()

    with pytest.raises(CommandError, match="inactive"):
        token_of("olivia")
    assert not ApiToken.objects.filter(user=operator).exists()


def test_command_line_exits_non_zero_for_an_unknown_user(db):
    # The test database, reached by a separate process: nothing needs to be committed for "unknown".
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(url._replace(path="/" + connection.settings_dict["NAME"])),
    }

    done = subprocess.run(
        [str(Path(sys.executable).with_name("replaydesk")), "token", "nobody"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert "no user named 'nobody'" in done.stderr
    assert done.stdout == ""
