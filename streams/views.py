"""Pages of the stream browser: streams, one stream, one event, and the global log with its live tail.

A view returns its partial (templates/streams/partials/…) to htmx and the whole page otherwise.
Every list is keyset paged by name, sequence or position, newest first where it is a list of events.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_safe

from core.pages import not_found, pretty_json, render_page, role_required
from core.queries import QueryErrors, QueryParser
from core.roles import Can, can
from streams import lag, masking, selectors, timeline
from streams.models import Event, Stream
from streams.queries import LOG_PARAMS, parse_log_filter

PAGE_SIZE = 50
PREVIEW_CHARS = 160


@dataclass(frozen=True)
class EventRow:
    event: Event
    data: str
    preview: str
    # What the event changed in its stream's state (the stream page's timeline), field by field.
    changes: list[timeline.Change] | None = None


def event_rows(events: list[Event], steps: dict[int, timeline.Step] | None = None) -> list[EventRow]:
    """Rows of events already masked as the view requires (streams.masking)."""
    rows = []
    for event in events:
        preview = json.dumps(event.data, ensure_ascii=False, separators=(", ", ": "))
        if len(preview) > PREVIEW_CHARS:
            preview = preview[: PREVIEW_CHARS - 1] + "…"
        step = steps.get(event.sequence) if steps is not None else None
        changes = step.changes if step else None
        rows.append(EventRow(event=event, data=pretty_json(event.data), preview=preview, changes=changes))
    return rows


@require_safe
@role_required
def stream_list(request: HttpRequest) -> HttpResponse:
    parser = QueryParser(request.GET, ("prefix", "category", "after", "limit"))
    prefix, category = (parser.raw("prefix") or "").strip(), (parser.raw("category") or "").strip()
    after = parser.raw("after")
    limit = parser.limit(PAGE_SIZE)
    context = {"section": "streams", "search": {"prefix": prefix, "category": category}, "after": after}
    context |= {"rows": [], "errors": parser.errors}
    if not parser.errors:
        streams = selectors.list_streams(
            prefix=prefix or None, category=category or None, after=after, limit=limit + 1
        )
        page = streams[:limit]
        last_times = selectors.last_recorded_at(streams=page)
        context["rows"] = [(stream, last_times.get(stream.id)) for stream in page]
        context["next_after"] = page[-1].name if len(streams) > limit else None
    return render_page(
        request,
        "streams/stream_list.html",
        "streams/partials/stream_table.html",
        context,
        status=400 if parser.errors else 200,
    )


@require_safe
@role_required
def stream_detail(request: HttpRequest, name: str) -> HttpResponse:
    stream = selectors.get_stream(name=name)
    if stream is None:
        return not_found(request, f"No stream is named “{name}”.")
    parser = QueryParser(request.GET, ("before", "after", "limit", "sequence", "at"))
    before, after = parser.integer("before", minimum=1), parser.integer("after", minimum=0)
    limit = parser.limit(PAGE_SIZE)
    if before is not None and after is not None:
        parser.error("after", "give before or after, not both")
    as_of = state_query(parser, stream)
    masked = masking.must_mask(request, masking.view_key("stream", stream.name))
    context = {"section": "streams", "stream": stream, "summary": selectors.stream_summary(stream=stream)}
    context["consumers"] = lag.stream_consumers(stream=stream)
    context |= {"rows": [], "errors": parser.errors, "at_newest": before is None and after is None}
    context |= {
        "as_of": as_of,
        "masked": masked,
        "unmask": unmask_form(request, "stream", stream.name, masked),
    }
    if not parser.errors:
        events = stream_window(stream=stream, before=before, after=after, limit=limit)
        steps = timeline.stream_timeline(stream=stream, events=events, masked=masked)
        context["rows"] = event_rows([steps[e.sequence].event for e in events], steps)
        if events:
            context["newer_after"] = events[0].sequence if events[0].sequence < stream.version else None
            context["older_before"] = events[-1].sequence if events[-1].sequence > 1 else None
        if as_of:
            context["state"] = state = timeline.state_as_of(stream=stream, masked=masked, **as_of)
            context["state_fields"] = timeline.fields(state.state)
    return render_page(
        request,
        "streams/stream_detail.html",
        "streams/partials/timeline_events.html",
        context,
        status=400 if parser.errors else 200,
    )


def state_query(parser: QueryParser, stream: Stream) -> dict[str, Any] | None:
    """The "state as of" form's question: {"sequence": N} or {"at": time}, or None when not asked."""
    sequence = parser.integer("sequence", minimum=0, maximum=stream.version)
    at = parser.time("at")
    if sequence is not None and at is not None:
        parser.error("at", "give a sequence or a time, not both")
    if sequence is not None:
        return {"sequence": sequence}
    return {"at": at} if at is not None else None


