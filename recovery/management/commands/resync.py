"""replaydesk resync SINK --reason TEXT [--from-position N | --from-time TIME] [--stream NAME …] [--rate R]
[--exclude-… …]"""

from django.core.management.base import BaseCommand

from recovery import follow
from recovery.models import Job


class Command(BaseCommand):
    help = (
        "Re-send events to a sink, in order, at a rate limit: those after a position or time, or those "
        "of some streams. The receiver keeps each event id once."
    )

    def add_arguments(self, parser):
        parser.add_argument("sink")
        start = parser.add_mutually_exclusive_group()
        start.add_argument("--from-position", type=int, metavar="N", help="Events after position N.")
        start.add_argument("--from-time", metavar="TIME", help="Events recorded from TIME (ISO 8601).")
        parser.add_argument(
            "--stream", action="append", default=[], metavar="NAME", help="Only this stream (repeatable)."
        )
        parser.add_argument(
            "--rate", type=float, metavar="R", help="Events per second (default: the sink's)."
        )
        follow.add_exclude_arguments(parser)
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = follow.given(
            sink=options["sink"],
            from_position=options["from_position"],
            from_time=options["from_time"],
            streams=options["stream"] or None,
            rate_per_second=options["rate"],
            exclude=follow.exclude_from(options),
        )
        follow.request_and_follow(self, kind=Job.Kind.RESYNC, params=params, options=options)
