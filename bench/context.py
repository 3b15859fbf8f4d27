"""What every part of a run shares: the sizes, the server and its database, and where results go."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from bench.config import Sizes
from bench.server import Server

SYSTEMS = ("replaydesk", "eventsourcing", "raw")
# The appends section's parts, in the order they run (bench/suite_appends.py); `--appends` picks some.
APPEND_PARTS = ("throughput", "gin", "http")


@dataclass
class Context:
    sizes: Sizes
    server: Server
    env: dict[str, str]
    rows: list[dict] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)
    append_parts: tuple[str, ...] = APPEND_PARTS
    started: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def conninfo(self) -> dict:
        return self.server.conninfo()

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", file=sys.stderr, flush=True)


def interleaved(systems: tuple[str, ...], repetition: int) -> tuple[str, ...]:
    """The systems in a rotated order per repetition (ABC, BCA, CAB): none always goes first."""
    shift = repetition % len(systems)
    return systems[shift:] + systems[:shift]
