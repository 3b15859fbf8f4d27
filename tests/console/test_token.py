import io
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def token_of(username: str) -> str:
    out = io.StringIO()
    call_command("token", username, stdout=out)
    return out.getvalue().strip()


def test_prints_the_users_token_and_the_same_one_next_time(operator):
    key = token_of("olivia")

    assert key == Token.objects.get(user=operator).key
    assert token_of("olivia") == key


def test_printed_token_opens_the_api_as_that_user(operator):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_of('olivia')}")

    assert client.get("/api/v1/streams").status_code == 200


def test_unknown_user_is_an_error_that_names_the_user(db):
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        token_of("nobody")


def test_inactive_user_gets_no_token(operator):
    operator.is_active = False
    operator.save()

    with pytest.raises(CommandError, match="inactive"):
        token_of("olivia")
    assert not Token.objects.filter(user=operator).exists()


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
