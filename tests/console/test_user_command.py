"""replaydesk user NAME --role ROLE: people and their roles, the password from standard input."""

import io
import sys

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from core.roles import Can, can, roles_of
from streams.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a long and unusual passphrase"


def user_command(*args, stdin: str = "") -> str:
    """The command as a shell runs it: `echo PASSWORD | replaydesk user …` (it reads sys.stdin)."""
    real, out = sys.stdin, io.StringIO()
    sys.stdin = io.StringIO(stdin)
    try:
        call_command("user", *args, stdout=out)
    finally:
        sys.stdin = real
    return out.getvalue()


def test_a_new_user_gets_its_roles_and_the_password_from_standard_input():
    output = user_command("avery", "--role", "approver", "--role", "support", stdin=PASSWORD + "\n")
    avery = get_user_model().objects.get(username="avery")
    assert output.strip() == "avery created: approver, support"
    assert roles_of(avery) == {"approver", "support"}
    assert can(avery, Can.APPROVE) and not can(avery, Can.OPERATE)
    assert authenticate(username="avery", password=PASSWORD) == avery
    assert not avery.is_staff  # the Django admin is for admins
    event = Event.objects.get(stream__name="console-user.avery")
    assert event.type == "UserCreated" and event.data["roles"] == ["approver", "support"]
    assert PASSWORD not in str(event.data) + str(event.metadata)


def test_an_existing_user_changes_roles_and_keeps_its_password_when_none_is_given():
    user_command("olivia", "--role", "support", stdin=PASSWORD + "\n")
    output = user_command("olivia", "--role", "operator", "--role", "admin", stdin="")
    olivia = get_user_model().objects.get(username="olivia")
    assert output.strip() == "olivia updated: admin, operator"
    assert roles_of(olivia) == {"admin", "operator"} and olivia.is_staff and olivia.is_superuser
    assert authenticate(username="olivia", password=PASSWORD) == olivia


def test_a_new_user_without_a_password_or_with_a_weak_one_is_refused_and_nothing_is_written():
    with pytest.raises(CommandError, match="needs a password"):
        user_command("sam", "--role", "support", stdin="")
    with pytest.raises(CommandError, match="password is refused"):
        user_command("sam", "--role", "support", stdin="sam\n")
    assert not get_user_model().objects.filter(username="sam").exists()
    assert not Event.objects.filter(stream__name="console-user.sam").exists()


def test_an_unknown_role_is_refused():
    with pytest.raises(CommandError, match="invalid choice"):
        user_command("sam", "--role", "superhero", stdin=PASSWORD)
