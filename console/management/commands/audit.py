"""`replaydesk audit verify`: recompute the console's audit chains (console/audit_chain.py)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core import audit_chain


class Command(BaseCommand):
    help = "Check the console's audit trail for edited, deleted or truncated events."

    def add_arguments(self, parser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        verify = actions.add_parser(
            "verify",
            help="recompute every console stream's hash chain; exit 1 when a link is broken",
            description="Recompute every console stream's hash chain and report the first broken link "
            "of each stream. Exit code 0 when every chain holds, 1 otherwise.",
        )
        verify.add_argument("--json", action="store_true", help="one JSON document instead of lines")
        verify.add_argument(
            "--heads",
            type=Path,
            metavar="FILE",
            help="chain heads exported earlier: each must still be there with the same hash (catches an "
            "edit of a stream's last event, and a truncation that lowered the stream's version too)",
        )
        verify.add_argument(
            "--export-heads",
            type=Path,
            metavar="FILE",
            help="write each intact stream's head (JSON lines); keep it where the database's users "
            "cannot write",
        )

    def handle(self, *args, action: str, **options) -> None:
        heads = _read_heads(options["heads"]) if options["heads"] else None
        export = options["export_heads"]
        out = export.open("w", encoding="utf-8") if export else None
        try:
            report = audit_chain.verify(heads=heads, on_intact=_writer(out) if out else None)
        finally:
            if out is not None:
                out.close()
        self._print(report, as_json=options["json"])
        if not report.ok:
            raise CommandError(f"{len(report.breaks)} audit chain(s) broken", returncode=1)

    def _print(self, report: audit_chain.Report, *, as_json: bool) -> None:
        if as_json:
            document = {
                "ok": report.ok,
                "streams": report.streams,
                "events": report.events,
                "broken": [broken.as_dict() for broken in report.breaks],
            }
            self.stdout.write(json.dumps(document, indent=2))
            return
        for broken in report.breaks:
            self.stdout.write(f"{broken.stream} @{broken.sequence} {broken.problem}: {broken.detail}")
        verdict = "every chain holds" if report.ok else f"{len(report.breaks)} broken"
        self.stdout.write(f"checked {report.streams} streams, {report.events} events: {verdict}")


def _writer(out):
    def write(stream: str, sequence: int, hash_: str) -> None:
        out.write(json.dumps({"stream": stream, "sequence": sequence, "hash": hash_}) + "\n")

    return write


def _read_heads(path: Path) -> dict[str, tuple[int, str]]:
    heads: dict[str, tuple[int, str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CommandError(f"cannot read the heads file {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            head = json.loads(line)
            heads[str(head["stream"])] = (int(head["sequence"]), str(head["hash"]))
        except (ValueError, KeyError, TypeError):
            raise CommandError(
                f"{path}, line {number}: not a chain head; expected "
                '{"stream": "console-…", "sequence": N, "hash": "<64 hex digits>"}'
            ) from None
    return heads
