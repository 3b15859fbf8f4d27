"""The identity demo domain: users, groups and permissions, as a few thousand events.

The history is generated from a fixed seed, with event ids derived from stream and sequence (uuid5), so
it is the same on every machine and every run; loading it again adds nothing, because appends are
idempotent by event id. Events are appended one request at a time, in the order the requests happened,
so the global log reads like a real timeline and a request's events sit together.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from streams.models import Event
from streams.services import ImportBatch, import_events

SEED = 20260105
# Ids of demo events and requests are uuid5 names under this namespace.
NAMESPACE = uuid.UUID("5d1e6f4a-2b7c-4c1e-9a8e-7f3b2d6c1a90")
USERS = 300
# What `replaydesk up --demo` loads: enough that a projection takes a while to catch up and the charts
# and replays have something to show, small enough to load in seconds.
STARTED_AT = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
ADMINS = ("alice.admin", "bruno.admin", "chen.admin", "dana.admin")
RESOURCES = (
    "issueABC",
    "issueXYZ",
    "issue42",
    "repo-payments",
    "repo-web",
    "repo-infra",
    "billing",
    "wiki-eng",
    "deploys",
)
PERMISSIONS = ("read", "write", "admin")
_AREAS = (
    "payments",
    "web",
    "infra",
    "security",
    "support",
    "data",
    "mobile",
    "billing",
    "search",
    "identity",
)
_ROLES = {"team": "team", "oncall": "on-call", "leads": "leads"}
_FIRST = (
    "Ada Ben Cleo Dev Elif Femi Gus Hana Ivo Jun Kai Lena Mira Nils Omar Pia Quinn Rosa Sami Tariq Uma Vera "
    "Wen Xavi Yara Zoe Aiko Bruno Chloe Diego"
).split()
_LAST = (
    "Adams Baker Costa Diaz Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Lopez Moreau Nakamura Okafor "
    "Petrov Quist Rossi Silva Tanaka Ueda Varga Weber Xu Yilmaz Zimmer"
).split()


@dataclass(frozen=True)
class DemoAppend:
    """One append call: the events one request wrote to one stream."""

    stream: str
    expected_version: int | str
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class DemoLoad:
    events_added: int
    events: int
    streams: int
    users: int
    groups: int

    @property
    def already_loaded(self) -> bool:
        return self.events_added == 0


def load_demo(*, users: int = USERS, events: int | None = None) -> DemoLoad:
    """Load the demo history unless it is loaded already, in one import (COPY).

    All or nothing: a demo stream that already holds other events (WrongExpectedVersion) leaves nothing
    half-loaded. Events keep the time the history says they happened as their recorded_at.
    """
    appends = list(demo_history(users=users, events=events))
    ids = [event["id"] for append in appends for event in append.events]
    added = 0
    if not Event.objects.filter(event_id__in=[ids[0], ids[-1]]).exists():
        batches = [
            ImportBatch(
                stream=append.stream,
                expected_version=append.expected_version,
                events=[
                    {**event, "recorded_at": event["metadata"]["occurred_at"]} for event in append.events
                ],
            )
            for append in appends
        ]
        added = import_events(batches=batches).events
    streams = {append.stream for append in appends}
    return DemoLoad(
        events_added=added,
        events=len(ids),
        streams=len(streams),
        users=sum(name.startswith("user-") for name in streams),
        groups=sum(name.startswith("group-") for name in streams),
    )


def demo_history(*, users: int = USERS, events: int | None = None, seed: int = SEED) -> Iterator[DemoAppend]:
    """The whole demo history as append calls, in the order they are made: `users` people, and about
    `events` events in all when given (else five changes per user)."""
    return _History(random.Random(seed), users, events).run()


@dataclass
class _User:
    user_id: str
    username: str
    name: str
    email: str
    grants: set[tuple[str, str]] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)


class _History:
    def __init__(self, rng: random.Random, users: int, events: int | None = None):
        self.rng = rng
        self.user_count = users
        self.target_events = events
        self.emitted = 0
        self.minutes = 95.0
        self.users: dict[str, _User] = {}
        self.user_ids: list[str] = []
        self.groups: dict[str, set[str]] = {}
        self.versions: dict[str, int] = {}
        self.clock = STARTED_AT
        self.requests = 0

    def run(self) -> Iterator[DemoAppend]:
        for area in _AREAS:
            for role, label in _ROLES.items():
                yield from self._create_group(f"{area}-{role}", f"{area.capitalize()} {label}")
        # Everyone is onboarded in the first two thirds of the history; changes follow throughout.
        # About 2.5 events a step; a large history is spread over six weeks rather than years.
        steps = self.user_count * 5 if self.target_events is None else max(1, int(self.target_events / 2.5))
        self.minutes = minutes = 95 if self.target_events is None else max(0.01, 2 * 6 * 7 * 24 * 60 / steps)
        step = 0
        while step < steps if self.target_events is None else self.emitted < self.target_events:
            self.clock += dt.timedelta(minutes=self.rng.uniform(0.1, minutes))
            onboarding_due = len(self.users) < self.user_count * min(1.0, 1.5 * (step + 1) / steps)
            if onboarding_due or not self.users:
                yield from self._onboard(len(self.users) + 1)
            else:
                yield from self.rng.choice(self._changes)(self)
            step += 1

    def _request(self) -> _Request:
        self.requests += 1
        return _Request(self, actor=self.rng.choice(ADMINS))

    def _create_group(self, group_id: str, name: str) -> list[DemoAppend]:
        request = self._request()
        self.groups[group_id] = set()
        request.emit(f"group-{group_id}", "GroupCreated", {"group_id": group_id, "name": name})
        return request.appends()

    def _onboard(self, number: int) -> list[DemoAppend]:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        username = f"{first[0]}{last}{number}".lower()
        user = _User(str(number), username, f"{first} {last}", f"{username}@example.com")
        self.users[user.user_id] = user
        self.user_ids.append(user.user_id)
        request = self._request()
        stream = f"user-{user.user_id}"
        request.emit(
            stream,
            "UserCreated",
            {"user_id": user.user_id, "username": user.username, "name": user.name, "email": user.email},
        )
        for resource in self.rng.sample(RESOURCES, self.rng.randint(1, 3)):
            permission = self.rng.choice(PERMISSIONS[:2])
            user.grants.add((resource, permission))
            request.emit(
                stream,
                "PermissionGranted",
                {"user_id": user.user_id, "resource": resource, "permission": permission},
            )
        for group_id in sorted(self.rng.sample(sorted(self.groups), self.rng.randint(1, 2))):
            self._add_member(request, group_id, user)
        return request.appends()

    def _grant(self) -> list[DemoAppend]:
        user = self._some_user()
        resource, permission = self.rng.choice(RESOURCES), self.rng.choice(PERMISSIONS)
        if (resource, permission) in user.grants:
            return []
        user.grants.add((resource, permission))
        request = self._request()
        request.emit(
            f"user-{user.user_id}",
            "PermissionGranted",
            {"user_id": user.user_id, "resource": resource, "permission": permission},
        )
        return request.appends()

    def _revoke(self) -> list[DemoAppend]:
        user = self._some_user()
        if not user.grants:
            return []
        resource, permission = self.rng.choice(sorted(user.grants))
        user.grants.discard((resource, permission))
        request = self._request()
        request.emit(
            f"user-{user.user_id}",
            "PermissionRevoked",
            {"user_id": user.user_id, "resource": resource, "permission": permission},
        )
        return request.appends()

    def _rename(self) -> list[DemoAppend]:
        user = self._some_user()
        user.name = f"{user.name.split()[0]} {self.rng.choice(_LAST)}"
        request = self._request()
        request.emit(f"user-{user.user_id}", "UserNameSet", {"user_id": user.user_id, "name": user.name})
        return request.appends()

    def _change_email(self) -> list[DemoAppend]:
        user = self._some_user()
        domain = self.rng.choice(("example.com", "example.org", "example.net"))
        user.email = f"{user.username}.{self.rng.randint(1, 99)}@{domain}"
        request = self._request()
        request.emit(f"user-{user.user_id}", "UserEmailSet", {"user_id": user.user_id, "email": user.email})
        return request.appends()

    def _join_group(self) -> list[DemoAppend]:
        user = self._some_user()
        group_id = self.rng.choice(sorted(self.groups))
        if user.user_id in self.groups[group_id]:
            return []
        request = self._request()
        self._add_member(request, group_id, user)
        return request.appends()

    def _leave_group(self) -> list[DemoAppend]:
        user = self._some_user()
        if not user.groups:
            return []
        request = self._request()
        self._remove_member(request, self.rng.choice(sorted(user.groups)), user)
        return request.appends()

    def _offboard(self) -> list[DemoAppend]:
        """Someone leaves: every permission revoked and every membership removed, in one request."""
        user = self._some_user()
        if not user.grants and not user.groups:
            return []
        request = self._request()
        for resource, permission in sorted(user.grants):
            request.emit(
                f"user-{user.user_id}",
                "PermissionRevoked",
                {"user_id": user.user_id, "resource": resource, "permission": permission},
            )
        user.grants.clear()
        for group_id in sorted(user.groups):
            self._remove_member(request, group_id, user)
        return request.appends()

    def _mistake(self) -> list[DemoAppend]:
        """Admin rights granted to the wrong person, and taken back by a colleague minutes later."""
        user = self._some_user()
        resource = self.rng.choice(RESOURCES)
        if (resource, "admin") in user.grants:
            return []
        stream = f"user-{user.user_id}"
        data = {"user_id": user.user_id, "resource": resource, "permission": "admin"}
        oops = self._request()
        oops.emit(stream, "PermissionGranted", data)
        appends = oops.appends()
        self.clock += dt.timedelta(minutes=self.rng.uniform(2, 30) * min(1.0, self.minutes / 95))
        fix = self._request()
        fix.emit(stream, "PermissionRevoked", data)
        return appends + fix.appends()

    # Weighted by repetition: grants and memberships change most often, people leave rarely.
    _changes = (
        _mistake,
        _grant,
        _grant,
        _grant,
        _revoke,
        _revoke,
        _rename,
        _change_email,
        _join_group,
        _join_group,
        _leave_group,
        _offboard,
    )

    def _some_user(self) -> _User:
        # Skewed: a few early accounts (admins, bots, busy teams) see most of the changes.
        return self.users[self.user_ids[int(len(self.user_ids) * self.rng.random() ** 3)]]

    def _add_member(self, request: _Request, group_id: str, user: _User) -> None:
        self.groups[group_id].add(user.user_id)
        user.groups.add(group_id)
        request.emit(f"group-{group_id}", "MemberAdded", {"group_id": group_id, "user_id": user.user_id})

    def _remove_member(self, request: _Request, group_id: str, user: _User) -> None:
        self.groups[group_id].discard(user.user_id)
        user.groups.discard(group_id)
        request.emit(f"group-{group_id}", "MemberRemoved", {"group_id": group_id, "user_id": user.user_id})


class _Request:
    """What one admin did in one go: events sharing a correlation id, each caused by the one before."""

    def __init__(self, history: _History, *, actor: str):
        self.history = history
        self.actor = actor
        self.correlation_id = uuid.uuid5(NAMESPACE, f"request-{history.requests}")
        self.caused_by = self.correlation_id
        self.by_stream: dict[str, list[dict[str, Any]]] = {}

    def emit(self, stream: str, event_type: str, data: dict[str, Any]) -> None:
        history = self.history
        if stream not in self.by_stream:
            self.by_stream[stream] = []
        sequence = history.versions.get(stream, 0) + len(self.by_stream[stream]) + 1
        # The size is part of the name: a smaller demo is another history, not a prefix of this one.
        event_id = uuid.uuid5(NAMESPACE, f"{history.user_count}/{stream}/{sequence}")
        history.clock += dt.timedelta(milliseconds=history.rng.randint(5, 400))
        history.emitted += 1
        self.by_stream[stream].append(
            {
                "id": str(event_id),
                "type": event_type,
                "data": data,
                "metadata": {
                    "actor": self.actor,
                    "correlation_id": str(self.correlation_id),
                    "causation_id": str(self.caused_by),
                    "occurred_at": history.clock.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                },
            }
        )
        self.caused_by = event_id

    def appends(self) -> list[DemoAppend]:
        appends = []
        for stream, events in self.by_stream.items():
            version = self.history.versions.get(stream, 0)
            self.history.versions[stream] = version + len(events)
            appends.append(DemoAppend(stream=stream, expected_version=version or "no_stream", events=events))
        return appends
