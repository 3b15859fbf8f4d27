"""The new-job form: it only turns text into values; every rule about a job lives in recovery.params
(through services.request_job and selectors.estimate), whose errors it shows next to the fields they name."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.utils.dateparse import parse_datetime

from recovery import params as job_params
from recovery.models import Job
from streams.models import Consumer
from streams.projections import projections

KIND_HELP = {
    Job.Kind.SNAPSHOT: "Copy the projection's tables at one position, with a checksum per table.",
    Job.Kind.REPLAY: "Rebuild the projection from the log in a fresh schema and swap it in (or repair "
    "one stream in place).",
    Job.Kind.RESTORE: "Load a snapshot into a fresh schema, replay the log after it, and swap it in.",
    Job.Kind.VERIFY: "Rebuild the projection aside and compare it with the live one, table by table.",
    Job.Kind.RESYNC: "Send a range of the log to a sink again, in order, at a rate limit.",
    Job.Kind.DRILL: "Play a restore from an old backup in a scratch database and report RPO and RTO "
    "(the store is not touched).",
}


def split_list(text: str) -> list[str]:
    """'a, b\nc' → ['a', 'b', 'c']."""
    return [part for part in re.split(r"[\s,]+", text) if part]


class UtcTimeField(forms.CharField):
    """An ISO 8601 time; one typed without a zone is UTC, as every time on the console is."""

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        parsed = parse_datetime(text) if text else None
        if parsed is not None and parsed.tzinfo is None:
            return parsed.isoformat() + "+00:00"
        return text


def number_input() -> forms.TextInput:
    return forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"})


class JobForm(forms.Form):
    kind = forms.ChoiceField(choices=Job.Kind.choices, widget=forms.RadioSelect, initial=Job.Kind.REPLAY)
    projection = forms.ChoiceField(required=False)
    sink = forms.ChoiceField(required=False)
    snapshot = forms.IntegerField(
        label="Snapshot id", required=False, min_value=1, widget=number_input(), help_text="See Snapshots."
    )
    before = UtcTimeField(
        label="Latest snapshot taken before",
        required=False,
        help_text="Instead of a snapshot id; blank with no id: the latest snapshot.",
    )
    stream = forms.CharField(
        label="Only this stream", required=False, help_text="Repairs one stream in place, e.g. user-123."
    )
    exclude_event_ids = forms.CharField(
        label="Event ids", required=False, widget=forms.Textarea(attrs={"rows": 2}), help_text="One a line."
    )
    exclude_actor = forms.CharField(label="Actor", required=False)
    exclude_types = forms.CharField(label="Event types", required=False, help_text="Comma-separated.")
    exclude_recorded_after = UtcTimeField(label="Recorded after", required=False)
    exclude_recorded_before = UtcTimeField(label="Recorded before", required=False)
    repair = forms.BooleanField(
        label="Repair: swap the rebuilt projection in when they differ", required=False
    )
    shards = forms.IntegerField(
        label="Shards", required=False, widget=number_input(), help_text="Parallel lanes; blank: the default."
    )
    from_position = forms.IntegerField(
        label="From position", required=False, widget=number_input(), help_text="0 re-sends every event."
    )
    from_time = UtcTimeField(label="From time", required=False)
    streams = forms.CharField(
        label="Only these streams", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    rate_per_second = forms.FloatField(
        label="Rate (events per second)",
        required=False,
        widget=number_input(),
        help_text="Blank: the sink's.",
    )
    # Not required here: the service refuses a blank reason and says why it wants one.
    reason = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this job should run; kept with the job and its audit events.",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.exclude_errors: list[str] = []
        self.fields["projection"].choices = [("", "Choose a projection")] + [
            (name, name) for name in sorted(projections())
        ]
        sinks = (
            Consumer.objects.filter(kind=Consumer.Kind.SINK).order_by("name").values_list("name", flat=True)
        )
        self.fields["sink"].choices = [("", "Choose a sink")] + [(name, name) for name in sinks]

    def params(self) -> dict[str, Any]:
        """The parameters the chosen kind takes, named as recovery.params names them; blanks left out
        so that defaults apply."""
        data = self.cleaned_data
        candidate = {
            **{name: data[name] for name in ("projection", "sink", "snapshot", "before", "stream", "shards")},
            **{name: data[name] for name in ("repair", "from_position", "from_time", "rate_per_second")},
            "exclude": self.exclusions(),
            "streams": split_list(data["streams"]),
        }
        taken = job_params.FIELDS[data["kind"]]
        return {key: value for key, value in candidate.items() if key in taken and not blank(value)}

    def exclusions(self) -> dict[str, Any]:
        data = self.cleaned_data
        exclude = {
            "event_ids": split_list(data["exclude_event_ids"]),
            "actor": data["exclude_actor"],
            "types": split_list(data["exclude_types"]),
            "recorded_after": data["exclude_recorded_after"],
            "recorded_before": data["exclude_recorded_before"],
        }
        return {key: value for key, value in exclude.items() if not blank(value)}

    def show_errors(self, exc: job_params.JobParamsError) -> None:
        for key, found in exc.errors.items():
            field = key.replace(".", "_")  # exclude.event_ids is the field exclude_event_ids
            for message in found:
                if field == "exclude":
                    self.exclude_errors.append(message)
                elif field in self.fields:
                    self.add_error(field, message)
                else:
                    self.add_error(None, f"{key}: {message}")

    @property
    def has_errors(self) -> bool:
        return bool(self.errors or self.exclude_errors)

    def kind_choices(self) -> list[tuple[forms.BoundWidget, str]]:
        return [(choice, KIND_HELP[choice.data["value"]]) for choice in self["kind"]]


def blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def prefill(query: dict[str, str]) -> dict[str, Any]:
    """?kind=replay&projection=access, ?kind=restore&snapshot=12: the form as a link asks for it."""
    initial = {name: query[name] for name in JobForm.base_fields if query.get(name)}
    if initial.get("kind") not in Job.Kind.values:
        initial.pop("kind", None)
    return initial
