"""rewind and skip_to_head: move a subscription's checkpoints, back to a position or a time (its readers
receive what followed again) or forward to the head (they never receive what was left). Either is one
short transaction (streams.subscriptions.move_checkpoints); what takes time afterwards is the readers'
own work, at their pace. Both need an approval, as a replay does: the approval covers the position,
fixed when the job is requested, so a skip passes over exactly the events its dry run counted and no
event appended after it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.db import transaction
from django.db.models import QuerySet

from recovery import runner
from recovery.forms import UtcTimeField, number_input
from recovery.kinds.base import JobKind, Step, register
from recovery.kinds.common import FinalError
from recovery.models import Job
from recovery.params import Checker, position_before
from streams import selectors, subscriptions
from streams.models import Event, Subscription


class SubscriptionMove(JobKind):
    offered_on = ("subscription",)
    consumer_param = "subscription"
    counts_events = True
    result_template = "recovery/results/subscription_move.html"

    def target(self, params: dict[str, Any]) -> str:
        return params["subscription"]

    def form_fields(self) -> dict[str, forms.Field]:
        names = Subscription.objects.order_by("consumer__name").values_list("consumer__name", flat=True)
        return {
            "subscription": forms.ChoiceField(
                required=False, choices=[("", "Choose a subscription"), *((name, name) for name in names)]
            )
        }

    def move(self, params: dict[str, Any]) -> subscriptions.Move:
        raise NotImplementedError

    def events(self, params: dict[str, Any]) -> QuerySet[Event]:
        subscription = subscriptions.get_subscription(name=params["subscription"])
        return subscriptions.moved_events(subscription, self.move(params))

    def limit_rate(self, params: dict[str, Any], rate: float | None, basis: str) -> tuple[float | None, str]:
        return None, "the checkpoints move at once; the readers then go on at their own pace"

    def summary(self, job: Job) -> list[str]:
        return [f"{job.target}: {self.describe(job.result)}"]

    def main(self, job: Job, deadline: float) -> Step:
        subscription = subscriptions.get_subscription(name=job.target)
        if subscription is None:
            raise FinalError(f"no subscription is named {job.target!r} any more")
        result = subscriptions.move_checkpoints(
            subscription=subscription, move=self.move(job.params), actor=job.requested_by, job=job.pk
        )
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(done=result["events"], total=result["events"])
            runner.finish(job, result=result, message=self.describe(result))
        return Step.DONE

    def describe(self, result: dict[str, Any]) -> str:
        moved = len(result["partitions"])
        return f"{moved} partition(s) {self.did} position {result['position']:,}: {self.counted(result)}"

    def counted(self, result: dict[str, Any]) -> str:
        raise NotImplementedError


@register
class Rewind(SubscriptionMove):
    name = "rewind"
    position = 55
    button_order = 1
    help = "Move a subscription's checkpoints back to a position or a time: what followed is delivered again."
    params_help = "subscription, to_position or to_time"
    fields = frozenset({"subscription", "to_position", "to_time"})
    did = "rewound to"

    def form_fields(self) -> dict[str, forms.Field]:
        return {
            **super().form_fields(),
            "to_position": forms.IntegerField(
                label="To position",
                required=False,
                widget=number_input(),
                help_text="Events after it are delivered again; 0: from the first event.",
            ),
            "to_time": UtcTimeField(
                label="To time", required=False, help_text="Instead of a position: events recorded from then."
            ),
        }

    def check(self, checker: Checker) -> dict[str, Any]:
        subscription = checker.subscription()
        head = selectors.head()
        to_time = checker.time("to_time")
        to_position = checker.raw.get("to_position")
        if to_position is not None and checker.raw.get("to_time") is not None:
            checker.bad("to_time", "give to_position or to_time, not both")
        elif to_position is not None:
            if not isinstance(to_position, int) or isinstance(to_position, bool) or not 0 <= to_position:
                checker.bad("to_position", "must be a whole number, 0 or more (0 delivers every event again)")
                to_position = None
            elif to_position > head:
                checker.bad(
                    "to_position",
                    f"the log's head is at {head}; a rewind goes back (skip_to_head moves forward)",
                )
                to_position = None
        elif to_time is not None:
            when = dt.datetime.fromisoformat(to_time)
            if when > dt.datetime.now(dt.UTC):
                checker.bad("to_time", "must not be in the future: a rewind goes back")
            else:
                to_position = position_before(when)
        elif "to_time" not in checker.errors:
            checker.bad("to_position", "say where to rewind to: to_position or to_time")
        return {"subscription": subscription, "to_position": to_position, "to_time": to_time}

    def move(self, params: dict[str, Any]) -> subscriptions.Move:
        return subscriptions.Move(position=params["to_position"], back=True)

    def counted(self, result: dict[str, Any]) -> str:
        return f"{result['events']:,} events to deliver again"


@register
class SkipToHead(SubscriptionMove):
    name = "skip_to_head"
    position = 56
    button_order = 2
    help = "Move a subscription's checkpoints to the head: its readers never receive what they had not yet."
    params_help = "subscription"
    fields = frozenset({"subscription"})
    did = "moved forward to"

    def check(self, checker: Checker) -> dict[str, Any]:
        # The head now, so that the approval covers exactly the events passed over; later ones are
        # delivered as usual.
        return {"subscription": checker.subscription(), "up_to_position": selectors.head()}

    def move(self, params: dict[str, Any]) -> subscriptions.Move:
        return subscriptions.Move(position=params["up_to_position"], back=False)

    def counted(self, result: dict[str, Any]) -> str:
        return f"{result['events']:,} events passed over"
