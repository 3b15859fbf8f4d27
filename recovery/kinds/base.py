"""What a job kind is, and the registry of kinds (in the spirit of NetBox's JobRunner).

A kind is a JobKind subclass in a module of its own under recovery/kinds/, registered with @register.
It says everything about itself that the rest of recovery asks: its parameters and their checks, its
target, its unit, how many approvals it needs by default, which of its stages run in lanes, its dry-run
estimate, its summary and result template, how the command line ends on it, and the work itself
(`main`, `lane`, `cancelled`). The runner, the form, the API, the pages and the command line loop over
the registry, so a new kind is its module, its result template and at most a migration.
"""

from __future__ import annotations

import enum
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode

from streams.consumer_links import Link

if TYPE_CHECKING:
    from django import forms
    from django.db.models import QuerySet

    from recovery.models import Job, JobLane
    from recovery.params import Checker
    from streams.models import Consumer, Event, Source


@dataclass(frozen=True)
class DryRun:
    """What a kind whose work is not a set of the log's events would do (JobKind.dry_run): how many
    events and streams, the events per item (the most first), and what it would leave alone and why."""

    events: int
    streams: int
    breakdown: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Load:
    """What a kind loads before it works through the log (JobKind.load): a restore, a snapshot's rows,
    which replace the live tables. Its seconds go into the dry run's duration, its notes under it."""

    rows: int
    seconds: float | None
    basis: str
    notes: list[str] = field(default_factory=list)


class Step(enum.Enum):
    """What a main slice did."""

    AGAIN = "again"  # go on in another slice
    LANES = "lanes"  # wait for the lanes
    DONE = "done"  # nothing more to do


# Until a job of the kind has finished on the target, its speed is assumed (events per second).
ASSUMED_RATE = 5_000.0


class JobKind:
    name: ClassVar[str]
    # One line for the new-job form.
    help: ClassVar[str] = ""
    # Its parameters, as the API's help text lists them.
    params_help: ClassVar[str] = ""
    # The parameters it takes (a request with any other is refused, field by field).
    fields: ClassVar[frozenset[str]] = frozenset()
    # What `done` and `total` count.
    unit: ClassVar[str] = "events"
    # Approvals by people other than the requester before it may run (REPLAYDESK_APPROVALS overrides).
    approvals: ClassVar[int] = 1
    # Stages in which its lanes work: run_inline runs the lanes then, and the reconciler nudges a lane
    # that stopped in one of them.
    lane_stages: ClassVar[tuple[str, ...]] = ()
    # Whether, while it runs, its target's health is `rebuilding` (streams/health.py asks).
    rebuilds: ClassVar[bool] = False
    # Whether it works on events of the log (a dry run counts them) or on something else.
    counts_events: ClassVar[bool] = True
    # Shown under "Result" on the job's page, with `job` and `r` (its result) in the context.
    result_template: ClassVar[str] = ""
    # Where it is listed among the kinds (the form's choices, the API's enum).
    position: ClassVar[int] = 100
    # The consumer kinds whose page offers a button for it, the parameter the button fills with the
    # consumer's name, and the button's place among the page's buttons.
    offered_on: ClassVar[tuple[str, ...]] = ()
    consumer_param: ClassVar[str] = "projection"
    button_order: ClassVar[int] = 100

    # --- the request

    def check(self, checker: Checker) -> dict[str, Any]:
        """The canonical parameters, from checker.raw; problems go to checker.bad(field, message)."""
        raise NotImplementedError

    def target(self, params: dict[str, Any]) -> str:
        """The projection or sink it works on: one job at a time per target."""
        return params["projection"]

    def title(self, job: Job) -> str:
        """What the job is, in a page's heading: "replay of users"."""
        return f"{job.kind} of {job.target}"

    def form_fields(self) -> dict[str, forms.Field]:
        """Fields of its own for the new-job form, beyond the ones kinds share (recovery/forms.py)."""
        return {}

    def consumer_links(self, consumer: str) -> list[Link]:
        """What a consumer's page offers for it: a button to the new-job form, filled in."""
        from django.urls import reverse

        query = urlencode({"kind": self.name, self.consumer_param: consumer})
        return [Link(self.name.replace("_", " ").capitalize(), f"{reverse('recovery:job-new')}?{query}")]

    def target_url(self, target: str) -> str:
        from django.urls import reverse

        return reverse("streams:consumer", args=[target])

    def source_links(self, source: str) -> list[Link]:
        """What a source's page offers for it (a kind that works on sources): buttons to the form."""
        return []

    # --- the dry run

    def events(self, params: dict[str, Any]) -> QuerySet[Event]:
        """The events it would work on, before exclusions (only asked when counts_events)."""
        raise NotImplementedError

    def dry_run(self, params: dict[str, Any]) -> DryRun | None:
        """What it would do, for a kind that does not count the log's events (counts_events False);
        None when it cannot say before it runs. What stops it is a JobParamsError of the parameter
        that names what it works on."""
        return None

    def load(self, params: dict[str, Any]) -> Load | None:
        """What it loads besides the log's events (a restore: a snapshot); None for most kinds."""
        return None

    def unmeasured_rate(self) -> tuple[float | None, str]:
        """Its rate and where that comes from, while no job of the kind has finished to measure."""
        return (
            ASSUMED_RATE,
            f"assumed {ASSUMED_RATE:,.0f} events/s (no {self.name} job has finished yet to measure)",
        )

    def limit_rate(self, params: dict[str, Any], rate: float | None, basis: str) -> tuple[float | None, str]:
        """The rate as its parameters bound it."""
        return rate, basis

    # --- what it did

    def summary(self, job: Job) -> list[str]:
        """What a succeeded job did, in a few lines (the command line prints them)."""
        raise NotImplementedError

    def exit_error(self, job: Job) -> tuple[int, str] | None:
        """For the command line: an exit code and message for a job that succeeded yet found trouble."""
        return None

    # --- the work

    def main(self, job: Job, deadline: float) -> Step:
        raise NotImplementedError

    def lane(self, job: Job, lane: JobLane, deadline: float) -> None:
        raise AssertionError(f"a {self.name} has no lanes")

    def cancelled(self, job: Job) -> None:
        """Clean up after a cancel (the runner has stopped the work)."""


