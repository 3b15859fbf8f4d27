"""Subcommands of `replaydesk source` that other apps add (recovery adds `verify`, a job): the store
does not know those apps, so each registers its subcommand from its AppConfig.ready(), and the command
(streams/management/commands/source.py) offers them beside its own."""

from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    # Adds its arguments to its parser.
    arguments: Callable[[ArgumentParser], None]
    # Runs it: the command (for its output) and the parsed options.
    run: Callable[[BaseCommand, dict[str, Any]], None]


_subcommands: dict[str, Subcommand] = {}


def offer(subcommand: Subcommand) -> None:
    _subcommands[subcommand.name] = subcommand


def subcommands() -> list[Subcommand]:
    return sorted(_subcommands.values(), key=lambda found: found.name)


def get(name: str) -> Subcommand | None:
    return _subcommands.get(name)
