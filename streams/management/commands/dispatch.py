"""replaydesk dispatch: wake consumers the moment events are appended (LISTEN), and every few seconds
anyway. One is enough; more are harmless (runs are de-duplicated in Redis, runners locked in PostgreSQL)."""

import time

import psycopg
from django.core.management.base import BaseCommand
from django.db import connection

from streams.tasks import enqueue_consumer, running_consumers
from streams.wakeups import Listener

SAFETY_SECONDS = 5.0


class Command(BaseCommand):
    help = "Queue consumer runs when events are appended (PostgreSQL NOTIFY), and every 5 s as a safety net."

    def handle(self, *args, **options):
        self.stdout.write("dispatch: listening for appended events")
        try:
            while True:
                try:
                    self._listen()
                except psycopg.OperationalError as exc:
                    self.stderr.write(f"dispatch: lost the database ({exc}); reconnecting in 1 s")
                    time.sleep(1)
        except KeyboardInterrupt:
            pass

    def _listen(self):
        listener = Listener()
        try:
            names = self._wake_all()
            last_safety = time.monotonic()
            while True:
                # While the log moves this returns every few tens of milliseconds at most: one wake-up
                # per slice of a burst is enough, the runner drains what it finds.
                if listener.wait(idle_seconds=SAFETY_SECONDS):
                    for name in names:
                        enqueue_consumer(name)
                if time.monotonic() - last_safety >= SAFETY_SECONDS:
                    names = self._wake_all()
                    last_safety = time.monotonic()
        finally:
            listener.close()

    def _wake_all(self) -> list[str]:
        connection.close_if_unusable_or_obsolete()
        names = running_consumers()
        for name in names:
            enqueue_consumer(name)
        return names
