"""replaydesk verify PROJECTION --reason TEXT [--repair]"""

from django.core.management.base import BaseCommand

from recovery import follow
from recovery.models import Job


class Command(BaseCommand):
    help = (
        "Rebuild a projection aside and compare it with the live one, table by table; with --repair, "
        "swap the rebuilt one in when they differ."
    )

    def add_arguments(self, parser):
        parser.add_argument("projection")
        parser.add_argument(
            "--repair", action="store_true", help="Swap in the rebuilt schema if they differ."
        )
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = {"projection": options["projection"], "repair": options["repair"]}
        follow.request_and_follow(self, kind=Job.Kind.VERIFY, params=params, options=options)
