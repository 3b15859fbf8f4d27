"""replaydesk skip_to_head SUBSCRIPTION --reason TEXT"""

from django.core.management.base import BaseCommand

from recovery import follow


class Command(BaseCommand):
    help = (
        "Move a subscription's checkpoints to the log's head: its readers never receive the events they "
        "had not received yet. Needs an approval, as a replay does."
    )

    def add_arguments(self, parser):
        parser.add_argument("subscription")
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = {"subscription": options["subscription"]}
        follow.request_and_follow(self, kind="skip_to_head", params=params, options=options)
