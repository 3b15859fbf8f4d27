"""Waking whoever follows the log (the dispatcher, `tail --follow`, a subscription's waiting fetches)
when events are appended.

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

import logging
import threading
import time

import psycopg
from django.db import connection

logger = logging.getLogger(__name__)

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


# Between two looks at the log, a waiting request waits at most this long: what no append announces
# (a lease that expired, a rewind) is seen that late at worst, and so is every append while the
# watch cannot listen.
LOOK_AGAIN_SECONDS = 1.0
# After the watch lost its connection, it tries again this long after.
RECONNECT_SECONDS = 2.0


class AppendWatch:
    """One Listener per process, in a thread of its own, for the requests that wait for events (a
    subscription's fetch): each waits on a condition that the thread notifies when events may have
    been appended, instead of every waiting request asking the database ten times a second. Started
    at the first wait, so that a web server that forks its workers starts one in each."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._count = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    def seen(self) -> int:
        """A mark to wait from: take it before looking at the log, so that nothing appended between the
        look and the wait is missed."""
        self._start()
        with self._condition:
            return self._count

    def wait(self, seen: int, timeout: float) -> int:
        """Wait until events may have been appended since `seen`, or `timeout` (at most
        LOOK_AGAIN_SECONDS) passed; the mark to wait from next."""
        with self._condition:
            self._condition.wait_for(lambda: self._count != seen, min(timeout, LOOK_AGAIN_SECONDS))
            return self._count

    def stop(self) -> None:
        """Close the connection and end the thread (the next wait starts them again)."""
        with self._condition:
            thread, self._thread, self._stopping = self._thread, None, True
        if thread is not None:
            thread.join()
        self._stopping = False

    def _start(self) -> None:
        with self._condition:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="replaydesk-append-watch", daemon=True)
                self._thread.start()

    def _wake(self) -> None:
        with self._condition:
            self._count += 1
            self._condition.notify_all()

    def _run(self) -> None:
        while not self._stopping:
            try:
                listener = Listener()
            except psycopg.Error:
                logger.warning("cannot listen for appends; waiters look every %s s", LOOK_AGAIN_SECONDS)
                time.sleep(RECONNECT_SECONDS)
                continue
            try:
                while not self._stopping:
                    if listener.wait(idle_seconds=LOOK_AGAIN_SECONDS):
                        self._wake()
            except psycopg.Error:
                logger.warning("lost the connection that listens for appends; listening again")
                self._wake()  # whatever it missed, the waiters look
                time.sleep(RECONNECT_SECONDS)
            finally:
                listener.close()


appends = AppendWatch()
