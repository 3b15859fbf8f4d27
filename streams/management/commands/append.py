"""replaydesk append STREAM TYPE --data '{…}'   or   replaydesk append STREAM --batch events.json"""

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from streams.services import append_events
from streams.validation import AppendError, InvalidAppend


class Command(BaseCommand):
    help = "Append one event, or a batch read from a JSON file (- for standard input), to a stream."

    def add_arguments(self, parser):
        parser.add_argument("stream")
        parser.add_argument("type", nargs="?", help="The event type (omit with --batch).")
        parser.add_argument("--data", default="{}", help="The event's data, a JSON object.")
        parser.add_argument("--metadata", default="{}", help="The event's metadata, a JSON object.")
        parser.add_argument("--id", help="The event id (the idempotency key); new when omitted.")
        parser.add_argument(
            "--batch", help='A JSON list of {"id", "type", "data", "metadata"}, or - for stdin.'
        )
        parser.add_argument(
            "--expected-version",
            default="any",
            help="any (default), no_stream, exists, or the current version N.",
        )
        parser.add_argument("--actor", default="cli", help="Who appends, when metadata names no actor.")

    def handle(self, *args, **options):
        events = self._events(options)
        expected = options["expected_version"]
        expected = int(expected) if expected.isdigit() else expected
        try:
            result = append_events(
                stream=options["stream"], events=events, expected_version=expected, actor=options["actor"]
            )
        except InvalidAppend as exc:
            raise CommandError(
                "; ".join(f"{field}: {msgs[0]}" for field, msgs in exc.errors.items())
            ) from exc
        except AppendError as exc:  # the expected version, a stream copied from a source
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            json.dumps(
                {
                    "stream": result.stream,
                    "version": result.version,
                    "first_sequence": result.first_sequence,
                    "positions": result.positions,
                }
            )
        )

    def _events(self, options):
        if options["batch"]:
            if options["type"]:
                raise CommandError("give either TYPE or --batch, not both")
            source = sys.stdin if options["batch"] == "-" else open(options["batch"], encoding="utf-8")  # noqa: SIM115
            with source:
                return _json(source.read(), "--batch")
        if not options["type"]:
            raise CommandError("give an event TYPE, or --batch FILE")
        event = {"type": options["type"], "data": _json(options["data"], "--data")}
        event["metadata"] = _json(options["metadata"], "--metadata")
        if options["id"]:
            event["id"] = options["id"]
        return [event]


def _json(text: str, option: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON: {exc}") from exc
