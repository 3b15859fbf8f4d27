import time

from django.core.management.base import BaseCommand, CommandError

from demo import search_index
from demo.services import USERS, DemoLoad, load_demo
from streams.consumers import ConsumerError
from streams.validation import WrongExpectedVersion


class Command(BaseCommand):
    help = "Load the identity demo data (users, groups, permissions); running it again adds nothing."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=USERS, help=f"How many people (default {USERS}).")
        parser.add_argument(
            "--events", type=int, help="About how many events in all (default: five changes per person)."
        )
        parser.add_argument(
            "--search-index-url",
            metavar="BASE_URL",
            help="Where this Replaydesk serves the demo's search index: its sink is made (or moved) there.",
        )

    def handle(self, *args, **options) -> None:
        if options["users"] < 1 or (options["events"] is not None and options["events"] < 1):
            raise CommandError("--users and --events must be at least 1")
        started = time.monotonic()
        try:
            result = load_demo(users=options["users"], events=options["events"])
        except WrongExpectedVersion as exc:
            raise CommandError(
                f"stream {exc.stream} already has events that are not demo data, so the demo was not loaded "
                "into it; load the demo into a store of its own (another REPLAYDESK_HOME or database)"
            ) from None
        self.stdout.write(describe(result) + f" ({time.monotonic() - started:.1f} s)")
        if options["search_index_url"]:
            try:
                search_index.ensure_sink(base_url=options["search_index_url"])
            except ConsumerError as exc:
                raise CommandError(f"the demo's search-index sink was not made: {exc}") from None


def describe(result: DemoLoad) -> str:
    what = f"{result.events:,} events in {result.streams:,} streams"
    what += f" ({result.users:,} users, {result.groups:,} groups)"  # one number format in a line
    if result.already_loaded:
        return f"Demo data already loaded: {what}."
    return f"Loaded demo data: {what}."
