"""replaydesk user NAME --role ROLE [--role ROLE …]: create or update a user, its roles and password.

The password comes from standard input (one line; asked for twice on a terminal), never from the
command line, where it would end up in shell history and process lists.
"""

from __future__ import annotations

import getpass
import sys

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.audit import AuditType, user_subject
from core.roles import ADMIN, ROLES, ensure_groups
from streams import audit


class Command(BaseCommand):
    help = (
        "Create or update a user with the given roles (support, operator, approver, admin); the password "
        "is read from standard input (a new user needs one; an existing one keeps its own if none is given)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--role", action="append", choices=ROLES, required=True, help="A role; repeat for several."
        )
        parser.add_argument("--email", default=None)

    def handle(self, *args, name: str, role: list[str], email: str | None, **options) -> None:
        User = get_user_model()
        existing = User.objects.filter(username=name).first()
        password = self._password(required=existing is None)
        account = existing or User(username=name)
        if password is not None:
            try:
                password_validation.validate_password(password, account)
            except ValidationError as exc:
                raise CommandError("the password is refused: " + " ".join(exc.messages)) from None
        roles = sorted(set(role))
        with transaction.atomic():
            ensure_groups()
            if email is not None:
                account.email = email
            # The Django admin (users, settings) is for admins only.
            account.is_staff = account.is_superuser = ADMIN in roles
            if password is not None:
                account.set_password(password)
            account.save()
            account.groups.set(Group.objects.filter(name__in=roles))
            audit.record(
                subject=user_subject(name),
                type=AuditType.USER_CREATED if existing is None else AuditType.USER_UPDATED,
                actor=f"cli:{getpass.getuser()}",
                data={"user": name, "roles": roles, "password_changed": password is not None},
            )
        verb = "created" if existing is None else "updated"
        self.stdout.write(f"{name} {verb}: {', '.join(roles)}")

    def _password(self, *, required: bool) -> str | None:
        if sys.stdin.isatty():
            first = getpass.getpass("Password: ")
            if not first and not required:
                return None
            if getpass.getpass("Password (again): ") != first:
                raise CommandError("the two passwords differ; nothing was changed")
        else:
            first = sys.stdin.readline().rstrip("\r\n")
        if not first:
            if required:
                raise CommandError("a new user needs a password on standard input (one line)")
            return None
        return first