def unmask_form(request: HttpRequest, view: str, target: str, masked: bool) -> dict[str, Any]:
    """What templates/streams/partials/audit_unmask.html needs: a POST to unmask this one view (for those
    who may) or to mask it again."""
    return {
        "view": view,
        "target": target,
        "masked": masked,
        "allowed": can(request.user, Can.UNMASK),
        "next": request.get_full_path(),
        "minutes": round(masking.unmask_seconds() / 60),
    }


def stream_window(*, stream: Stream, before: int | None, after: int | None, limit: int) -> list[Event]:
    """Events of a stream newest first: the newest, those before sequence `before`, or the first
    `limit` after sequence `after` (sequences have no holes, so the pages either side are known)."""
    if after is not None:
        return selectors.read_stream(stream=stream, from_sequence=after + 1, limit=limit)[::-1]
    if before == 1:
        return []
    start = before - 1 if before is not None else None
    return selectors.read_stream(stream=stream, from_sequence=start, direction="backward", limit=limit)


@require_safe
@role_required
def event_detail(request: HttpRequest, event_id: uuid.UUID) -> HttpResponse:
    event = selectors.get_event(event_id=event_id)
    if event is None:
        return not_found(request, f"No event has the id {event_id}.")
    masked = masking.must_mask(request, masking.view_key("event", str(event.event_id)))
    step = timeline.stream_timeline(stream=event.stream, events=[event], masked=masked)[event.sequence]
    event = step.event
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    correlation = related_event(event, metadata.get("correlation_id"))
    context = {
        "section": "events",
        "event": event,
        "changes": step.changes,
        "unmask": unmask_form(request, "event", str(event.event_id), masked),
        "data": pretty_json(event.data),
        "metadata": pretty_json(event.metadata),
        "related": [
            ("Correlation", correlation),
            ("Causation", related_event(event, metadata.get("causation_id"))),
        ],
        "correlated_url": correlated_events_url(correlation),
    }
    return render(request, "streams/event_detail.html", context)


def correlated_events_url(correlation: RelatedEvent | None) -> str | None:
    """The log filtered to every event of this event's correlation (one request, one saga…)."""
    if correlation is None:
        return None
    try:
        correlation_id = uuid.UUID(correlation.raw)
    except ValueError:
        return None
    return f"{reverse('streams:log')}?{urlencode({'correlation_id': str(correlation_id)})}"


@dataclass(frozen=True)
class RelatedEvent:
    """What metadata.correlation_id or causation_id points at: an event of the store, or just an id."""

    raw: str
    event: Event | None = None
    is_self: bool = False


def related_event(event: Event, value: Any) -> RelatedEvent | None:
    if value in (None, ""):
        return None
    try:
        related_id = uuid.UUID(str(value))
    except ValueError:
        return RelatedEvent(raw=str(value))
    if related_id == event.event_id:
        return RelatedEvent(raw=str(value), event=event, is_self=True)
    return RelatedEvent(raw=str(value), event=selectors.get_event(event_id=related_id))


