"""Subscriptions as a consumer kind: consumers in other services that pull the log over HTTP, with a
checkpoint and a lease per partition (streams/subscriptions.py). Nothing runs here: readers fetch and
acknowledge. The consumer's checkpoint is its slowest partition's, so its lag is never understated."""

from __future__ import annotations

from django.db.models import Min
from django.http import HttpRequest

from streams import selectors
from streams.consumer_kinds import ConsumerError, ConsumerKind, RunResult
from streams.models import Consumer, ParkedEvent, Subscription, SubscriptionPartition


class SubscriptionKind(ConsumerKind):
    name = Consumer.Kind.SUBSCRIPTION
    runs = False

    def run(self, name: str, *, budget_seconds: float = 5.0) -> RunResult:
        # Readers elsewhere pull its events; a run queued for it (a resume wakes every kind) has nothing
        # to do.
        return RunResult(0, caught_up=True, idle=True)

    def checkpoint(self, consumer: Consumer) -> int:
        found = SubscriptionPartition.objects.filter(subscription_id=consumer.pk).aggregate(
            slowest=Min("checkpoint")
        )["slowest"]
        return super().checkpoint(consumer) if found is None else found

    def follows(self, consumer: Consumer) -> selectors.LogFilter:
        subscription = Subscription.objects.filter(pk=consumer.pk).first()
        if subscription is None:
            return super().follows(consumer)
        return selectors.LogFilter(types=tuple(subscription.types), categories=tuple(subscription.categories))

    def retry_parked(self, *, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
        # Its readers are elsewhere and fetch partitions in order: nothing here can hand them one event.
        raise ConsumerError(
            "a subscription's parked event is not delivered again: its readers fetch partitions in order; "
            "handle it from the parked list (its event is there) and skip it"
        )
