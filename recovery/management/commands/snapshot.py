"""replaydesk snapshot PROJECTION --reason TEXT: a consistent copy of a projection's tables, on disk."""

from django.core.management.base import BaseCommand

from recovery import follow
from recovery.models import Job


class Command(BaseCommand):
    help = "Take a snapshot of a projection (its tables and checkpoints at one position), as a job."

    def add_arguments(self, parser):
        parser.add_argument("projection")
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = {"projection": options["projection"]}
        follow.request_and_follow(self, kind=Job.Kind.SNAPSHOT, params=params, options=options)
