"""replaydesk write_back SOURCE --reason TEXT"""

from django.core.management.base import BaseCommand

from recovery import follow


class Command(BaseCommand):
    help = (
        "After a source's database was restored from an old backup: write the events it lost back into it "
        "from Replaydesk's copy, through its own write path, then follow it on. Needs an approval; "
        "--dry-run prints what it would write, stream by stream. The source needs a DSN that may write "
        "(replaydesk source write-dsn)."
    )

    def add_arguments(self, parser):
        parser.add_argument("source")
        follow.add_common_arguments(parser)

    def handle(self, *args, **options):
        params = {"source": options["source"]}
        follow.request_and_follow(self, kind="write_back", params=params, options=options)
