from django.core.management.base import BaseCommand, CommandError

from demo.services import DemoLoad, load_demo
from streams.validation import WrongExpectedVersion


class Command(BaseCommand):
    help = "Load the identity demo data (users, groups, permissions); running it again adds nothing."

    def handle(self, *args, **options) -> None:
        try:
            result = load_demo()
        except WrongExpectedVersion as exc:
            raise CommandError(
                f"stream {exc.stream} already has events that are not demo data, so the demo was not loaded "
                "into it; load the demo into a store of its own (another REPLAYDESK_HOME or database)"
            ) from None
        self.stdout.write(describe(result))


def describe(result: DemoLoad) -> str:
    what = f"{result.events:,} events in {result.streams:,} streams"
    what += f" ({result.users} users, {result.groups} groups)"
    if result.already_loaded:
        return f"Demo data already loaded: {what}."
    return f"Loaded demo data: {what}."
