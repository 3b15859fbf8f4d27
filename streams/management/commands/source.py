"""replaydesk source add NAME --kind KIND (--dsn DSN | --dsn-env VAR) [--option KEY=VALUE …]
replaydesk source list
replaydesk source pause|resume NAME
replaydesk source write-dsn NAME (--dsn DSN | --dsn-env VAR | --clear)
replaydesk source follow NAME [--until-caught-up]
and the subcommands other apps add (streams/source_commands.py): replaydesk source verify NAME …"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from core import principals
from streams import source_commands, source_follow, source_kinds, source_services, source_status
from streams.models import Source
from streams.source_kinds import SourceError


class Command(BaseCommand):
    help = "Add a source Replaydesk follows into its log, list them, pause or resume one, or follow one here."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Check a source and follow it from its start.")
        add.add_argument("name", help="1–40 lowercase letters, digits and _, starting with a letter.")
        add.add_argument("--kind", required=True, help="The kind of store: see `replaydesk source kinds`.")
        reach = add.add_mutually_exclusive_group(required=True)
        reach.add_argument("--dsn", help="How to reach it (stored encrypted, never shown back).")
        reach.add_argument("--dsn-env", metavar="VAR", help="The environment variable that holds the DSN.")
        add.add_argument(
            "--option", action="append", default=[], metavar="KEY=VALUE", help="A kind's option (repeat)."
        )
        actions.add_parser("list", help="Every source: kind, state, position copied, lag, last error.")
        actions.add_parser("kinds", help="The source kinds and their options.")
        for action in ("pause", "resume"):
            actions.add_parser(action, help=f"{action.capitalize()} following a source.").add_argument("name")
        write_dsn = actions.add_parser(
            "write-dsn", help="Give a source the DSN of a role that may write there, for write-backs."
        )
        write_dsn.add_argument("name")
        given = write_dsn.add_mutually_exclusive_group(required=True)
        given.add_argument("--dsn", help="How to reach it to write (stored encrypted, never shown back).")
        given.add_argument("--dsn-env", metavar="VAR", help="The environment variable that holds it.")
        given.add_argument("--clear", action="store_true", help="Take the write DSN away.")
        follow = actions.add_parser("follow", help="Follow a source in this process (Ctrl-C stops).")
        follow.add_argument("name")
        follow.add_argument("--until-caught-up", action="store_true", help="Stop once nothing is left.")
        for extra in source_commands.subcommands():
            extra.arguments(actions.add_parser(extra.name, help=extra.help))

    def handle(self, *args, **options):
        action = options["action"]
        if extra := source_commands.get(action):
            return extra.run(self, options)
        try:
            getattr(self, f"_{action.replace('-', '_')}")(options)
        except source_services.InvalidSource as exc:
            if action == "write-dsn":
                lines = [f"cannot give source {options['name']} that write DSN:"]
            else:
                lines = [f"cannot add source {options['name']}:"]
            for field, messages in exc.errors.items():
                lines += [f"  {field}: {message}" for message in messages]
            raise CommandError("\n".join(lines)) from exc
        except SourceError as exc:
            raise CommandError(str(exc)) from exc

    def _add(self, options):
        given = {}
        for item in options["option"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--option {item!r}: write KEY=VALUE")
            given[key] = value
        source = source_services.add_source(
            name=options["name"],
            kind=options["kind"],
            dsn=options["dsn"] or "",
            dsn_env=options["dsn_env"] or "",
            options=given,
            actor=_actor(),
        )
        self.stdout.write(f"source {source.name} ({source.kind}) is followed from its start")

    def _list(self, options):
        rows = [("NAME", "KIND", "STATE", "POSITION", "LAG", "COPIED", "PARKED", "LAST ERROR")]
        for source in Source.objects.order_by("name"):
            lag = source_status.source_status(source).lag_events
            rows.append(
                (
                    source.name,
                    source.kind,
                    source.state,
                    str(source.position),
                    "?" if lag is None else str(lag),
                    str(source.events_copied),
                    str(source.events_parked),
                    source.last_error[:80],
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            self.stdout.write("  ".join(cells).rstrip())

    def _kinds(self, options):
        for kind in source_kinds.kinds():
            self.stdout.write(f"{kind.name}: {kind.help}")
            for option, line in kind.options_help.items():
                self.stdout.write(f"  {option}: {line}")

    def _pause(self, options):
        source_services.set_state(name=options["name"], state=Source.State.PAUSED, actor=_actor())
        self.stdout.write(f"source {options['name']} is paused")

    def _resume(self, options):
        source_services.set_state(name=options["name"], state=Source.State.RUNNING, actor=_actor())
        self.stdout.write(f"source {options['name']} is followed again")

    def _write_dsn(self, options):
        name = options["name"]
        source_services.set_write_dsn(
            name=name, dsn=options["dsn"] or "", dsn_env=options["dsn_env"] or "", actor=_actor()
        )
        if options["clear"]:
            self.stdout.write(f"source {name} has no write DSN now")
        else:
            self.stdout.write(f"source {name} may be written back to (replaydesk write_back {name})")

    def _follow(self, options):
        name = options["name"]
        if not Source.objects.filter(name=name).exists():
            raise CommandError(f"no source is named {name!r}")
        while True:
            until = options["until_caught_up"]
            result = source_follow.follow(name=name, budget_seconds=5.0, until_caught_up=until)
            if result.copied or result.parked or result.error:
                done = {"copied": result.copied, "parked": result.parked, "error": result.error}
                self.stdout.write(json.dumps(done))
            if result.idle:
                raise CommandError(f"source {name} is paused or failed, or another follower holds it")
            if options["until_caught_up"] and result.caught_up:
                return


def _actor() -> str:
    """The audit trail's actor for the command line: `cli:<OS user>`."""
    return principals.current().name
