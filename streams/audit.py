"""Writing the console's audit trail (core/audit.py): events in the store itself, category `console`.

Written in the same transaction as the action they describe, so an action is never without its record.
Each event names the hash of its predecessor in its stream (core/audit_chain.py), so that an edit, a
deletion or a truncation made behind the store's back shows in `replaydesk audit verify`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest

from core import audit_chain
from core.audit import CATEGORY, AuditType
from streams.services import append_events
from streams.validation import WrongExpectedVersion

logger = logging.getLogger(__name__)

# Each lost race means another record of the same stream committed; this many in a row is not contention.
MAX_ATTEMPTS = 100


def record(
    *, subject: str, type: AuditType, actor: str, data: dict[str, Any], request: HttpRequest | None = None
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
                events=[
                    {"type": str(type), "data": data, "metadata": {**metadata, "prev_hash": head.prev_hash}}
                ],
                # The version the predecessor was read at: a concurrent record makes this one read again.
                expected_version=head.version,
                actor=actor or "system",
                audit_trail=True,
            )
            return
        except WrongExpectedVersion:
            if attempt == MAX_ATTEMPTS:
                raise
