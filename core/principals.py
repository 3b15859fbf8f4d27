"""Who is acting: the principal the store records as the appender of every event
(`streams_event.appended_by` and `appended_via`), apart from the actor an event claims.

An application names who did something in `metadata.actor`; that is a claim, and it is kept as made. What
the store knows for itself is whom it authenticated, and that is what it records:

- `user:<username>`: a person signed in to the console (via `session`), or the owner of the API token a
  request carried (via `token`), whatever that token is named;
- `cli:<OS user>`: a command run on the server (`replaydesk …`), as the audit trail names it;
- `system:<component>`: the console's own background work (`system:worker` for Celery, `system:drill`);
- `anonymous`: a request nobody is signed in to (a failed login's audit record).

Each entry point says once who is acting, and every append under it records that (the pattern of
django-simple-history's and django-auditlog's request middleware): a web request by `PrincipalMiddleware`,
the command line in `console.cli.main`, a Celery worker when it starts (`console.celery`). An append with
nobody acting is refused (`NobodyActing`): a guess would make the record a lie. Code that appends
in-process from anywhere else says who it is with `acting_as(system("<component>"))`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

KINDS = ("user", "cli", "system")
ANONYMOUS_NAME = "anonymous"
SESSION = "session"
TOKEN = "token"
FORMS = "user:NAME, cli:NAME, system:NAME or anonymous"
# FORMS as the API's schema states them (is_principal checks the same).
PATTERN = "^(anonymous|(" + "|".join(KINDS) + "):[^\\u0000]+)$"


@dataclass(frozen=True)
class Principal:
    name: str
    # How a user was authenticated: SESSION or TOKEN; None for the other kinds, which say it themselves.
    via: str | None = None


ANONYMOUS = Principal(ANONYMOUS_NAME)


class NobodyActing(RuntimeError):
    """An append outside every entry point that says who is acting."""

    def __init__(self) -> None:
        super().__init__(
            "nobody is acting: the store records who appends each event; wrap in-process appends in "
            'core.principals.acting_as(core.principals.system("<component>"))'
        )


def user(username: str, *, via: str) -> Principal:
    return Principal(f"user:{username}", via)


def system(component: str) -> Principal:
    return Principal(f"system:{component}")


def cli(os_user: str) -> Principal:
    return Principal(f"cli:{os_user}")


def command_line() -> Principal:
    """Whoever runs this command on the server, by their OS account (a container may have no name)."""
    try:
        return cli(getpass.getuser())
    except (KeyError, OSError):
        return cli(f"uid{os.getuid()}")


def of_request(request: Any) -> Principal:
    """The principal a request was authenticated as. DRF authenticates inside the view and puts the user
    and what authenticated it (`auth`: the token, whatever its model; None for a session) on Django's
    request as well, so this holds for pages and the API alike."""
    who = getattr(request, "user", None)
    if who is None or not who.is_authenticated:
        return ANONYMOUS
    return user(who.get_username(), via=TOKEN if getattr(request, "auth", None) is not None else SESSION)


# A Principal, or a request to ask when an append happens (it is authenticated later than it arrives).
_acting: ContextVar[Principal | Any | None] = ContextVar("replaydesk_acting", default=None)
_process: Principal | None = None


def current() -> Principal:
    """Who is acting here, now; raises NobodyActing when no entry point said."""
    who = _acting.get()
    if isinstance(who, Principal):
        return who
    if who is not None:
        return of_request(who)
    if _process is None:
        raise NobodyActing()
    return _process


@contextlib.contextmanager
def acting_as(who: Principal | Any) -> Iterator[None]:
    """Everything appended inside the block is recorded as appended by `who` (a Principal, or a request
    whose authenticated user is asked at each append)."""
    token = _acting.set(who)
    try:
        yield
    finally:
        _acting.reset(token)


def run_as(principal: Principal | None) -> None:
    """The principal of this whole process, where no request or block says otherwise (threads included:
    they do not inherit the block's context)."""
    global _process
    _process = principal


def is_principal(value: str) -> bool:
    """Whether a filter value is written as a principal is (FORMS)."""
    kind, colon, name = value.partition(":")
    return value == ANONYMOUS_NAME or (bool(colon) and kind in KINDS and bool(name))


def claimed_by_self(*, appended_by: str | None, actor: str) -> bool:
    """Whether an event's claimed actor is its appender's own name (`olivia` appended by `user:olivia`).
    An unknown appender (an event recorded before appenders were) is not shown as another."""
    if appended_by is None:
        return True
    return actor == appended_by or (appended_by.startswith("user:") and actor == appended_by[len("user:") :])


class PrincipalMiddleware:
    """Every append made while answering a request records whom the request was authenticated as."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response

    def __call__(self, request):
        with acting_as(request):
            return self.get_response(request)