_kinds: dict[str, JobKind] = {}
_loaded = False


def register(cls: type[JobKind]) -> type[JobKind]:
    """Class decorator: the kind is known by its name from now on."""
    if cls.name in _kinds and type(_kinds[cls.name]) is not cls:
        raise ValueError(f"two job kinds are named {cls.name!r}")
    _kinds[cls.name] = cls()
    return cls


def _load() -> None:
    """Import every module of recovery/kinds once, so that their @register runs."""
    global _loaded
    if _loaded:
        return
    import recovery.kinds as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    _loaded = True


def kinds() -> list[JobKind]:
    """Every registered kind, in their listing order."""
    _load()
    return sorted(_kinds.values(), key=lambda kind: (kind.position, kind.name))


def names() -> list[str]:
    return [kind.name for kind in kinds()]


def get(name: str) -> JobKind | None:
    _load()
    return _kinds.get(name)


def kind_of(job: Job) -> JobKind:
    found = get(job.kind)
    if found is None:
        raise LookupError(f"job {job.pk} is of kind {job.kind!r}, which this code does not know")
    return found


def choices() -> list[tuple[str, str]]:
    """For the model field and the forms: (name, label) of every kind."""
    return [(kind.name, kind.name.replace("_", " ").capitalize()) for kind in kinds()]


def consumer_links(consumer: Consumer) -> list[Link]:
    """The buttons of every kind that works on this consumer's kind (streams.consumer_links)."""
    offered = [kind for kind in kinds() if consumer.kind in kind.offered_on]
    offered.sort(key=lambda kind: kind.button_order)
    return [link for kind in offered for link in kind.consumer_links(consumer.name)]


def source_links(source: Source) -> list[Link]:
    """The buttons of every kind that offers one on a source's page (streams.source_links)."""
    return [link for kind in kinds() for link in kind.source_links(source.name)]


def default_approvals() -> dict[str, int]:
    return {kind.name: kind.approvals for kind in kinds()}
