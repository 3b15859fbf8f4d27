"""Pages that configure webhook sinks: a new sink, and the settings of one.

The form only turns text into values (numbers, lists of categories and types); every rule about a sink
lives in `create_sink` and `update_sink`, whose `SinkConfigError` is shown next to the fields it names.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from core.pages import not_found, role_required
from core.roles import Can
from streams import sink_config
from streams.consumers import ConsumerError
from streams.models import Sink

ADVANCED = ("batch_size", "timeout_seconds", "max_attempts", "breaker_threshold", "breaker_cooldown_seconds")
START_CHOICES = [("beginning", "The beginning of the log"), ("now", "Now: only events appended from here on")]


def number_input() -> forms.TextInput:
    return forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"})


def split_list(text: str) -> list[str]:
    """'order, invoice,' → ['order', 'invoice']."""
    return [part.strip() for part in text.split(",") if part.strip()]


class SinkForm(forms.Form):
    # Not required here: a blank name, URL or secret is refused by the service, which says what it wants.
    name = forms.CharField(required=False, help_text="Lowercase letters, digits and _, e.g. crm_hook.")
    url = forms.CharField(
        label="URL",
        required=False,
        help_text="Where batches of events are POSTed: a public address, or an internal one that "
        "REPLAYDESK_SINK_ALLOW admits.",
    )
    secret = forms.CharField(
        label="Signing secret",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Signs every delivery (HMAC-SHA256); 16 characters or more. Never shown again.",
    )
    categories = forms.CharField(
        required=False, help_text="Comma-separated, e.g. order, invoice. Blank: every category."
    )
    types = forms.CharField(
        label="Event types", required=False, help_text="Comma-separated, e.g. OrderPlaced. Blank: every type."
    )
    rate_per_second = forms.FloatField(label="Rate (events per second)", widget=number_input())
    start = forms.ChoiceField(
        label="Start from", choices=START_CHOICES, initial="beginning", widget=forms.RadioSelect
    )
    batch_size = forms.IntegerField(label="Batch size (events per POST)", initial=100, widget=number_input())
    timeout_seconds = forms.FloatField(label="Timeout (seconds)", initial=5.0, widget=number_input())
    max_attempts = forms.IntegerField(
        label="Attempts before parking an event", initial=8, widget=number_input()
    )
    breaker_threshold = forms.IntegerField(
        label="Breaker opens after (failures in a row)", initial=5, widget=number_input()
    )
    breaker_cooldown_seconds = forms.FloatField(
        label="Breaker cooldown (seconds)", initial=30.0, widget=number_input()
    )

    def __init__(self, *args: Any, sink: Sink | None = None, **kwargs: Any):
        if sink is not None:
            kwargs.setdefault("initial", settings_of(sink))
        super().__init__(*args, **kwargs)
        if sink is not None:
            # The name is the consumer's identity and the start its checkpoint: neither changes here.
            del self.fields["name"]
            del self.fields["start"]
            self.fields["secret"].help_text = "Blank keeps the current secret."
            if sink_config.public_url(sink.url) != sink.url:
                self.fields["url"].help_text = (
                    "It holds a password (shown as ***), which sinks no longer send: deliveries fail "
                    "until it is replaced by a URL without one."
                )

    def settings(self) -> dict[str, Any]:
        """The parsed values, named as the service names them."""
        data = dict(self.cleaned_data)
        data["categories"] = split_list(data["categories"])
        data["types"] = split_list(data["types"])
        data.pop("start", None)
        return data

    def advanced_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ADVANCED]

    def show_errors(self, exc: ConsumerError) -> None:
        errors = exc.errors if isinstance(exc, sink_config.SinkConfigError) else {None: [str(exc)]}
        for field, found in errors.items():
            for message in found:
                self.add_error(field if field in self.fields else None, message)


def settings_of(sink: Sink) -> dict[str, Any]:
    return {
        "url": sink_config.public_url(sink.url),
        "categories": ", ".join(sink.categories),
        "types": ", ".join(sink.types),
        "rate_per_second": sink.rate_per_second,
        **{field: getattr(sink, field) for field in ADVANCED},
    }


@require_http_methods(["GET", "POST"])
@role_required(can=Can.OPERATE)
def sink_new(request: HttpRequest) -> HttpResponse:
    form = SinkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        settings = form.settings()
        try:
            sink = sink_config.create_sink(
                **settings,
                from_head=form.cleaned_data["start"] == "now",
                actor=request.user.get_username(),
                request=request,
            )
        except sink_config.SinkConfigError as exc:
            form.show_errors(exc)
        else:
            start = "now" if form.cleaned_data["start"] == "now" else "the beginning of the log"
            messages.success(request, f"Created the sink {sink.consumer.name}: it delivers from {start}.")
            return redirect("streams:consumer", name=sink.consumer.name)
    return form_page(request, form, sink=None)


@require_http_methods(["GET", "POST"])
@role_required(can=Can.OPERATE)
def sink_edit(request: HttpRequest, name: str) -> HttpResponse:
    sink = Sink.objects.filter(consumer__name=name).first()
    if sink is None:
        return not_found(request, f"No sink is named “{name}”.")
    form = SinkForm(request.POST or None, sink=sink)
    if request.method == "POST" and form.is_valid():
        settings = form.settings()
        # Write-only: a blank secret keeps the one the sink has, and so does the URL shown with its
        # password masked.
        settings["secret"] = settings["secret"] or None
        if settings["url"] == sink_config.public_url(sink.url):
            settings["url"] = None
        try:
            saved = sink_config.update_sink(
                name=name, **settings, actor=request.user.get_username(), request=request
            )
        except ConsumerError as exc:
            form.show_errors(exc)
        else:
            changed = saved.updated_at != sink.updated_at
            messages.success(request, f"Saved the settings of {name}." if changed else "Nothing changed.")
            return redirect("streams:consumer", name=name)
    return form_page(request, form, sink=sink)


def form_page(request: HttpRequest, form: SinkForm, *, sink: Sink | None) -> HttpResponse:
    context = {"section": "consumers", "form": form, "sink": sink}
    status = 400 if form.is_bound else 200
    return render(request, "streams/sink_form.html", context, status=status)
