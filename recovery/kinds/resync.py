"""resync: re-deliver a range of the log to a sink, in order, at a rate limit."""

from __future__ import annotations

import time

from django.db import transaction
from django.utils import timezone

from recovery import rebuild, runner
from recovery.kinds.common import FinalError
from recovery.models import Job, JobLane
from recovery.runner import Step
from recovery.selectors import resync_events
from streams import consumer_kinds, selectors
from streams.consumer_kinds import Resender
from streams.consumers import backoff
from streams.models import Consumer, Sink


class Resync:
    """Re-deliver events to a sink from a position (or for some streams), in order, at a rate limit.
    Delivery is at least once: the receiver keeps each event id once."""

    def main(self, job: Job, deadline: float) -> Step:
        if not job.stage:
            return self._prepare(job)
        if JobLane.objects.filter(job=job, finished=False).exists():
            return Step(lanes=True)
        lane = JobLane.objects.get(job=job, lane=0)
        with transaction.atomic():
            result = {
                "sink": job.target,
                "events_resent": lane.done,
                "from_position": job.params["from_position"],
                "up_to_position": job.params["up_to_position"],
            }
            runner.finish(job, result=result, message=f"{lane.done} events re-sent to {job.target}")
        return Step(done=True)

    def _prepare(self, job: Job) -> Step:
        sink = self._sink(job)
        start, end = job.params["from_position"], job.params["up_to_position"]
        with transaction.atomic():
            total = self._events(sink, job, after=start, up_to=end).count()
            JobLane.objects.filter(job=job).delete()
            JobLane.objects.create(job=job, lane=0, position=start, finished=start >= end)
            runner.set_stage(job, "delivering", total=total, work={"lanes": 1, "target": end})
        return Step(lanes=True)

    def lane(self, job: Job, lane: JobLane, deadline: float) -> None:
        sink = self._sink(job)
        rate, end = job.params["rate_per_second"], job.params["up_to_position"]
        started, sent = time.monotonic(), 0
        with consumer_kinds.of(sink.consumer).resync(sink.consumer) as resender:
            # A batch must fit in half a slice at the rate, or a short slice would never send one.
            limit = max(1, min(resender.batch_size, int(rate), int(rate * (deadline - started) / 2)))
            while not lane.finished and time.monotonic() < deadline:
                if runner.cancel_requested(job):
                    return
                window_end = min(end, selectors.next_position(after=lane.position) - 1 + limit * 4)
                events = list(
                    self._events(sink, job, after=lane.position, up_to=window_end)
                    .select_related("stream")
                    .order_by("position")[:limit]
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
                reached = events[-1].position if len(events) == limit else window_end
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

    def _events(self, sink: Sink, job: Job, *, after: int, up_to: int):
        events = resync_events(sink, job.params, after=after, up_to=up_to)
        # Events a bad deploy wrote, say: the receiver should never see them again.
        rule = rebuild.excluded(job.params.get("exclude") or {})
        return events.exclude(rule) if rule is not None else events

    def _sink(self, job: Job) -> Sink:
        sink = Sink.objects.select_related("consumer").filter(consumer__name=job.target).first()
        if sink is None or sink.consumer.kind != Consumer.Kind.SINK:
            raise FinalError(f"no sink is named {job.target!r} any more")
        return sink

    def cancelled(self, job: Job) -> None:
        pass
