"""Projections as a consumer kind: Python code in this process that folds events into a schema of its
own (streams/projections.py), run by streams/consumers.py. The checkpoint lives in that schema, moved in
the transaction that applies the batch."""

from __future__ import annotations

from django.http import HttpRequest

from streams import consumers, selectors
from streams.consumer_kinds import ConsumerKind, RunResult
from streams.models import Consumer, ParkedEvent
from streams.projections import SCHEMA_PREFIX, get_projection, projections, read_checkpoint, read_checkpoints


class ProjectionKind(ConsumerKind):
    name = Consumer.Kind.PROJECTION

    def ensure_consumers(self, *, name: str | None = None) -> None:
        # A projection exists because its code does: its row and schema appear on the first tick.
        for projection in projections().values():
            if name is None or projection.name == name:
                consumers.ensure_projection(projection)

    def run(self, name: str, *, budget_seconds: float = 5.0) -> RunResult:
        return consumers.run_projection(name, budget_seconds=budget_seconds)

    def checkpoint(self, consumer: Consumer) -> int:
        # Read from the schema by name: a projection whose code is gone still has its checkpoint.
        found = read_checkpoint(get_projection(consumer.name), schema=SCHEMA_PREFIX + consumer.name)
        return found[0] if found else 0

    def checkpoints(self, consumers: list[Consumer]) -> dict[int, int]:
        found = read_checkpoints([SCHEMA_PREFIX + consumer.name for consumer in consumers])
        return {consumer.pk: found.get(SCHEMA_PREFIX + consumer.name, (0, 0))[0] for consumer in consumers}

    def follows(self, consumer: Consumer) -> selectors.LogFilter:
        projection = get_projection(consumer.name)
        return super().follows(consumer) if projection is None else projection.log_filter

    def retry_parked(self, *, parked_id: int, actor: str, request: HttpRequest | None = None) -> ParkedEvent:
        return consumers.reapply_parked(parked_id=parked_id, actor=actor, request=request)
