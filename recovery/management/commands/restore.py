"""replaydesk restore PROJECTION --reason TEXT [--snapshot ID | --before TIME] [--exclude-… …] [--shards N]"""

from django.core.management.base import BaseCommand

from recovery import follow
from recovery.models import Job


class Command(BaseCommand):
    help = (
        "Restore a projection from a snapshot (the latest, or the latest before TIME), replay the log "
        "after it, check it, and swap it in; prints the RPO and RTO."
    )

    def add_arguments(self, parser):
        parser.add_argument("projection")
        start = parser.add_mutually_exclusive_group()
        start.add_argument("--snapshot", type=int, metavar="ID", help="This snapshot.")
        start.add_argument("--before", metavar="TIME", help="The latest snapshot taken before TIME.")
        follow.add_exclude_arguments(parser)
        parser.add_argument("--shards", type=int, metavar="N", help="Lanes run in parallel.")
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = follow.given(
            projection=options["projection"],
            snapshot=options["snapshot"],
            before=options["before"],
            exclude=follow.exclude_from(options),
            shards=options["shards"],
        )
        follow.request_and_follow(self, kind=Job.Kind.RESTORE, params=params, options=options)
