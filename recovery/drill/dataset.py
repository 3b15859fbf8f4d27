"""What a fault drill needs of a domain: its data, an application's traffic, a bad deploy, and the truth
to check against. The drill is given one (REPLAYDESK_DRILL_DATA_SET, a dotted path); the identity demo's
is demo/drill.py, so a drill's sandbox runs with the demo installed (in its scratch database only).
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from django.conf import settings
from django.db.backends.utils import CursorWrapper
from django.utils.module_loading import import_string


class DataSet(Protocol):
    projection: str  # the projection the drill damages and restores
    categories: tuple[str, ...]  # what the downstream's sink follows
    types: tuple[str, ...]
    what: str  # how the progress line names what is loaded

    def load(self, *, users: int, events: int) -> int:
        """Load the history; how many events it holds."""

    def entities(self) -> list[str]:
        """The ids the application's traffic and the bad deploy pick from."""

    def change(self, rng: random.Random, entity: str, n: int) -> tuple[str, dict[str, Any]]:
        """(stream, event): one good append of the application's."""

    def bad_change(self, entity: str, n: int) -> tuple[str, dict[str, Any]]:
        """(stream, event): one append of the bad deploy's."""

    def damage(self, cursor: CursorWrapper) -> tuple[int, int]:
        """Rows of the projection deleted and rewritten behind the log's back (the cursor's search_path
        is the projection's schema)."""

    def projected(self, cursor: CursorWrapper) -> dict[str, dict[str, Any]]:
        """The projection's rows as documents (the cursor's search_path is the projection's schema)."""

    def apply(self, documents: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
        """One event's effect on documents, counting each document's effects in `changes`."""


def configured() -> DataSet:
    return import_string(settings.REPLAYDESK_DRILL_DATA_SET)
