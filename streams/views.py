"""Pages of the stream browser: streams, one stream, one event, and the global log with its live tail.

A view returns its partial (templates/streams/partials/…) to htmx and the whole page otherwise.
Every list is keyset paged by name, sequence or position, newest first where it is a list of events.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable
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
from streams.models import Event, Source, Stream
from streams.queries import LOG_PARAMS, parse_log_filter

PAGE_SIZE = 50
PREVIEW_CHARS = 160
# A page of events shows at most this much of each event's data, each value before or after a change
# and each field of a state, and this many changes of an event: a page of big events stays small. The
# event's own page shows it whole.
SHOWN_CHARS = 2000
VALUE_CHARS = 300
CHANGES_SHOWN = 20
STATE_FIELDS_SHOWN = 200


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ShownChange:
    """A timeline.Change as a page of events shows it, its values clipped."""

    field: str
    kind: str
    before_text: str
    after_text: str


@dataclass(frozen=True)
class EventRow:
    # The event without its data and metadata: what a row shows of them is its own, clipped.
    event: Event
    data: str
    preview: str
    # The size of the data as shown whole (pretty JSON, UTF-8), when `data` is only its start.
    clipped_bytes: int | None = None
    # What the event changed in its stream's state (the stream page's timeline), field by field.
    changes: list[ShownChange] | None = None
    more_changes: int = 0

    @property
    def url(self) -> str:
        """The event's own page, where it is shown whole."""
        return reverse("streams:event", args=[self.event.event_id])


def event_row(event: Event, changes: list[timeline.Change] | None = None) -> EventRow:
    """A row of an event already masked as the view requires (streams.masking)."""
    preview = clip(json.dumps(event.data, ensure_ascii=False, separators=(", ", ": ")), PREVIEW_CHARS)
    data = pretty_json(event.data)
    clipped_bytes = len(data.encode()) if len(data) > SHOWN_CHARS else None
    shown = None
    if changes is not None:
        shown = [
            ShownChange(
                field=clip(change.field, VALUE_CHARS),
                kind=change.kind,
                before_text=clip(change.before_text, VALUE_CHARS),
                after_text=clip(change.after_text, VALUE_CHARS),
            )
            for change in changes[:CHANGES_SHOWN]
        ]
    bare = copy.copy(event)
    bare.data = bare.metadata = None
    return EventRow(
        event=bare,
        data=clip(data, SHOWN_CHARS),
        preview=preview,
        clipped_bytes=clipped_bytes,
        changes=shown,
        more_changes=max(0, len(changes) - CHANGES_SHOWN) if changes else 0,
    )


def event_rows(events: Iterable[Event]) -> list[EventRow]:
    """Rows of events already masked as the view requires, made one event at a time."""
    return [event_row(event) for event in events]


@require_safe
@role_required
def stream_list(request: HttpRequest) -> HttpResponse:
    parser = QueryParser(request.GET, ("prefix", "category", "source", "sort", "after", "before", "limit"))
    prefix, category = (parser.raw("prefix") or "").strip(), (parser.raw("category") or "").strip()
    source = (parser.raw("source") or "").strip()
    sort = parser.choice("sort", STREAM_SORTS, "natural")
    after, before = parser.raw("after"), parser.integer("before", minimum=1)
    limit = parser.limit(PAGE_SIZE)
    search = {"prefix": prefix, "category": category, "source": source, "sort": sort}
    context = {"section": "streams", "search": search, "after": after, "before": before}
    # The source filter is offered once there are sources to pick from.
    context["sources"] = list(Source.objects.order_by("name").values_list("name", flat=True))
    context |= {"rows": [], "errors": parser.errors, "sorts": SORT_LABELS}
    if not parser.errors:
        filters = {"prefix": prefix or None, "category": category or None, "source": source or None}
        context["total"] = selectors.count_streams(**filters)
        if sort == "recent":
            context |= _recent_rows(filters, before, limit)
        else:
            streams = selectors.list_streams(**filters, after=after, limit=limit + 1, order=sort)
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


