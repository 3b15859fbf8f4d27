"""resync: re-deliver a range of the log to a sink, in order, at a rate limit."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from recovery import rebuild, runner
from recovery.kinds.base import JobKind, Step, register
from recovery.kinds.common import FinalError
from recovery.models import Job, JobLane
from recovery.params import Checker, position_before
from recovery.selectors import resync_events
from streams import consumer_kinds, selectors
from streams.consumer_kinds import Resender
from streams.consumers import backoff
from streams.models import Consumer, Event

MAX_RESYNC_RATE = 10_000.0


@register
class Resync(JobKind):
    """Re-deliver events to a sink from a position (or for some streams), in order, at a rate limit.
    Delivery is at least once: the receiver keeps each event id once."""

    name = "resync"
    position = 40
    offered_on = ("sink",)
    consumer_param = "sink"
    button_order = 1
    help = "Send a range of the log to a sink again, in order, at a rate limit."
    params_help = "sink, from_position or from_time or streams, rate_per_second"
    fields = frozenset({"sink", "from_position", "from_time", "streams", "rate_per_second", "exclude"})
    lane_stages = ("delivering",)
    result_template = "recovery/results/resync.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        sink = checker.sink()
        streams = checker.streams()
        from_time = checker.time("from_time")
        from_position = checker.raw.get("from_position")
        given = [field for field in ("from_position", "from_time") if checker.raw.get(field) is not None]
        if len(given) > 1:
            checker.bad("from_time", "give from_position or from_time, not both")
        if from_position is not None and (
            not isinstance(from_position, int) or isinstance(from_position, bool) or from_position < 0
        ):
            checker.bad(
                "from_position", "must be a whole number, 0 or more (0 re-sends from the first event)"
            )
            from_position = None
        if from_position is None and from_time is not None:
            from_position = position_before(dt.datetime.fromisoformat(from_time))
        if from_position is None:
            if not streams and not {"from_position", "from_time"} & set(checker.errors):
                checker.bad("from_position", "say where to start: from_position, from_time, or streams")
            from_position = 0
        rate = checker.raw.get("rate_per_second")
        if rate is None and sink:
            consumer = Consumer.objects.get(name=sink)
            rate = consumer_kinds.of(consumer).resync_rate(consumer)
        if rate is None:
            pass  # no sink to take the rate from: the sink's own error says what to fix
        elif not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= MAX_RESYNC_RATE:
            checker.bad("rate_per_second", f"must be a number above 0 and at most {MAX_RESYNC_RATE:g}")
            rate = None
        return {
            "sink": sink,
            "from_position": from_position,
            "from_time": from_time,
            "streams": streams,
            "rate_per_second": float(rate) if rate is not None else None,
            "exclude": checker.exclude(),
            # Fixed now, so that an approval covers exactly these events; later ones reach the sink live.
            "up_to_position": selectors.head(),
        }

    def target(self, params: dict[str, Any]) -> str:
        return params["sink"]

    def events(self, params: dict[str, Any]) -> QuerySet[Event]:
        consumer = Consumer.objects.get(name=params["sink"])
        return resync_events(consumer, params, after=params["from_position"], up_to=params["up_to_position"])

    def limit_rate(self, params: dict[str, Any], rate: float | None, basis: str) -> tuple[float | None, str]:
        if not params["rate_per_second"]:
            return rate, basis
        limit = params["rate_per_second"]
        return (min(rate, limit) if rate else limit), f"{basis}; at most {limit:g} events/s (the rate limit)"

    def summary(self, job: Job) -> list[str]:
        r = job.result
        return [
            f"re-sent {r['events_resent']:,} events to {r['sink']} "
            f"(after position {r['from_position']:,} up to {r['up_to_position']:,})"
        ]

    def main(self, job: Job, deadline: float) -> Step:
        if not job.stage:
            return self._prepare(job)
        if JobLane.objects.filter(job=job, finished=False).exists():
            return Step.LANES
        lane = JobLane.objects.get(job=job, lane=0)
        with transaction.atomic():
            result = {
                "sink": job.target,
                "events_resent": lane.done,
                "from_position": job.params["from_position"],
                "up_to_position": job.params["up_to_position"],
            }
            runner.finish(job, result=result, message=f"{lane.done} events re-sent to {job.target}")
        return Step.DONE

    def _prepare(self, job: Job) -> Step:
        consumer = self._consumer(job)
        start, end = job.params["from_position"], job.params["up_to_position"]
        with transaction.atomic():
            total = self._events(consumer, job, after=start, up_to=end).count()
            JobLane.objects.filter(job=job).delete()
            JobLane.objects.create(job=job, lane=0, position=start, finished=start >= end)
            runner.set_stage(job, "delivering", total=total, work={"lanes": 1, "target": end})
        return Step.LANES

    def lane(self, job: Job, lane: JobLane, deadline: float) -> None:
        consumer = self._consumer(job)
        rate, end = job.params["rate_per_second"], job.params["up_to_position"]
        started, sent = time.monotonic(), 0
        with consumer_kinds.of(consumer).resync(consumer) as resender:
            # A batch must fit in half a slice at the rate, or a short slice would never send one.
            limit = max(1, min(resender.batch_size, int(rate), int(rate * (deadline - started) / 2)))
            while not lane.finished and time.monotonic() < deadline:
                if runner.cancel_requested(job):
                    return
                window_end = min(end, selectors.next_position(after=lane.position) - 1 + limit * 4)
                # Bounded in bytes too, as a live delivery's batch is (streams/sinks.py).
                candidates = self._events(consumer, job, after=lane.position, up_to=window_end)
                events = selectors.load_within(
                    candidates.order_by("position")[:limit], max_bytes=settings.REPLAYDESK_READ_MAX_BYTES
                )
                if events:
                    within = max(0.0, deadline - time.monotonic())
                    own = started + (sent + len(events)) / rate - time.monotonic()
                    if own > within:
                        return  # the next slice sends them, on time
                    # The sink's own window too: live deliveries and this resync together keep to the
                    # rate the receiver was promised.
                    shared = resender.claim(len(events), within=within)
                    if shared is None:
                        return
                    time.sleep(max(0.0, own, shared))
                    delivery = resender.send(events)
                    if not delivery.ok:
                        self._retry(job, lane, resender, delivery.error, deadline)
                        continue
                    sent += len(events)
                reached = events[-1].position if len(events) == limit or events.cut else window_end
                JobLane.objects.filter(pk=lane.pk).update(
                    position=reached,
                    done=lane.done + len(events),
                    finished=reached >= end,
                    attempts=0,
                    moved_at=timezone.now(),
                )
                lane.position, lane.done, lane.finished = reached, lane.done + len(events), reached >= end
                runner.report(job)

    def _retry(self, job: Job, lane: JobLane, resender: Resender, error: str, deadline: float) -> None:
        lane.attempts += 1
        JobLane.objects.filter(pk=lane.pk).update(attempts=lane.attempts)
        if lane.attempts >= resender.max_attempts:
            raise FinalError(
                f"{job.target} refused or failed {lane.attempts} deliveries in a row after position "
                f"{lane.position}: {error}; retry the job when the receiver is back"
            )
        time.sleep(min(backoff(lane.attempts), max(0.0, deadline - time.monotonic())))

    def _events(self, consumer: Consumer, job: Job, *, after: int, up_to: int):
        events = resync_events(consumer, job.params, after=after, up_to=up_to)
        # Events a bad deploy wrote, say: the receiver should never see them again.
        rule = rebuild.excluded(job.params.get("exclude") or {})
        return events.exclude(rule) if rule is not None else events

    def _consumer(self, job: Job) -> Consumer:
        consumer = Consumer.objects.filter(name=job.target).first()
        if consumer is None or not consumer_kinds.of(consumer).resyncs:
            raise FinalError(f"no sink is named {job.target!r} any more")
        return consumer
