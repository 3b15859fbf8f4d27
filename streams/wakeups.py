"""Waking whoever follows the log (the dispatcher, `tail --follow`) when events are appended.

An append NOTIFYs after its commit, never inside the transaction: a NOTIFY inside one takes a
database-wide lock through the commit, so concurrent appends could not share an fsync. And a process
notifies at most once per NOTIFY_EVERY_SECONDS: a NOTIFY is a round trip of its own, and during a burst
nobody needs one per event. So a listener, once woken, follows the settled head itself every
FOLLOW_SECONDS until the head has stood still for QUIET_SECONDS. Every commit is then seen within about
FOLLOW_SECONDS: it either notified, or came at most NOTIFY_EVERY_SECONDS after its process's last
notification, while the listener that notification woke is still following. An append that rolls
back notifies nobody: if it was holding readers back, what it held back is seen at the next
notification, or at the listener's idle timeout (the dispatcher's 5 s).
"""

from __future__ import annotations

import threading
import time

import psycopg
from django.db import connection

NOTIFY_CHANNEL = "replaydesk_events"
NOTIFY_EVERY_SECONDS = 0.05
FOLLOW_SECONDS = 0.05
QUIET_SECONDS = 1.0
assert QUIET_SECONDS > NOTIFY_EVERY_SECONDS + FOLLOW_SECONDS

_last_notified = 0.0
_notify_lock = threading.Lock()


def notify(last_position: int) -> None:
    """Tell the listeners that events up to `last_position` are committed, unless this process told them
    less than NOTIFY_EVERY_SECONDS ago (they are following the head then)."""
    global _last_notified
    with _notify_lock:
        now = time.monotonic()
        if now - _last_notified < NOTIFY_EVERY_SECONDS:
            return
        _last_notified = now
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, str(last_position)])


class Listener:
    """A connection of its own that LISTENs, and follows the settled head while the log moves."""

    def __init__(self) -> None:
        params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
        self.connection = psycopg.connect(**params, autocommit=True)
        self.connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        self._head = self._settled_head()
        self._moved_at = time.monotonic()

    def wait(self, idle_seconds: float) -> bool:
        """Wait until events may have been appended since the last call (True), or for idle_seconds
        when the log has been quiet, FOLLOW_SECONDS while it moves (False: nothing new)."""
        following = time.monotonic() - self._moved_at < QUIET_SECONDS
        timeout = FOLLOW_SECONDS if following else idle_seconds
        notified = any(True for _ in self.connection.notifies(timeout=timeout, stop_after=1))
        if notified:
            for _ in self.connection.notifies(timeout=0):
                pass  # one wake-up for the whole burst
        head = self._settled_head()
        if not notified and head == self._head:
            return False
        self._head, self._moved_at = head, time.monotonic()
        return True

    def close(self) -> None:
        self.connection.close()

    def _settled_head(self) -> int:
        return self.connection.execute("SELECT replaydesk_settled_head()").fetchone()[0]
