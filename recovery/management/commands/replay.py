"""replaydesk replay PROJECTION --reason TEXT [--snapshot ID] [--stream NAME] [--exclude-… …] [--shards N]"""

from django.core.management.base import BaseCommand

from recovery import follow
from recovery.models import Job


class Command(BaseCommand):
    help = (
        "Rebuild a projection from the log (or from a snapshot) in a fresh schema and swap it in; with "
        "--stream, repair that one stream in place. Excluded events are left out."
    )

    def add_arguments(self, parser):
        parser.add_argument("projection")
        parser.add_argument("--snapshot", type=int, metavar="ID", help="Start from this snapshot.")
        parser.add_argument("--stream", metavar="NAME", help="Replay only this stream, in place.")
        follow.add_exclude_arguments(parser)
        parser.add_argument("--shards", type=int, metavar="N", help="Lanes run in parallel.")
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = follow.given(
            projection=options["projection"],
            snapshot=options["snapshot"],
            stream=options["stream"],
            exclude=follow.exclude_from(options),
            shards=options["shards"],
        )
        follow.request_and_follow(self, kind=Job.Kind.REPLAY, params=params, options=options)
