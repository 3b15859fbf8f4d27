"""The new-job form: it only turns text into values; every rule about a job lives in recovery.params and
its kind in recovery/kinds (through services.request_job and selectors.estimate), whose errors it shows
next to the fields they name. Which fields show for which kind comes from the kinds' parameters."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.template.defaultfilters import filesizeformat
from django.utils.dateparse import parse_date, parse_datetime

from recovery import params as job_params
from recovery.kinds import base as registry
from recovery.models import Snapshot
from streams import consumer_kinds
from streams.models import Consumer
from streams.projections import projections

# The form's fields that are not parameters of their own name: exclude_* make up `exclude`.
SHARED_PARAMS = ("projection", "sink", "snapshot", "before", "stream", "shards", "repair", "from_position")
SHARED_PARAMS += ("from_time", "rate_per_second", "streams", "exclude")


def split_list(text: str) -> list[str]:
    """'a, b\nc' → ['a', 'b', 'c']."""
    return [part for part in re.split(r"[\s,]+", text) if part]


TIME_HINT = "UTC, as YYYY-MM-DD HH:MM (e.g. 2026-01-31 14:30), or a date for its midnight."
TIME_PLACEHOLDER = "YYYY-MM-DD HH:MM"
# The newest snapshots offered in the form's list; an older one is asked for by ?snapshot=ID.
SNAPSHOT_CHOICES = 200


class UtcTimeField(forms.CharField):
    """An ISO 8601 time, `2026-01-31 14:30` or a date; one typed without a zone is UTC, as every time on
    the console is."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault(
            "widget", forms.TextInput(attrs={"placeholder": TIME_PLACEHOLDER, "autocomplete": "off"})
        )
        help_text = kwargs.pop("help_text", "")
        kwargs["help_text"] = f"{help_text} {TIME_HINT}".strip()
        super().__init__(*args, **kwargs)

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        if not text:
            return text
        try:
            parsed = parse_datetime(text)
            day = parse_date(text) if parsed is None else None
        except ValueError:
            parsed = day = None
        if day is not None:
            return f"{day.isoformat()}T00:00:00+00:00"
        if parsed is None:
            # Left as typed: recovery.params refuses it beside the other fields' errors, all at once.
            return text
        if parsed.tzinfo is None:
            return parsed.isoformat() + "+00:00"
        return parsed.isoformat()


def source_field() -> forms.ChoiceField:
    """The source a job of a kind that works on sources works on (verify_source, write_back)."""
    from streams.models import Source

    names = Source.objects.order_by("name").values_list("name", flat=True)
    choices = [("", "Choose a source"), *((name, name) for name in names)]
    return forms.ChoiceField(required=False, choices=choices)


def snapshot_choices() -> list[tuple[str, str]]:
    """The snapshots a restore can start from, newest first, as the snapshots list names them."""
    snapshots = Snapshot.objects.order_by("-taken_at", "-pk")[:SNAPSHOT_CHOICES]
    choices = [("", "None chosen")]
    for snapshot in snapshots.only("pk", "name", "projection", "taken_at", "bytes"):
        taken = snapshot.taken_at.strftime("%Y-%m-%d %H:%M UTC")
        size = filesizeformat(snapshot.bytes).replace("\xa0", " ")
        choices.append((str(snapshot.pk), f"{snapshot.name} ({snapshot.projection}), {taken}, {size}"))
    return choices


def number_input() -> forms.TextInput:
    return forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"})


