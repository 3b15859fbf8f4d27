"""Thin Celery tasks for consumers, on the `live` queue (bulk recovery work has a queue of its own).

Redis carries only the trigger; what to do next is read from PostgreSQL each time, so a lost or
duplicated message costs nothing: the tick enqueues every running consumer again within seconds.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from core.redis import client as redis_client
from streams import consumer_kinds, source_follow
from streams.consumer_kinds import ConsumerError, RunResult
from streams.models import Consumer, Source

# While set, a run is queued for the consumer and another enqueue would only pile up messages.
QUEUED_KEY = "replaydesk:consumer-queued:{}"
# Short: a run queued to a worker that then died must not hold back the next one for long.
QUEUED_TTL_SECONDS = 5


def enqueue_consumer(name: str) -> bool:
    """Queue a run unless one is queued already. True when this call queued it."""
    if not redis_client().set(QUEUED_KEY.format(name), "1", nx=True, ex=QUEUED_TTL_SECONDS):
        return False
    run_consumer.apply_async((name,), queue="live")
    return True


@shared_task(queue="live", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_consumer(name: str) -> None:
    # Cleared first: events that arrive while this run works must be able to queue the next one.
    redis_client().delete(QUEUED_KEY.format(name))
    result = _run(name)
    if result.retry_in is not None:
        run_consumer.apply_async((name,), queue="live", countdown=result.retry_in)
    elif not result.caught_up and not result.idle:
        enqueue_consumer(name)  # out of time with more to do: go on in a fresh slice


def _run(name: str) -> RunResult:
    kind = _kind(name)
    if kind is None:
        # Declared in code but without a row yet (a job may queue a run before the first tick).
        for each in consumer_kinds.kinds():
            each.ensure_consumers(name=name)
        kind = _kind(name)
    if kind is None:
        raise ConsumerError(f"no consumer is named {name!r}")
    return consumer_kinds.get(kind).run(name)


def _kind(name: str) -> str | None:
    return Consumer.objects.filter(name=name).values_list("kind", flat=True).first()


@shared_task(queue="live", ignore_result=True)
def sample_lag() -> None:
    """A lag sample of every consumer for the charts; samples older than 7 days are dropped."""
    from streams.lag_samples import sample_all

    sample_all()


@shared_task(queue="live", ignore_result=True)
def tick() -> None:
    """The safety net under NOTIFY: every running consumer gets a run queued, and every running source
    whose follower's chain of runs stopped (a worker died) gets a new one."""
    for name in running_consumers():
        enqueue_consumer(name)
    for name in Source.objects.filter(state=Source.State.RUNNING).values_list("name", flat=True):
        enqueue_source(name)


# A source's follower runs in slices that queue the next (a chain); while this key lives, a chain runs.
SOURCE_CHAIN_KEY = "replaydesk:source-chain:{}"
SOURCE_CHAIN_TTL_SECONDS = 15
SOURCE_SLICE_SECONDS = 5.0
# A slice ends once the follower has caught up; the next looks at the source this much later, so a
# worker is not held by a quiet source.
SOURCE_IDLE_SECONDS = 0.3
# After a failed slice (the source unreachable, say), the next waits this long.
SOURCE_RETRY_SECONDS = 5.0


def enqueue_source(name: str) -> bool:
    """Start the source's chain of follower runs unless one runs. True when this call started it.
    Never in a process that follows its sources itself (a drill's sandbox: REPLAYDESK_CONSUMERS_WAKE)."""
    if not settings.REPLAYDESK_CONSUMERS_WAKE:
        return False
    if not redis_client().set(SOURCE_CHAIN_KEY.format(name), "1", nx=True, ex=SOURCE_CHAIN_TTL_SECONDS):
        return False
    follow_source.apply_async((name,), queue="live")
    return True


@shared_task(queue="live", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def follow_source(name: str) -> None:
    """Follow for a slice (until caught up, at most SOURCE_SLICE_SECONDS), then queue the next: a
    source's copy stays within a second of it, and the worker is free between slices."""
    key = SOURCE_CHAIN_KEY.format(name)
    redis_client().set(key, "1", ex=SOURCE_CHAIN_TTL_SECONDS)
    result = source_follow.follow(name=name, budget_seconds=SOURCE_SLICE_SECONDS, until_caught_up=True)
    if result.idle and not Source.objects.filter(name=name, state=Source.State.RUNNING).exists():
        redis_client().delete(key)  # paused, failed or gone: its chain ends here
        return
    if result.error:
        countdown = SOURCE_RETRY_SECONDS
    else:
        countdown = SOURCE_IDLE_SECONDS if result.caught_up or result.idle else 0
    follow_source.apply_async((name,), queue="live", countdown=countdown)


def running_consumers() -> list[str]:
    """Names of the consumers to run: consumers declared in code (projections) get their rows here.
    Consumers that readers pull (subscriptions) have no runs."""
    for kind in consumer_kinds.kinds():
        kind.ensure_consumers()
    pulled = [kind.name for kind in consumer_kinds.kinds() if not kind.runs]
    running = Consumer.objects.filter(state=Consumer.State.RUNNING).exclude(kind__in=pulled)
    return list(running.values_list("name", flat=True))
