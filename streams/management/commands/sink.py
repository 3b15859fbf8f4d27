"""replaydesk sink add NAME --url URL --secret S [--category C ...] [--type T ...] [--rate N]
replaydesk sink list"""

from django.core.management.base import BaseCommand, CommandError

from streams import sink_config, sinks
from streams.consumers import ConsumerError

DEFAULT_RATE = 10.0


class Command(BaseCommand):
    help = "Add an HTTP webhook sink, or list the sinks."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Add a sink: it delivers the log from its start to URL.")
        add.add_argument("name", help="1–40 lowercase letters, digits and _, starting with a letter.")
        add.add_argument("--url", required=True, help="The http(s) endpoint events are POSTed to.")
        add.add_argument("--secret", required=True, help="Signs each delivery (HMAC-SHA256); ≥ 16 chars.")
        add.add_argument("--category", action="append", default=[], help="Only this category (repeat).")
        add.add_argument("--type", action="append", default=[], help="Only this event type (repeat).")
        add.add_argument("--rate", type=float, default=DEFAULT_RATE, help="Events per second at most.")
        add.add_argument("--batch-size", type=int, default=100, help="Events per POST at most.")
        add.add_argument("--timeout", type=float, default=5.0, help="Seconds to wait for an answer.")
        add.add_argument("--from-head", action="store_true", help="Skip the events there are now.")
        add.add_argument("--actor", default="cli", help="Who adds it, for the audit trail.")
        actions.add_parser("list", help="Every sink: endpoint, filter, rate, state, breaker, checkpoint.")

    def handle(self, *args, **options):
        if options["action"] == "add":
            self._add(options)
        else:
            self._list()

    def _add(self, options):
        try:
            sink = sink_config.create_sink(
                name=options["name"],
                url=options["url"],
                secret=options["secret"],
                categories=options["category"],
                types=options["type"],
                rate_per_second=options["rate"],
                batch_size=options["batch_size"],
                timeout_seconds=options["timeout"],
                from_head=options["from_head"],
                actor=options["actor"],
            )
        except ConsumerError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"sink {sink.consumer.name} delivers to {sink_config.public_url(sink.url)} from position "
            f"{sink.consumer.position}, at most {sink.rate_per_second:g} events/s"
        )

    def _list(self):
        rows = [("NAME", "STATE", "BREAKER", "CHECKPOINT", "RATE/S", "FILTER", "URL")]
        for sink in sinks.sinks_overview():
            only = [*(f"category={c}" for c in sink.categories), *(f"type={t}" for t in sink.types)]
            rows.append(
                (
                    sink.consumer.name,
                    sink.consumer.state,
                    sink.breaker_state,
                    str(sink.consumer.position or 0),
                    f"{sink.rate_per_second:g}",
                    ",".join(only) or "all",
                    sink_config.public_url(sink.url),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
        for row in rows:
            padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*padded, row[-1]]))
