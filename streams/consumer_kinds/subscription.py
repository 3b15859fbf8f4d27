"""Subscriptions as a consumer kind: consumers in other services that pull the log over HTTP, with a
checkpoint and a lease per partition (streams/subscriptions.py). Nothing runs here: readers fetch and
acknowledge. The consumer's checkpoint is its slowest partition's, so its lag is never understated."""

from __future__ import annotations

from django.db.models import Min
from django.http import HttpRequest

from streams import selectors, subscription_redelivery, subscription_status
from streams.consumer_kinds import ConsumerKind, RunResult
from streams.lag import StreamLag
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

    def checkpoints(self, consumers: list[Consumer]) -> dict[int, int]:
        slowest = dict(
            SubscriptionPartition.objects.filter(subscription_id__in=[consumer.pk for consumer in consumers])
            .values("subscription_id")
            .annotate(slowest=Min("checkpoint"))
            .values_list("subscription_id", "slowest")
        )
        return {
            consumer.pk: slowest[consumer.pk] if consumer.pk in slowest else super().checkpoint(consumer)
            for consumer in consumers
        }

    def follows(self, consumer: Consumer) -> selectors.LogFilter:
        subscription = _subscription(consumer)
        if subscription is None:
            return super().follows(consumer)
        return selectors.LogFilter(types=tuple(subscription.types), categories=tuple(subscription.categories))

    def lagging_streams(self, consumer: Consumer, *, limit: int) -> list[StreamLag] | None:
        # Each stream from its own partition's checkpoint, not the slowest partition's.
        subscription = Subscription.objects.filter(pk=consumer.pk).first()
        if subscription is None:
            return None
        return subscription_status.top_lagging_streams(subscription=subscription, limit=limit)

    def retry_parked(self, *, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
        # Its readers are elsewhere: the event is queued for the next fetch of its partition, and retried
        # once a reader acknowledges it (streams/subscription_redelivery.py).
        return subscription_redelivery.queue(parked_id=parked_id, actor=actor, request=request)


def _subscription(consumer: Consumer) -> Subscription | None:
    """The consumer's Subscription row (cached on the consumer once read, or when a list of consumers
    selected it with them); None when it has none."""
    try:
        return consumer.subscription
    except Subscription.DoesNotExist:
        return None
