"""The console's own audit trail: events in the store itself, category `console` (DESIGN.md §4).

Written in the same transaction as the action they describe, so an action is never without its record.
Each event names the hash of its predecessor in its stream (console/audit_chain.py), so that an edit, a
deletion or a truncation made behind the store's back shows in `replaydesk audit verify`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from django.http import HttpRequest

from console import audit_chain
from streams.services import append_events
from streams.validation import WrongExpectedVersion

logger = logging.getLogger(__name__)

# Each lost race means another record of the same stream committed; this many in a row is not contention.
MAX_ATTEMPTS = 100
_SUBJECT_CHAR = re.compile(r"[A-Za-z0-9_.@-]")
_MAX_USER_SUBJECT = 180


CATEGORY = "console"


def record(
    *, subject: str, type: str, actor: str, data: dict[str, Any], request: HttpRequest | None = None
) -> None:
    """Append one audit event to the stream `console-<subject>` (e.g. console-consumer.users_directory),
    chained to the stream's last event by `metadata.prev_hash`."""
    metadata: dict[str, Any] = {"actor": actor or "system"}
    if request is not None:
        metadata["ip"] = request.META.get("REMOTE_ADDR", "")
        metadata["user_agent"] = request.headers.get("User-Agent", "")[:500]
    stream = f"{CATEGORY}-{subject}"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        head = audit_chain.head(stream)
        if not head.intact:
            # Refusing would stop the console's work, and the hole stays visible to `audit verify`.
            logger.error(
                "audit stream %s has lost its event %s; chaining past the hole", stream, head.version
            )
        try:
            append_events(
                stream=stream,
                events=[{"type": type, "data": data, "metadata": {**metadata, "prev_hash": head.prev_hash}}],
                # The version the predecessor was read at: a concurrent record makes this one read again.
                expected_version=head.version,
                actor=actor or "system",
            )
            return
        except WrongExpectedVersion:
            if attempt == MAX_ATTEMPTS:
                raise


def user_subject(username: str) -> str:
    """The audit subject of a user (`user.<name>`), for any name a login form may receive.

    Stream names allow fewer characters than usernames (`+`, letters beyond ASCII), and a failed login
    can carry anything: other characters are written as `:` and their UTF-8 bytes in hex, and an overlong
    name becomes its sha256.
    """
    encoded = "".join(
        char if _SUBJECT_CHAR.fullmatch(char) else "".join(f":{byte:02x}" for byte in char.encode())
        for char in username
    )
    if not encoded or len(encoded) > _MAX_USER_SUBJECT:
        encoded = "sha256:" + hashlib.sha256(username.encode()).hexdigest()
    return f"user.{encoded}"