# The sort control's choices: only orders an index serves (streams.selectors.STREAM_ORDERS says why).
SORT_LABELS = {"natural": "Name", "recent": "Last event, newest first"}
STREAM_SORTS = tuple(SORT_LABELS)


def _recent_rows(filters: dict, before: int | None, limit: int) -> dict:
    page, next_before = selectors.recently_active_streams(**filters, before=before, limit=limit)
    last_times = selectors.last_recorded_at(streams=[stream for stream, _ in page])
    rows = [(stream, last_times.get(stream.id)) for stream, _ in page]
    return {"rows": rows, "next_before": next_before, "recent_scan": selectors.RECENT_SCAN}


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
        window = stream_window(stream=stream, before=before, after=after, limit=limit)
        context["rows"] = timeline_rows(stream=stream, window=window, masked=masked)
        if window:
            context["newer_after"] = window[0] if window[0] < stream.version else None
            context["older_before"] = window[-1] if window[-1] > 1 else None
        if as_of:
            context["state"] = state = timeline.state_as_of(stream=stream, masked=masked, **as_of)
            state_fields = timeline.fields(state.state)
            context["state_fields"] = [
                (clip(field, VALUE_CHARS), clip(value, VALUE_CHARS))
                for field, value in state_fields[:STATE_FIELDS_SHOWN]
            ]
            context["more_state_fields"] = max(0, len(state_fields) - STATE_FIELDS_SHOWN)
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


def stream_window(*, stream: Stream, before: int | None, after: int | None, limit: int) -> range:
    """The sequences of a page of the stream, newest first: the newest, those before sequence `before`,
    or the first `limit` after sequence `after` (sequences have no holes, so the page is known without
    reading it)."""
    if after is not None:
        oldest, newest = after + 1, min(after + limit, stream.version)
    else:
        newest = stream.version if before is None else min(before - 1, stream.version)
        oldest = max(1, newest - limit + 1)
    return range(newest, oldest - 1, -1)


def timeline_rows(*, stream: Stream, window: range, masked: bool) -> list[EventRow]:
    """Rows of the page's events, newest first, each with what it changed. What an event changed depends
    on everything before it: the events before the page are folded first (streams.timeline.steps), and
    each event of the page is dropped once its row is made."""
    if not window:
        return []
    rows = [
        event_row(step.event, step.changes)
        for step in timeline.steps(stream=stream, masked=masked, upto=window[0], since=window[-1])
    ]
    return rows[::-1]


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
    if request.htmx and not window.rows:
        return HttpResponse(status=204)
    newest = window.rows[0].event.position if window.rows else 0
    context |= {
        "rows": window.rows,
        "window": window,
        "live": live,
        "tail_after": max(tail_start, newest),
    }
    return render_page(request, "streams/event_log.html", "streams/partials/log_tail.html", context)


@dataclass(frozen=True)
class LogWindow:
    """A page of the log, newest first, with the cursors of the pages either side (None: nothing there)."""

    rows: list[EventRow]
    newer_after: int | None
    older_before: int | None


def log_window(
    *, before: int | None, after: int | None, log_filter: selectors.LogFilter, limit: int
) -> LogWindow:
    """The log is never unmasked: an event's own page is the place for that, one event at a time."""
    if after is not None:
        candidates = selectors.log_events(after_position=after, log_filter=log_filter)[: limit + 1]
        rows = event_rows(masking.mask_each(selectors.iter_within(candidates)))
        newer = rows[limit - 1].event.position if len(rows) > limit else None
        rows = rows[:limit][::-1]
        older = rows[-1].event.position if rows else after + 1
        return LogWindow(rows=rows, newer_after=newer, older_before=older if after > 0 else None)
    candidates = selectors.log_events_backward(before_position=before, log_filter=log_filter)[: limit + 1]
    rows = event_rows(masking.mask_each(selectors.iter_within(candidates)))
    older = rows[limit - 1].event.position if len(rows) > limit else None
    rows = rows[:limit]
    newer = None
    if before is not None:
        newer = rows[0].event.position if rows else before - 1
    return LogWindow(rows=rows, newer_after=newer, older_before=older)


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
