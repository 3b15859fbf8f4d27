"""Roles: four Django groups, and what each may do.

- support: read streams, events, consumers, jobs and audit trails (personal data masked);
- operator: also append events, request jobs and snapshots, pause and resume consumers, retry or skip
  parked events, roll back a projection, manage sinks, and unmask personal data (audited);
- approver: read, approve or reject other people's jobs, and unmask personal data (audited);
- admin: everything, and manage users and settings (the Django admin).

A user may hold several roles; a superuser holds every capability. Pages and API endpoints each say
which capability they need (`require` for pages, `Allows` for the API); anything else gets 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from rest_framework.permissions import BasePermission

SUPPORT, OPERATOR, APPROVER, ADMIN = "support", "operator", "approver", "admin"
ROLES = (SUPPORT, OPERATOR, APPROVER, ADMIN)


class Can(StrEnum):
    READ = "read"
    APPEND = "append"
    OPERATE = "operate"
    APPROVE = "approve"
    UNMASK = "unmask"
    ADMINISTER = "administer"


GRANTS: dict[str, frozenset[Can]] = {
    SUPPORT: frozenset({Can.READ}),
    OPERATOR: frozenset({Can.READ, Can.APPEND, Can.OPERATE, Can.UNMASK}),
    APPROVER: frozenset({Can.READ, Can.APPROVE, Can.UNMASK}),
    ADMIN: frozenset(Can),
}


def ensure_groups() -> None:
    for role in ROLES:
        Group.objects.get_or_create(name=role)


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The user's roles, read once per request (kept on the user object)."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_replaydesk_roles", None)
    if cached is None:
        cached = frozenset(role_names(user.groups.all()).values_list("name", flat=True))
        user._replaydesk_roles = cached  # type: ignore[union-attr]
    return cached


def role_names(groups: QuerySet[Group]) -> QuerySet[Group]:
    """Of these groups, the roles."""
    return groups.filter(name__in=ROLES)


def remember_roles(user: AbstractBaseUser, names) -> None:
    """The user's roles as read along with the user (an API token's look-up does), so that roles_of
    reads nothing more in this request."""
    user._replaydesk_roles = frozenset(names)  # type: ignore[attr-defined]


def capabilities(user: AbstractBaseUser | AnonymousUser) -> frozenset[Can]:
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(Can)
    return frozenset().union(*(GRANTS[role] for role in roles_of(user)))


def can(user: AbstractBaseUser | AnonymousUser, capability: Can) -> bool:
    return capability in capabilities(user)


def require(capability: Can) -> Callable:
    """For a page view already behind login_required: 403 unless the user may `capability`."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request, *args: Any, **kwargs: Any):
            if not can(request.user, capability):
                raise PermissionDenied(refusal(capability))
            return view(request, *args, **kwargs)

        wrapper.required_capability = capability  # type: ignore[attr-defined]
        return wrapper

    return decorate


def refusal(capability: Can) -> str:
    who = ", ".join(role for role in ROLES if capability in GRANTS[role])
    return f"this needs the {capability} permission (roles: {who}); ask an admin"


class Allows(BasePermission):
    """DRF: `permission_classes=[Allows.to(Can.OPERATE)]`; `Allows.to(Can.READ, write=Can.APPEND)` for an
    endpoint that reads with GET and writes with POST."""

    capability: Can = Can.READ
    write: Can | None = None

    @classmethod
    def to(cls, capability: Can, *, write: Can | None = None) -> type[Allows]:
        name = f"Allows{capability.value.title()}" + (f"{write.value.title()}" if write else "")
        return type(name, (cls,), {"capability": capability, "write": write})

    def needed(self, request) -> Can:
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        return self.write if unsafe and self.write is not None else self.capability

    def has_permission(self, request, view) -> bool:
        needed = self.needed(request)
        self.message = refusal(needed)
        return can(request.user, needed)


class ReadAllowed(Allows):
    """The API's default: any endpoint that says nothing else needs the read permission."""

    capability = Can.READ
