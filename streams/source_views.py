"""Pages of sources: the sources list, one source with its parked events, the operator actions on it
(pause, resume, retry and skip a parked event), and the admins' form that adds one.

The list and a source's numbers poll themselves through htmx; an action answers htmx with the source's
panel re-rendered (its outcome on top) and a plain form post with a redirect back and a message. Only
those who may operate see the actions' buttons and a parked event's payload (what the source held); the
actions refuse everyone else too (403). A DSN is never shown, not even back in the form that took it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from core.pages import not_found, pretty_json, render_page, role_required, stop_polling
from core.roles import Can, can
from streams import source_kinds, source_links, source_services, source_status
from streams.models import Source, SourceParkedEvent, Stream
from streams.source_kinds import SourceError
from streams.views import clip

PARKED_SHOWN = 100
RESOLVED_SHOWN = 20
# A parked event's payload on the page: its start, as a page of events shows an event's data.
PAYLOAD_CHARS = 4000
THRESHOLDS = {"lag_threshold": source_status.LAG_THRESHOLD, "stall_seconds": source_status.STALL_SECONDS}


@require_safe
@role_required
def source_list(request: HttpRequest) -> HttpResponse:
    waiting = source_status.parked_waiting()
    statuses = source_status.source_statuses()
    context = {
        "section": "sources",
        "rows": [(status, waiting.get(status.source.pk, 0)) for status in statuses],
        "may_add": can(request.user, Can.ADMINISTER),
        "now": timezone.now(),
        **THRESHOLDS,
    }
    return render_page(request, "streams/sources.html", "streams/partials/source_table.html", context)


@require_safe
@role_required
def source_detail(request: HttpRequest, name: str) -> HttpResponse:
    source = Source.objects.filter(name=name).first()
    if source is None:
        return not_found(request, f"No source is named “{name}”.")
    context = source_context(request, source)
    return render_page(request, "streams/source_detail.html", "streams/partials/source_panel.html", context)


def source_context(request: HttpRequest, source: Source) -> dict[str, Any]:
    may_operate = can(request.user, Can.OPERATE)
    parked = SourceParkedEvent.objects.filter(source=source)
    waiting = parked.filter(state=SourceParkedEvent.State.PARKED).order_by("position")
    # The payload is loaded only where it is shown.
    shown = list((waiting if may_operate else waiting.defer("payload"))[:PARKED_SHOWN])
    resolved = list(
        parked.exclude(state=SourceParkedEvent.State.PARKED)
        .defer("payload")
        .order_by("-resolved_at")[:RESOLVED_SHOWN]
    )
    named = {item.stream for item in [*shown, *resolved] if item.stream}
    return {
        **live_context(request, source),
        "section": "sources",
        "options": sorted(source.options.items()),
        "parked": [parked_row(item, may_operate) for item in shown],
        "resolved": resolved,
        # Streams a parked event names that the log has (a hole's stream may not be there at all).
        "streams_in_log": set(Stream.objects.filter(name__in=named).values_list("name", flat=True)),
    }


def live_context(request: HttpRequest, source: Source) -> dict[str, Any]:
    return {
        "source": source,
        "status": source_status.source_status(source),
        "waiting": SourceParkedEvent.objects.filter(
            source=source, state=SourceParkedEvent.State.PARKED
        ).count(),
        "may_operate": can(request.user, Can.OPERATE),
        # What other apps offer for it (recovery: Verify), beside Pause and Resume.
        "links": source_links.links_for(source),
        "now": timezone.now(),
        **THRESHOLDS,
    }


def parked_row(item: SourceParkedEvent, may_operate: bool) -> dict[str, Any]:
    """A parked event as its row shows it: the payload (what the source held) only for those who may
    operate, and only its start."""
    payload = clip(pretty_json(item.payload), PAYLOAD_CHARS) if may_operate else None
    return {"item": item, "payload": payload}


@require_safe
@role_required
def source_live(request: HttpRequest, name: str) -> HttpResponse:
    """A source's numbers, polled by its page, with its health badge out of band, and its buttons too
    when its state is not the one the page shows (paused or resumed elsewhere)."""
    source = Source.objects.filter(name=name).first()
    if source is None:
        return stop_polling(render(request, "streams/partials/source_gone.html", {"name": name}))
    context = live_context(request, source) | {"state_changed": request.GET.get("shown") != source.state}
    return render(request, "streams/partials/source_poll.html", context)


# --- operator actions


@require_POST
@role_required(can=Can.OPERATE)
def pause(request: HttpRequest, name: str) -> HttpResponse:
    return act(
        request,
        name,
        lambda actor: source_services.set_state(
            name=name, state=Source.State.PAUSED, actor=actor, request=request
        ),
        f"Paused {name}: nothing is copied from it until it is resumed.",
    )


@require_POST
@role_required(can=Can.OPERATE)
def resume(request: HttpRequest, name: str) -> HttpResponse:
    return act(
        request,
        name,
        lambda actor: source_services.set_state(
            name=name, state=Source.State.RUNNING, actor=actor, request=request
        ),
        f"Resumed {name}: it is copied again from where it stopped.",
    )


@require_POST
@role_required(can=Can.OPERATE)
def retry(request: HttpRequest, name: str, parked_id: int) -> HttpResponse:
    if not SourceParkedEvent.objects.filter(pk=parked_id, source__name=name).exists():
        return not_found(request, f"{name} has no parked event {parked_id}.")
    return act(
        request,
        name,
        lambda actor: source_services.retry_parked(
            name=name, parked_id=parked_id, actor=actor, request=request
        ),
        "Retried the parked event: it was read from the source again and copied into the log.",
    )


@require_POST
@role_required(can=Can.OPERATE)
def skip(request: HttpRequest, name: str, parked_id: int) -> HttpResponse:
    if not SourceParkedEvent.objects.filter(pk=parked_id, source__name=name).exists():
        return not_found(request, f"{name} has no parked event {parked_id}.")
    return act(
        request,
        name,
        lambda actor: source_services.skip_parked(
            name=name, parked_id=parked_id, actor=actor, request=request
        ),
        "Skipped the parked event: it is left out of the log for good.",
    )


def act(request: HttpRequest, name: str, action: Callable[[str], Any], done: str) -> HttpResponse:
    """Run one operator action and say how it went (the service's own words when it refuses): htmx gets
    the source's panel re-rendered with the message on top, a plain form post a redirect back."""
    source = Source.objects.filter(name=name).first()
    if source is None:
        return not_found(request, f"No source is named “{name}”.")
    try:
        action(request.user.get_username())
    except SourceError as exc:
        messages.error(request, f"Not done: {exc}.")
    else:
        messages.success(request, done)
    if not request.htmx:
        return redirect("streams:source", name=name)
    source.refresh_from_db()
    return render(request, "streams/partials/source_panel.html", source_context(request, source))


# --- adding a source (admins)


class SourceForm(forms.Form):
    """Turns text into the service's values (options from KEY=VALUE lines); every rule about a source
    lives in `add_source`, whose InvalidSource is shown next to the fields it names."""

    # Not required here: a blank name or DSN is refused by the service, which says what it wants.
    name = forms.CharField(
        required=False,
        help_text="1–40 lowercase letters, digits and _, starting with a letter, e.g. orders_store.",
    )
    kind = forms.ChoiceField(choices=[], widget=forms.RadioSelect)
    dsn = forms.CharField(
        label="DSN",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="How to reach it: a postgresql:// URL or key=value pairs, for a role that may only read "
        "there. Stored encrypted, never shown again, and not kept in this form when something is wrong.",
    )
    dsn_env = forms.CharField(
        label="Or: environment variable with the DSN",
        required=False,
        help_text="The name of an environment variable of the server's processes that holds the DSN, "
        "e.g. ORDERS_STORE_DSN. Give this or the DSN.",
    )
    options = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "autocapitalize": "none"}),
        help_text="One KEY=VALUE a line, as the kind's options below say; blank lines and lines "
        "starting with # are left out.",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        kinds = source_kinds.kinds()
        self.fields["kind"].choices = [(kind.name, kind.name) for kind in kinds]
        if len(kinds) == 1:
            self.fields["kind"].initial = kinds[0].name

    def clean_options(self) -> dict[str, str]:
        options, errors = parse_options(self.cleaned_data["options"])
        if errors:
            raise forms.ValidationError(errors)
        return options

    def show_errors(self, errors: dict[str, list[str]]) -> None:
        """The service's errors next to their fields: an option's (`options.table`) on the options."""
        for field, found in errors.items():
            for message in found:
                if field.startswith("options."):
                    self.add_error("options", f"{field.removeprefix('options.')}: {message}")
                else:
                    self.add_error(field if field in self.fields else None, message)


def parse_options(text: str) -> tuple[dict[str, str], list[str]]:
    """'table=events\\nposition=seq' → {"table": "events", "position": "seq"}, and what is wrong, by line."""
    options: dict[str, str] = {}
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not key:
            errors.append(f"line {number}: write KEY=VALUE, e.g. table=events")
        elif key in options:
            errors.append(f"line {number}: {key} is given twice")
        else:
            options[key] = value.strip()
    return options, errors


@require_http_methods(["GET", "POST"])
@role_required(can=Can.ADMINISTER)
def source_new(request: HttpRequest) -> HttpResponse:
    form = SourceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            source = source_services.add_source(
                **form.cleaned_data, actor=request.user.get_username(), request=request
            )
        except source_services.InvalidSource as exc:
            form.show_errors(exc.errors)
        else:
            messages.success(request, f"Added the source {source.name}: it is copied from its start.")
            return redirect("streams:source", name=source.name)
    context = {"section": "sources", "form": form, "kinds": source_kinds.kinds()}
    return render(request, "streams/source_form.html", context, status=400 if form.is_bound else 200)
