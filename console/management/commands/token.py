"""replaydesk token USER: issue an API token (printed this once), list USER's tokens, or revoke one.

The token alone goes to standard output, so that `TOKEN=$(replaydesk token ci)` keeps it; what it is
and until when goes to standard error. Lists show prefixes, never tokens: the database has none.
"""

from __future__ import annotations

import argparse
import getpass

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console import tokens


def _days(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days; give a whole number, 1 or more")
    return int(text)


class Command(BaseCommand):
    help = (
        "Issue a new API token for USER and print it (shown only this once); send it as "
        "`Authorization: Bearer <token>`. --list shows USER's tokens, --revoke PREFIX revokes one."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("user", help="username")
        parser.add_argument("--name", default="", help="what the token is for, e.g. the application")
        lifetime = parser.add_mutually_exclusive_group()
        lifetime.add_argument(
            "--days", type=_days, help="how long it lasts (default: REPLAYDESK_TOKEN_DAYS, 90)"
        )
        lifetime.add_argument("--no-expiry", action="store_true", help="a token that never expires")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--list", action="store_true", help="USER's tokens, without their secrets")
        action.add_argument("--revoke", metavar="PREFIX", help="revoke USER's token with this prefix")

    def handle(self, *args, user: str, **options) -> None:
        account = _account(user)
        if options["list"]:
            self._list(account)
        elif options["revoke"]:
            self._revoke(account, options["revoke"])
        else:
            self._issue(account, options)

    def _issue(self, account, options) -> None:
        name = account.get_username()
        if not account.is_active:
            raise CommandError(f"user {name!r} is inactive; its token would be refused")
        issued = tokens.issue_token(
            user=account,
            actor=f"cli:{getpass.getuser()}",
            name=options["name"],
            days=options["days"],
            never_expires=options["no_expiry"],
        )
        self.stdout.write(issued.token)
        expires = issued.record.expires_at
        until = f"expires {expires:%Y-%m-%d %H:%M} UTC" if expires else "never expires"
        self.stderr.write(
            f"{name}'s token {issued.record.prefix} ({until}) is shown only this once; "
            f"revoke it with `replaydesk token {name} --revoke {issued.record.prefix}`"
        )

    def _list(self, account) -> None:
        now = timezone.now()
        rows = [("PREFIX", "NAME", "CREATED", "EXPIRES", "LAST USED", "STATE")]
        for token in tokens.tokens_of(account):
            rows.append(
                (
                    token.prefix,
                    token.name or "-",
                    _time(token.created_at),
                    _time(token.expires_at, "never"),
                    _time(token.last_used_at, "never"),
                    token.state(now) + (f" {_time(token.revoked_at)}" if token.revoked_at else ""),
                )
            )
        if len(rows) == 1:
            self.stdout.write(f"{account.get_username()} has no API tokens")
            return
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())

    def _revoke(self, account, prefix: str) -> None:
        name = account.get_username()
        token = tokens.tokens_of(account).filter(prefix=prefix).select_related("user").first()
        if token is None:
            raise CommandError(f"{name} has no token {prefix!r}; `replaydesk token {name} --list` shows them")
        if not tokens.revoke_token(token=token, actor=f"cli:{getpass.getuser()}"):
            raise CommandError(f"{name}'s token {prefix} was revoked already")
        self.stdout.write(f"{name}'s token {prefix} revoked")


def _account(user: str):
    User = get_user_model()
    try:
        return User.objects.get_by_natural_key(user)
    except User.DoesNotExist:
        raise CommandError(
            f"no user named {user!r}; create one with `replaydesk createsuperuser` (or in /admin/)"
        ) from None


def _time(moment, none: str = "-") -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else none
