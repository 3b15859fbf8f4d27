"""PostgreSQL advisory locks: one way to name them, one way to hold one for a while.

A transaction-scoped lock (`pg_advisory_xact_lock(lock_key(...))`) ends with its transaction; a session
lock (`held`) ends when released or when its connection dies, so a killed worker never leaves one behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def lock_key(*parts: object) -> int:
    """A stable 64-bit key for the thing named by `parts`: lock_key("consumer", name), lock_key("job", 7)."""
    name = ":".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def held(key: int) -> Iterator[bool]:
    """A session advisory lock, tried once; released at the end (or with the connection, if it dies).
    Yields whether it was got: the caller decides what someone else holding it means."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        got = cursor.fetchone()[0]
    try:
        yield got
    finally:
        if got:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
            except Exception:  # noqa: BLE001 — a broken connection has released it already
                connection.close()
