"""replaydesk rewind SUBSCRIPTION --reason TEXT (--to-position N | --to-time TIME)"""

from django.core.management.base import BaseCommand

from recovery import follow


class Command(BaseCommand):
    help = (
        "Move a subscription's checkpoints back to a position or a time: its readers receive what "
        "followed again. Needs an approval, as a replay does."
    )

    def add_arguments(self, parser):
        parser.add_argument("subscription")
        to = parser.add_mutually_exclusive_group()
        to.add_argument("--to-position", type=int, metavar="N", help="Events after position N again.")
        to.add_argument("--to-time", metavar="TIME", help="Events recorded from TIME (ISO 8601) again.")
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = follow.given(
            subscription=options["subscription"],
            to_position=options["to_position"],
            to_time=options["to_time"],
        )
        follow.request_and_follow(self, kind="rewind", params=params, options=options)
