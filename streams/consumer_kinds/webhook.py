"""HTTP webhook sinks as a consumer kind: a downstream system that events are POSTed to, at least once
(streams/sinks.py and the sink_* modules beside it). The checkpoint is the Consumer row's `position`;
the Sink row holds what it follows and its circuit breaker."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from django.http import HttpRequest

from streams import selectors, sinks
from streams.consumer_kinds import ConsumerError, ConsumerKind, Delivery, RunResult
from streams.models import Consumer, Event, ParkedEvent, Sink
from streams.sink_delivery import deliver, http_client
from streams.sink_pacing import claim_slot, settle


class WebhookSinkKind(ConsumerKind):
    name = Consumer.Kind.SINK
    resyncs = True

    def run(self, name: str, *, budget_seconds: float = 5.0) -> RunResult:
        return sinks.run_sink(name, budget_seconds=budget_seconds)

    def follows(self, consumer: Consumer) -> selectors.LogFilter:
        sink = _sink(consumer)
        return super().follows(consumer) if sink is None else sinks.log_filter(sink)

    def failing(self, consumer: Consumer, *, now: dt.datetime) -> bool:
        sink = _sink(consumer)
        # Half-open is still failing: only the probe delivery is let through.
        breaker_open = sink is not None and sink.breaker_state in (Sink.Breaker.OPEN, Sink.Breaker.HALF_OPEN)
        return breaker_open or super().failing(consumer, now=now)

    def retry_parked(self, *, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
        # Re-delivered over HTTP, which must not happen inside a transaction.
        return sinks.retry_parked_delivery(parked_id=parked_id, actor=actor, request=request)

    def resync_rate(self, consumer: Consumer) -> float | None:
        # Its own rate limit: the receiver was promised it, and live deliveries share it.
        sink = _sink(consumer)
        return sink.rate_per_second if sink is not None else None

    @contextmanager
    def resync(self, consumer: Consumer) -> Iterator[WebhookResender]:
        sink = _sink(consumer)
        if sink is None:
            raise ConsumerError(f"{consumer.name} has no endpoint to deliver to")
        with http_client() as client:
            yield WebhookResender(sink, client)


@dataclass
class WebhookResender:
    sink: Sink
    client: httpx.Client
    slot: float | None = None  # the send slot last claimed, settled once its POST is answered

    @property
    def batch_size(self) -> int:
        return self.sink.batch_size

    @property
    def max_attempts(self) -> int:
        return self.sink.max_attempts

    def claim(self, count: int, *, within: float) -> float | None:
        claimed = claim_slot(self.sink, count, within)
        if claimed is None:
            return None
        self.slot, wait = claimed
        return wait

    def send(self, events: list[Event]) -> Delivery:
        delivery = deliver(self.client, self.sink, events)
        if self.slot is not None:
            settle(self.sink, self.slot)
            self.slot = None
        return delivery


def _sink(consumer: Consumer) -> Sink | None:
    """The consumer's Sink row (cached on the consumer once read); None when it has none."""
    try:
        return consumer.sink
    except Sink.DoesNotExist:
        return None
