from django.core.management.base import BaseCommand

from demo.services import DemoLoad, load_demo


class Command(BaseCommand):
    help = "Load the identity demo data (users, groups, permissions); running it again adds nothing."

    def handle(self, *args, **options) -> None:
        self.stdout.write(describe(load_demo()))


def describe(result: DemoLoad) -> str:
    what = f"{result.events:,} events in {result.streams:,} streams"
    what += f" ({result.users} users, {result.groups} groups)"
    if result.already_loaded:
        return f"Demo data already loaded: {what}."
    return f"Loaded demo data: {what}."
