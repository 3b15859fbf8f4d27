"""Personal data in events, masked wherever an event's data or metadata is shown.

REPLAYDESK_PII_PATHS names JSON paths into events (`data.email`, `data.address.street`, `metadata.ip`).
A value at such a path is shown as "•••" and a hint: the first 6 hex digits of an HMAC-SHA256 of the value,
keyed with SECRET_KEY. Equal values get equal hints, so a support agent can tell that an email changed, or
that two events name the same one, without seeing it; the key keeps the hint from being looked up in a
table of hashed addresses.

Everyone sees masked data by default, including those who may unmask. Unmasking is one view at a time
(a stream, an event, one search), by a POST that is audited (`PiiUnmasked`) and sets a flag in the
session for that view only, for a few minutes: the GETs that follow read the flag and change nothing.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from core.audit import AuditType
from core.roles import Can, can
from streams import audit
from streams.models import Event

MASK = "•••"
HINT_HEX_DIGITS = 6
SESSION_KEY = "replaydesk_unmasked"
ROOTS = ("data", "metadata")
_SUBJECT_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@-]")


def pii_paths() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The configured paths as (root, keys): "data.address.street" → ("data", ("address", "street"))."""
    return _parsed_paths(tuple(settings.REPLAYDESK_PII_PATHS))


@functools.lru_cache(maxsize=16)
def _parsed_paths(configured: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    # Parsed once per setting, not twice for every event masked.
    paths = []
    for path in configured:
        root, _, rest = path.partition(".")
        if root in ROOTS and rest:
            paths.append((root, tuple(rest.split("."))))
    return tuple(paths)


def personal(root: str, path: str) -> bool:
    """Whether `root.path` (data.email, data.email.domain) is, or lies inside, a personal-data path."""
    keys = tuple(path.split("."))
    return any(path_root == root and keys[: len(found)] == found for path_root, found in pii_paths())


def sees_masked(user: Any) -> bool:
    """Roles that may not unmask personal data may not search or filter on it either: a filter such as
    data.email=guess would answer what the mask hides."""
    return not can(user, Can.UNMASK)


# Why a filter or search term on personal data is refused (after the field's name).
MASKED_FILTER = "is personal data, masked for your role: it cannot be searched or filtered on"


# The value as the hint hashes it: keys sorted, no spaces, text as is.
_canonical = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode


def mask_value(value: Any) -> str:
    keyed = _keyed(settings.SECRET_KEY).copy()
    keyed.update(_canonical(value).encode())
    return MASK + keyed.hexdigest()[:HINT_HEX_DIGITS]


@functools.lru_cache(maxsize=4)
def _keyed(secret_key: str) -> hmac.HMAC:
    # HMAC keyed once per key and copied for each value: keying it costs as much as hashing a value,
    # and a page of the log masks hundreds of them.
    return hmac.new(secret_key.encode(), digestmod=hashlib.sha256)


def is_masked(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(MASK)


def mask_document(document: Any, root: str, *, in_place: bool = False) -> Any:
    """A copy of `document` (an event's data or metadata) with the values at the root's PII paths
    masked; the document itself when nothing in it is personal. `in_place`: mask the document itself,
    which the caller has just decoded and shares with nobody."""
    if not isinstance(document, dict):
        return document
    masked = document
    for path_root, keys in pii_paths():
        if path_root != root or not _holds(document, keys):
            continue
        if masked is document and not in_place:
            masked = copy.deepcopy(document)
        parent = masked
        for key in keys[:-1]:
            parent = parent[key]
        parent[keys[-1]] = mask_value(parent[keys[-1]])
    return masked


def _holds(document: dict, keys: tuple[str, ...]) -> bool:
    node: Any = document
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return node is not None


def mask_event(event: Event) -> Event:
    """A copy of the event (not saved, never to be saved) with its personal data masked."""
    data, metadata = mask_document(event.data, "data"), mask_document(event.metadata, "metadata")
    if data is event.data and metadata is event.metadata:
        return event
    masked = copy.copy(event)
    masked.data, masked.metadata = data, metadata
    return masked


def mask_events(events: Iterable[Event], *, masked: bool = True) -> list[Event]:
    return list(mask_each(events, masked=masked))


def mask_each(events: Iterable[Event], *, masked: bool = True) -> Iterator[Event]:
    """mask_events one at a time, for a reader that keeps only a little of each event."""
    return (mask_event(event) for event in events) if masked else iter(events)


# Unmasking, one view at a time.


def view_key(view: str, target: str) -> str:
    return f"{view}:{target}"


def unmask_seconds() -> float:
    return settings.REPLAYDESK_UNMASK_SECONDS


def is_unmasked(request: HttpRequest, key: str) -> bool:
    """True when this user may unmask and unmasked this very view a short while ago. Reads only."""
    if not can(request.user, Can.UNMASK):
        return False
    until = request.session.get(SESSION_KEY, {}).get(key)
    return until is not None and until > time.time()


def must_mask(request: HttpRequest, key: str | None) -> bool:
    return key is None or not is_unmasked(request, key)


def unmask(*, request: HttpRequest, view: str, target: str, detail: dict[str, Any] | None = None) -> str:
    """Record who unmasked what (PiiUnmasked, with IP and user agent) and open that view unmasked for
    unmask_seconds(). The caller checked Can.UNMASK; this checks again, being the one that discloses."""
    if not can(request.user, Can.UNMASK):
        raise PermissionError("this user may not unmask personal data")
    key = view_key(view, target)
    record_unmasked(request=request, view=view, target=target, detail=detail)
    flags = {k: until for k, until in request.session.get(SESSION_KEY, {}).items() if until > time.time()}
    flags[key] = time.time() + unmask_seconds()
    request.session[SESSION_KEY] = flags
    return key


def record_unmasked(
    *, request: HttpRequest, view: str, target: str, detail: dict[str, Any] | None = None
) -> None:
    """The audit record of one disclosure: the view, what it shows, and the paths it reveals."""
    username = request.user.get_username()
    audit.record(
        subject=f"pii.{_SUBJECT_UNSAFE.sub('_', username)[:150]}",
        type=AuditType.PII_UNMASKED,
        actor=username,
        data={
            "view": view,
            "target": target,
            "paths": list(settings.REPLAYDESK_PII_PATHS),
            **(detail or {}),
        },
        request=request,
    )


def mask_again(*, request: HttpRequest, view: str, target: str) -> None:
    flags = dict(request.session.get(SESSION_KEY, {}))
    if flags.pop(view_key(view, target), None) is not None:
        request.session[SESSION_KEY] = flags
