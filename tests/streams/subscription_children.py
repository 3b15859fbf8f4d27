"""The subscriber processes of tests/streams/test_subscription_readers.py, started with "spawn" (see
tests/streams/global_order_children.py: nothing here imports Django at module level)."""

from __future__ import annotations

import os
import time


def subscriber(database_url: str, name: str, reader: str, out, stop, hang_after: int | None = None) -> None:
    """Fetch, handle (report) and acknowledge batches until told to stop. With `hang_after`, stop
    mid-batch after handling that many events, without acknowledging any, and wait to be killed."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from streams import subscriptions

    subscription = subscriptions.get_subscription(name=name)
    handled = 0
    try:
        while not stop.is_set():
            batch = subscriptions.fetch(
                subscription=subscription, reader=reader, max_events=5, wait_seconds=0.5, user_id=reader
            )
            for event in batch.events:
                out.put(
                    (
                        "handled",
                        reader,
                        str(batch.lease),
                        batch.partition,
                        event.position,
                        event.stream.name,
                        event.sequence,
                    )
                )
                handled += 1
                if hang_after is not None and handled >= hang_after:
                    out.put(("hanging", reader))
                    time.sleep(3600)
            if not batch.events:
                continue
            try:
                subscriptions.ack(
                    subscription=subscription, lease=batch.lease, position=batch.delivered_up_to
                )
            except subscriptions.LeaseConflict:
                # Too slow: the lease expired and the partition went on without this reader.
                out.put(("refused", reader, [event.position for event in batch.events]))
                continue
            out.put(("acked", reader, [event.position for event in batch.events]))
    except BaseException as exc:  # noqa: BLE001 — the test reports it instead of waiting for nothing
        out.put(("error", reader, f"{exc.__class__.__name__}: {exc}"))
        raise
