"""replaydesk source verify NAME [--samples N] --reason TEXT: the verify_source job from the command line,
offered as a subcommand of `replaydesk source` (streams/source_commands.py), requested and followed as
`replaydesk verify` is (recovery/follow.py); exit code 2 when the copy differs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from recovery import follow
from streams.source_commands import Subcommand


def arguments(parser) -> None:
    parser.add_argument("name", help="The source.")
    parser.add_argument(
        "--samples", type=int, help="How many samples of what differs to show (default 10, at most 100)."
    )
    follow.add_common_arguments(parser)


def run(command: BaseCommand, options: dict[str, Any]) -> None:
    params = follow.given(source=options["name"], samples=options["samples"])
    follow.request_and_follow(command, kind="verify_source", params=params, options=options)


VERIFY = Subcommand(
    name="verify",
    help="Compare a source with its copy in the log, stream by stream (a job; exit code 2 when they differ).",
    arguments=arguments,
    run=run,
)
