"""Consumer kinds: what the rest of the store knows about a kind of consumer, and the registry of them.

A kind says how its consumers run (one run slice), where their checkpoint is, what they follow, when
they are failing, how a parked event is tried again, and how a range of the log is delivered again (a
resync). Tasks, lag and health, the parked-event actions and the resync job ask the kind of a consumer
(`of(consumer)`) and never branch on `Consumer.kind`.

A new kind is one module in this package (or a `consumer_kinds` module of another installed app) that
subclasses ConsumerKind with a `name`: defining the class registers it, and StreamsConfig.ready()
imports the modules. The projection runner (projection.py), the HTTP webhook sink (webhook.py) and
subscriptions that readers in other services pull over HTTP (subscription.py) are the kinds so far.
"""

from __future__ import annotations

import datetime as dt
import pkgutil
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib import import_module
from typing import Any, ClassVar, Protocol

from django.conf import settings
from django.http import HttpRequest
from django.utils.module_loading import autodiscover_modules

from streams import selectors
from streams.models import Consumer, Event, ParkedEvent

_registry: dict[str, ConsumerKind] = {}


class ConsumerError(Exception):
    """An operator action that cannot be done; the message says why."""


@dataclass(frozen=True)
class RunResult:
    applied: int
    caught_up: bool
    # Another runner holds the consumer, or it is paused, failed, or waiting to retry.
    idle: bool
    retry_in: float | None = None


@dataclass(frozen=True)
class Delivery:
    """What a receiver made of events sent to it."""

    ok: bool
    # Permanent: the receiver refused these events; retrying cannot help.
    refused: bool = False
    retry_after: float | None = None
    # Short, for every role: what happened, never what the receiver said.
    error: str = ""
    # What the receiver or the connection said (the start of an answer's body, a connection error's
    # text): it can hold what an internal service answered, so only operators and admins see it.
    detail: str = ""


class Resender(Protocol):
    """A resync's way to a consumer's receiver, open for one slice of the job."""

    # Events per send at most, and failed sends in a row before the resync gives up.
    batch_size: int
    max_attempts: int

    def claim(self, count: int, *, within: float) -> float | None:
        """Seconds until `count` events may be sent, within the consumer's own rate limit (shared with
        its live deliveries); None, with nothing claimed, when that is further away than `within`."""

    def send(self, events: list[Event]) -> Delivery: ...


class ConsumerKind:
    """One kind of consumer. The defaults fit a consumer whose checkpoint is its Consumer row's
    `position` (its effects happen elsewhere) and that follows the whole log; they are also how a
    consumer whose kind is not installed is measured, so that its lag is never understated."""

    name: ClassVar[str]
    # Whether its consumers can be sent a range of the log again (the resync job asks before it runs).
    resyncs: ClassVar[bool] = False
    # Whether the store runs its consumers (the tick queues their runs); False for a kind whose
    # consumers readers elsewhere pull.
    runs: ClassVar[bool] = True

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and "name" in cls.__dict__:
            add(cls)

    def ensure_consumers(self, *, name: str | None = None) -> None:
        """Create the Consumer rows of the consumers this kind declares in code, or of the one named
        `name` if it declares it (every tick, and before a run of a consumer without a row). Kinds
        whose consumers an operator creates do nothing."""

    def run(self, name: str, *, budget_seconds: float = 5.0) -> RunResult:
        """One run slice: process batches until caught up, out of time, or unable to go on. The kind
        keeps two runs of one consumer from overlapping, and moves the checkpoint only here, with the
        effects it covers."""
        raise ConsumerError(f"{name} is a consumer of kind {self.label!r}, which is not installed here")

    def checkpoint(self, consumer: Consumer) -> int:
        """The position up to which the consumer has processed the log."""
        return consumer.position or 0

    def checkpoints(self, consumers: list[Consumer]) -> dict[int, int]:
        """The checkpoint of each of `consumers` (all of this kind), by primary key: a list of consumers
        asks once per kind, and a kind that can read them together says so here."""
        return {consumer.pk: self.checkpoint(consumer) for consumer in consumers}

    def follows(self, consumer: Consumer) -> selectors.LogFilter:
        """The categories and types the consumer follows (empty: all). A consumer whose code or
        configuration is gone follows everything, so that its lag is never understated."""
        return selectors.LogFilter()

    def failing(self, consumer: Consumer, *, now: dt.datetime) -> bool:
        """Stopped, retrying an event, or with an error more recent than its last progress."""
        if consumer.state == Consumer.State.FAILED or consumer.attempts > 0:
            return True
        error_at = consumer.last_error_at
        return (
            error_at is not None
            and (now - error_at).total_seconds() < settings.REPLAYDESK_ERROR_RECENT_SECONDS
            and (consumer.progressed_at is None or consumer.progressed_at <= error_at)
        )

    def lagging_streams(self, consumer: Consumer, *, limit: int) -> list[Any] | None:
        """The streams with the most events it has yet to process (streams.lag.StreamLag), for a kind
        that measures them itself (a checkpoint per partition); None: streams.lag measures them from the
        consumer's checkpoint."""
        return None

    def retry_parked(self, *, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
        """Process one parked event again, audited. On failure nothing changes but its error and
        attempts, and ConsumerError says why."""
        raise ConsumerError(f"consumers of kind {self.label!r} cannot retry parked events here")

    def resync_rate(self, consumer: Consumer) -> float | None:
        """The rate a resync keeps to unless told otherwise (events per second; None: no limit of its own)."""
        return None

    def resync(self, consumer: Consumer) -> AbstractContextManager[Resender]:
        """A Resender that delivers a range of the log to the consumer again (the resync job)."""
        raise ConsumerError(f"{consumer.name} is a {self.label}: only sinks are resynced")

    @property
    def label(self) -> str:
        return self.name


class _Uninstalled(ConsumerKind, register=False):
    """Stands in for a kind whose code is gone: its consumers are measured, never run."""

    def __init__(self, name: str) -> None:
        self.missing = name

    @property
    def label(self) -> str:
        return self.missing


def add(cls: type[ConsumerKind]) -> None:
    existing = _registry.get(cls.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise ValueError(f"two consumer kinds are named {cls.name!r}")
    _registry[cls.name] = cls()


def remove(name: str) -> None:
    """Forget a kind (tests declare throwaway ones with register=False and add them)."""
    _registry.pop(name, None)


def get(name: str) -> ConsumerKind:
    """The kind named `name`; one that is not installed runs nothing and is measured by the defaults."""
    return _registry.get(name) or _Uninstalled(name)


def of(consumer: Consumer) -> ConsumerKind:
    return get(consumer.kind)


def kinds() -> list[ConsumerKind]:
    return list(_registry.values())


def checkpoint_of(*, consumer: Consumer) -> int:
    return of(consumer).checkpoint(consumer)


def checkpoints_of(*, consumers: list[Consumer]) -> dict[int, int]:
    """The checkpoints of consumers of any kinds, by primary key: one ask of each kind for all of its own."""
    by_kind: dict[str, list[Consumer]] = {}
    for consumer in consumers:
        by_kind.setdefault(consumer.kind, []).append(consumer)
    found: dict[int, int] = {}
    for kind, some in by_kind.items():
        found |= get(kind).checkpoints(some)
    return found


def follows(*, consumer: Consumer) -> selectors.LogFilter:
    return of(consumer).follows(consumer)


def discover() -> None:
    """Import the modules of this package and every installed app's `consumer_kinds` module: defining
    a ConsumerKind subclass registers it."""
    for module in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{module.name}")
    autodiscover_modules("consumer_kinds")
