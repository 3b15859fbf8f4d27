"""replaydesk dispatch: wake consumers the moment events are appended (LISTEN), and every few seconds
anyway. One is enough; more are harmless (runs are de-duplicated in Redis, runners locked in PostgreSQL)."""

import time

import psycopg
from django.core.management.base import BaseCommand
from django.db import connection

from streams.services import NOTIFY_CHANNEL
from streams.tasks import enqueue_consumer, running_consumers

SAFETY_SECONDS = 5.0
# Appends arrive in bursts; one wake-up per burst is enough, the runner drains what it finds.
DEBOUNCE_SECONDS = 0.05


class Command(BaseCommand):
    help = "Queue consumer runs when events are appended (PostgreSQL NOTIFY), and every 5 s as a safety net."

    def handle(self, *args, **options):
        params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
        self.stdout.write("dispatch: listening for appended events")
        try:
            while True:
                try:
                    self._listen(params)
                except psycopg.OperationalError as exc:
                    self.stderr.write(f"dispatch: lost the database ({exc}); reconnecting in 1 s")
                    time.sleep(1)
        except KeyboardInterrupt:
            pass

    def _listen(self, params):
        with psycopg.connect(**params, autocommit=True) as listener:
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            names = self._wake_all()
            last_safety = time.monotonic()
            while True:
                woke = any(True for _ in listener.notifies(timeout=SAFETY_SECONDS, stop_after=1))
                if woke:
                    time.sleep(DEBOUNCE_SECONDS)
                    for _ in listener.notifies(timeout=0):
                        pass  # drain the rest of the burst
                    for name in names:
                        enqueue_consumer(name)
                if time.monotonic() - last_safety >= SAFETY_SECONDS:
                    names = self._wake_all()
                    last_safety = time.monotonic()

    def _wake_all(self) -> list[str]:
        connection.close_if_unusable_or_obsolete()
        names = running_consumers()
        for name in names:
            enqueue_consumer(name)
        return names