@require_safe
@role_required
def event_log(request: HttpRequest) -> HttpResponse:
    try:
        canonical = canonical_log_query(request.GET)
    except QueryErrors as exc:
        return render(request, "streams/event_log.html", log_context(request, exc.errors), status=400)
    if canonical is not None:
        return redirect(f"{request.path}?{canonical.urlencode()}" if canonical else request.path)
    parser = QueryParser(request.GET, ("before", "after", "limit", *LOG_PARAMS), allow_data=True)
    before, after = parser.integer("before", minimum=1), parser.integer("after", minimum=0)
    limit = parser.limit(PAGE_SIZE)
    log_filter = parse_log_filter(parser, masked=masking.sees_masked(request.user))
    if before is not None and after is not None:
        parser.error("after", "give before or after, not both")
    context = log_context(request, parser.errors)
    if parser.errors:
        return render(request, "streams/event_log.html", context, status=400)
    live = before is None and after is None
    # The head is read before the page, so that the tail starts no later than where the page ends.
    tail_start = selectors.head() if live else after or 0
    window = log_window(before=before, after=after, log_filter=log_filter, limit=limit)
    if request.htmx and not window.events:
        return HttpResponse(status=204)
    newest = window.events[0].position if window.events else 0
    context |= {
        # The log is never unmasked: an event's own page is the place for that, one event at a time.
        "rows": event_rows(masking.mask_events(window.events)),
        "window": window,
        "live": live,
        "tail_after": max(tail_start, newest),
    }
    return render_page(request, "streams/event_log.html", "streams/partials/log_tail.html", context)


@dataclass(frozen=True)
class LogWindow:
    """A page of the log, newest first, with the cursors of the pages either side (None: nothing there)."""

    events: list[Event]
    newer_after: int | None
    older_before: int | None


def log_window(
    *, before: int | None, after: int | None, log_filter: selectors.LogFilter, limit: int
) -> LogWindow:
    if after is not None:
        events = selectors.read_all(after_position=after, log_filter=log_filter, limit=limit + 1)
        newer = events[limit - 1].position if len(events) > limit else None
        events = events[:limit][::-1]
        older = events[-1].position if events else after + 1
        return LogWindow(events=events, newer_after=newer, older_before=older if after > 0 else None)
    events = selectors.read_all_backward(before_position=before, log_filter=log_filter, limit=limit + 1)
    older = events[limit - 1].position if len(events) > limit else None
    events = events[:limit]
    newer = None
    if before is not None:
        newer = events[0].position if events else before - 1
    return LogWindow(events=events, newer_after=newer, older_before=older)


def log_context(request: HttpRequest, errors: dict[str, list[str]]) -> dict[str, Any]:
    params = request.GET
    form = {name: ", ".join(value for value in params.getlist(name) if value) for name in LOG_PARAMS}
    form["data"] = [term for term in params.getlist("data") if term] + [
        f"{key.removeprefix('data.')}={value}" for key, value in params.items() if key.startswith("data.")
    ]
    filtered = any(key in LOG_PARAMS or key.startswith("data") for key in params)
    return {"section": "events", "form": form, "errors": errors, "rows": [], "filtered": filtered}


def canonical_log_query(params: QueryDict) -> QueryDict | None:
    """The filter form sends every field, blank or not, and data conditions as `data=<field>=<value>`;
    the log's URLs leave blanks out and use the API's names (`data.<field>=<value>`). None when the
    query already is canonical."""
    if "data" not in params and all("" not in values for _, values in params.lists()):
        return None
    canonical = QueryDict(mutable=True)
    for key, values in params.lists():
        kept = [value for value in values if value != ""]
        if key != "data" and kept:
            canonical.setlist(key, kept)
    for term in params.getlist("data"):
        if not term.strip():
            continue
        field, equals, value = term.strip().partition("=")
        field = field.strip().removeprefix("data.")
        if not equals or not field:
            raise QueryErrors({"data": [f"{term!r}: write <field>=<value>, e.g. resource=issueABC"]})
        canonical.appendlist(f"data.{field}", value.strip())
    return canonical
