"""replaydesk lag: every consumer's checkpoint, lag and health, as a table or JSON."""

import dataclasses
import json

from django.core.management.base import BaseCommand

from streams.lag import consumer_statuses


class Command(BaseCommand):
    help = "Show each consumer's checkpoint, lag in events and seconds, rate and health."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="One JSON object per consumer, a line each.")

    def handle(self, *args, **options):
        statuses = consumer_statuses()
        if options["json"]:
            for status in statuses:
                self.stdout.write(json.dumps(dataclasses.asdict(status), default=str))
            return
        if not statuses:
            self.stdout.write(
                "No consumers yet (projections appear once a worker or `replaydesk dispatch` runs)."
            )
            return
        rows = [("consumer", "kind", "health", "checkpoint", "head", "lag", "lag s", "rate/s")]
        for s in statuses:
            rate = "-" if s.rate is None else f"{s.rate:.1f}"
            rows.append(
                (
                    s.name,
                    s.kind,
                    s.health,
                    str(s.checkpoint),
                    str(s.head),
                    str(s.lag_events),
                    f"{s.lag_seconds:.1f}",
                    rate,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            )
        for s in statuses:
            if s.last_error and s.health == "failing":
                self.stdout.write(f"\n{s.name}: {s.last_error}")
