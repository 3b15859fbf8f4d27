"""replaydesk tail [--after N] [--follow]: the global log as JSON lines, woken by NOTIFY when following."""

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.queries import QueryErrors, QueryParser
from streams.api import EventOut
from streams.queries import parse_log_filter
from streams.selectors import read_all
from streams.wakeups import Listener

# A NOTIFY can be missed while a listener reconnects; a slow poll bounds how late an event shows.
POLL_SECONDS = 5.0


class Command(BaseCommand):
    help = "Print the global log as JSON lines after a position; with --follow, keep printing new events."

    def add_arguments(self, parser):
        parser.add_argument("--after", type=int, default=0, help="Start after this position (default 0).")
        parser.add_argument(
            "--follow", action="store_true", help="Wait for new events (NOTIFY) until Ctrl-C."
        )
        parser.add_argument("--type", action="append", default=[], help="Only this event type (repeatable).")
        parser.add_argument("--category")
        parser.add_argument("--stream")
        parser.add_argument("--actor", help="Only events that claim this actor.")
        parser.add_argument(
            "--appended-by", help="Only events the store recorded as appended by this (user:NAME, …)."
        )
        parser.add_argument("--max-events", type=int, help="Stop after printing this many events.")

    def handle(self, *args, **options):
        log_filter = self._filter(options)
        position, printed, limit = options["after"], 0, options["max_events"]
        listener = Listener() if options["follow"] else None
        try:
            while limit is None or printed < limit:
                batch = read_all(
                    after_position=position,
                    log_filter=log_filter,
                    limit=500,
                    max_bytes=settings.REPLAYDESK_READ_MAX_BYTES,
                )
                for event in batch[: None if limit is None else limit - printed]:
                    self.stdout.write(json.dumps(EventOut(event).data))
                    printed += 1
                if batch:
                    position = batch[-1].position
                    continue
                if listener is None:
                    break
                listener.wait(idle_seconds=POLL_SECONDS)
        except KeyboardInterrupt:
            pass
        finally:
            if listener is not None:
                listener.close()

    def _filter(self, options):
        params = {key: options[key] for key in ("category", "stream", "actor", "appended_by") if options[key]}
        if options["type"]:
            params["type"] = ",".join(options["type"])
        parser = QueryParser(params, params.keys())
        log_filter = parse_log_filter(parser)
        try:
            parser.done()
        except QueryErrors as exc:
            problems = (f"--{name.replace('_', '-')}: {v[0]}" for name, v in exc.errors.items())
            raise CommandError("; ".join(problems)) from exc
        return log_filter
