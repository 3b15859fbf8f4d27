"""The writer and reader processes of tests/streams/test_global_order.py, started with "spawn".

A forked child inherits every lock another thread of the test process held at that moment (a live server,
a log handler), and can hang on it; a spawned child starts clean. So nothing here imports Django at module
level: the child sets up Django against the test database first, then runs its part.
"""

from __future__ import annotations

import os
import random
import time
import uuid

ROUNDS = 60


class _Rollback(Exception):
    pass


def run(database_url: str, role: str, seed: int, writers_done, out) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from core import principals

    # A spawned process starts with nobody acting; its appends are the tests' as the parent's are.
    principals.run_as(principals.system("tests"))
    try:
        result = _writer(seed) if role == "writer" else _reader(seed, writers_done)
    except BaseException as exc:  # noqa: BLE001 — the test reports it instead of waiting for nothing
        out.put(("error", f"{role} {seed}: {exc.__class__.__name__}: {exc}"))
        raise
    out.put((role, result))


def _writer(seed: int) -> list[str]:
    from django.db import connections, transaction

    from streams.services import append_events

    rng = random.Random(seed)
    committed: list[str] = []
    for round_ in range(ROUNDS):
        stream = f"order-{rng.randrange(10)}"
        batch = [
            {"id": str(uuid.uuid4()), "type": "ItemAdded", "data": {"worker": seed, "round": round_}}
            for _ in range(rng.randint(1, 3))
        ]
        if rng.random() < 0.5:
            # On its own: one statement in autocommit, the way most appends run.
            append_events(stream=stream, events=batch)
        else:
            # In a caller's transaction that lingers, and sometimes rolls back.
            try:
                with transaction.atomic():
                    append_events(stream=stream, events=batch)
                    time.sleep(rng.uniform(0, 0.004))
                    if rng.random() < 0.4:
                        raise _Rollback
            except _Rollback:
                continue
        committed.extend(event["id"] for event in batch)
        time.sleep(rng.uniform(0, 0.003))
    connections.close_all()
    return committed


def _reader(seed: int, writers_done) -> list[tuple[int, str, str, int]]:
    from django.db import connections

    from streams.selectors import read_all

    rng = random.Random(seed)
    seen: list[tuple[int, str, str, int]] = []
    cursor = 0
    while True:
        done = writers_done.is_set()
        batch = read_all(after_position=cursor, limit=rng.randint(1, 25))
        seen.extend((e.position, str(e.event_id), e.stream.name, e.sequence) for e in batch)
        if batch:
            cursor = batch[-1].position
        elif done:
            break  # the writers had finished before this empty read: we are at the end
        else:
            time.sleep(rng.uniform(0, 0.005))
    connections.close_all()
    return seen
