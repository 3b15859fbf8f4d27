"""replaydesk drill [--quick] [--json] [--source eventsourcing]"""

import argparse
import json
import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from core import principals
from recovery import drill
from recovery.drill import sandbox, source_drill


class Command(BaseCommand):
    help = (
        "Play a restore from an old backup end to end in a scratch database on the same server: load the "
        "demo domain with appends flowing, take a snapshot, break the read model and the downstream, "
        "restore, replay without the bad events, resync the downstream, and check the result. Prints RPO, "
        "RTO, events replayed and re-sent, and whether it passed (exit code 2 when it did not)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--quick", action="store_true", help="A smaller drill (under two minutes).")
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON object.")
        parser.add_argument(
            "--source",
            choices=source_drill.KINDS,
            help="Play the drill of a source of this kind instead: an application writing while Replaydesk "
            "follows it, its database restored from an old backup, and a write-back of what it lost.",
        )
        # Internal: the child process that plays the drill inside the scratch database.
        parser.add_argument("--sandbox", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["sandbox"]:
            self._sandbox(quick=options["quick"], source=options["source"])
            return
        try:
            report = drill.run(quick=options["quick"], on_progress=self._progress, source=options["source"])
        except drill.DrillError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            keys = () if options["source"] else drill.REPORT_KEYS
            self.stdout.write(json.dumps({**{key: report[key] for key in keys}, **report}))
        else:
            for line in drill.report_lines(report):
                self.stdout.write(line)
        if not report["passed"]:
            raise CommandError("the drill failed its checks", returncode=2)

    def _progress(self, stage: str, message: str) -> None:
        self.stderr.write(f"[{stage}] {message}")

    def _sandbox(self, *, quick: bool, source: str | None) -> None:
        def say(stage: str, message: str) -> None:
            print(json.dumps({"stage": stage, "message": message}), flush=True)

        # The scratch store's history, traffic and bad deploy are the drill's own doing.
        principals.run_as(principals.system("drill"))
        say("preparing", "creating the scratch database's tables")
        call_command("migrate", verbosity=0, stdout=sys.stderr)
        if source:
            report = source_drill.play(quick=quick, say=say, kind=source)
        else:
            report = sandbox.play(quick=quick, say=say)
        print(json.dumps({"report": report}), flush=True)