class JobForm(forms.Form):
    # Nothing chosen unless the link asks for a kind (prefill): a job is never started by a default.
    kind = forms.ChoiceField(
        choices=registry.choices,
        widget=forms.RadioSelect,
        error_messages={"required": "Choose the kind of job."},
    )
    projection = forms.ChoiceField(required=False)
    sink = forms.ChoiceField(required=False)
    snapshot = forms.TypedChoiceField(
        label="From snapshot",
        required=False,
        coerce=int,
        empty_value=None,
        help_text="Name (projection), time taken, size. None chosen: a restore takes the latest (before the "
        "time below, if given); a replay reads the log from its start.",
    )
    before = UtcTimeField(
        label="Latest snapshot taken before",
        required=False,
        help_text="Instead of choosing a snapshot; both blank: the latest snapshot.",
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
        resyncable = [kind.name for kind in consumer_kinds.kinds() if kind.resyncs]
        sinks = Consumer.objects.filter(kind__in=resyncable).order_by("name").values_list("name", flat=True)
        self.fields["sink"].choices = [("", "Choose a sink")] + [(name, name) for name in sinks]
        self.fields["snapshot"].choices = snapshot_choices()
        wanted = self.initial.get("snapshot") or self.data.get("snapshot")
        if wanted and str(wanted) not in dict(self.fields["snapshot"].choices):
            # An older snapshot a link or a resubmitted form names: offered too, if it exists.
            older = Snapshot.objects.filter(pk=int(wanted)).first() if str(wanted).isdigit() else None
            if older is not None:
                self.fields["snapshot"].choices.append((str(older.pk), f"{older.name} ({older.projection})"))
        # A kind's parameters of its own (JobKind.form_fields), after the shared ones.
        self.own_fields: list[str] = []
        for kind in registry.kinds():
            for name, field in kind.form_fields().items():
                if name not in self.fields:
                    self.fields[name] = field
                    self.own_fields.append(name)

    def params(self) -> dict[str, Any]:
        """The parameters the chosen kind takes, named as recovery.params names them; blanks left out
        so that defaults apply."""
        data = self.cleaned_data
        candidate = {
            **{name: data[name] for name in ("projection", "sink", "snapshot", "before", "stream", "shards")},
            **{name: data[name] for name in ("repair", "from_position", "from_time", "rate_per_second")},
            **{name: data[name] for name in self.own_fields},
            "exclude": self.exclusions(),
            "streams": split_list(data["streams"]),
        }
        taken = registry.get(data["kind"]).fields
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
        return [(choice, registry.get(choice.data["value"]).help) for choice in self["kind"]]

    @property
    def field_kinds(self) -> dict[str, str]:
        """For each parameter, the kinds that take it (space-separated, as the page's data-kinds): the
        page shows a field only for those. `target` and `params` group fields into fieldsets."""
        taking = {
            name: " ".join(kind.name for kind in registry.kinds() if name in kind.fields)
            for name in (*SHARED_PARAMS, *self.own_fields)
        }
        grouped = {
            "target": ("projection", "sink"),
            "params": tuple(name for name in taking if name not in ("projection", "sink", "exclude")),
        }
        for group, names in grouped.items():
            taking[group] = " ".join(kind.name for kind in registry.kinds() if kind.fields & set(names))
        # The button says what pressing it does: a kind that needs approval waits for it.
        from recovery.services import approvals_required

        waits = {kind.name: approvals_required(kind.name) > 0 for kind in registry.kinds()}
        taking["any"] = " ".join(waits)
        taking["starts"] = " ".join(name for name, wait in waits.items() if not wait)
        taking["waits"] = " ".join(name for name, wait in waits.items() if wait)
        return taking

    def own_bound_fields(self) -> list[tuple[forms.BoundField, str]]:
        kinds = self.field_kinds
        return [(self[name], kinds[name]) for name in self.own_fields]


def blank(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def prefill(query: dict[str, str]) -> dict[str, Any]:
    """?kind=replay&projection=access, ?kind=restore&snapshot=12: the form as a link asks for it."""
    own = {name for kind in registry.kinds() for name in kind.form_fields()}
    initial = {name: query[name] for name in {*JobForm.base_fields, *own} if query.get(name)}
    if initial.get("kind") not in registry.names():
        initial.pop("kind", None)
    return initial
