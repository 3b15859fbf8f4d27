"""Audit look-up pages: the search box with its results and exports, and unmasking personal data.

Unmasking is a POST (CSRF-checked, audited) that opens one view unmasked for a few minutes through a flag
in the session; the pages themselves are GETs that only read that flag (streams.masking).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_POST

from core.pages import role_required
from core.queries import QueryParser
from core.roles import Can
from streams import audit_search, masking, selectors
from streams.models import Event
from streams.views import PAGE_SIZE, event_rows, unmask_form

UNMASKABLE_VIEWS = ("stream", "event", "search")
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _parse_search(
    request: HttpRequest, extra: tuple[str, ...]
) -> tuple[QueryParser, audit_search.AuditQuery]:
    parser = QueryParser(request.GET, (*audit_search.SEARCH_PARAMS, *extra))
    return parser, audit_search.parse_search(parser, masked=masking.sees_masked(request.user))


@require_GET
@role_required
def search(request: HttpRequest) -> HttpResponse:
    parser, query = _parse_search(request, ("before", "limit"))
    before, limit = parser.integer("before", minimum=1), parser.limit(PAGE_SIZE)
    params = audit_search.search_params(request.GET)
    context: dict[str, Any] = {"section": "audit", "form": params, "errors": parser.errors, "query": query}
    context |= {"streams": [], "rows": [], "searched": not query.is_empty, "paged": before is not None}
    if not parser.errors and not query.is_empty:
        key = masking.view_key("search", query.key)
        masked = masking.must_mask(request, key)
        with audit_search.without_jit():
            candidates = audit_search.search_candidates(query, before=before, limit=limit + 1)
            rows = event_rows(masking.mask_each(selectors.iter_within(candidates), masked=masked))
            context["streams"] = audit_search.matching_streams(query) if before is None else []
        context["rows"] = rows[:limit]
        context["older_before"] = rows[limit - 1].event.position if len(rows) > limit else None
        context["unmask"] = unmask_form(request, "search", query.key, masked)
        context["export_query"] = urlencode(params)
    return render(request, "streams/audit.html", context, status=400 if parser.errors else 200)


@require_GET
@role_required
def export(request: HttpRequest, fmt: str) -> HttpResponse:
    parser, query = _parse_search(request, ())
    if query.is_empty and not parser.errors:
        parser.error("q", "say what to export: a stream, an id, actor:NAME, type:TYPE or field=value")
    if parser.errors:
        lines = [f"{name}: {message}" for name, messages in parser.errors.items() for message in messages]
        return HttpResponseBadRequest("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")
    key = masking.view_key("search", query.key)
    masked = masking.must_mask(request, key)
    if not masked:
        # The export is a disclosure of its own, even when the page was unmasked a minute ago.
        masking.record_unmasked(request=request, view=f"search-export.{fmt}", target=query.key)
    rows = audit_search.Export(query)
    body = _csv(rows, masked) if fmt == "csv" else _json(rows, masked, query)
    response = StreamingHttpResponse(body, content_type="text/csv" if fmt == "csv" else "application/json")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


EXPORT_FIELDS = (
    "position",
    "recorded_at",
    "stream",
    "sequence",
    "type",
    "actor",
    "appended_by",
    "appended_via",
    "id",
    "data",
    "metadata",
)


def _record(event: Event) -> dict[str, Any]:
    return {
        "position": event.position,
        "recorded_at": event.recorded_at.isoformat(),
        "stream": event.stream.name,
        "sequence": event.sequence,
        "type": event.type,
        "actor": event.actor,
        "appended_by": event.appended_by,
        "appended_via": event.appended_via,
        "id": str(event.event_id),
        "data": event.data,
        "metadata": event.metadata,
    }


class _Line:
    """csv.writer's file: hands back what was written, so that each row streams as it is made."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    # A spreadsheet runs a cell that starts like a formula; a quote in front keeps it text.
    if isinstance(value, str) and value.startswith(CSV_FORMULA_START):
        value = "'" + value
    return value


def _csv(rows: audit_search.Export, masked: bool) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_FIELDS)
    for event in rows:
        record = _record(masking.mask_event(event) if masked else event)
        yield writer.writerow([_cell(record[name]) for name in EXPORT_FIELDS])
    if rows.truncated:
        yield writer.writerow([f"# truncated: the first {rows.limit} events; narrow the search for the rest"])


def _json(rows: audit_search.Export, masked: bool, query: audit_search.AuditQuery) -> Iterator[str]:
    yield '{"query": ' + json.dumps(query.key) + ', "masked": ' + json.dumps(masked) + ', "results": ['
    for index, event in enumerate(rows):
        record = _record(masking.mask_event(event) if masked else event)
        yield ("," if index else "") + "\n" + json.dumps(record, cls=DjangoJSONEncoder, ensure_ascii=False)
    yield '\n], "truncated": ' + json.dumps(rows.truncated) + "}\n"


@require_POST
@role_required(can=Can.UNMASK)
def unmask(request: HttpRequest) -> HttpResponse:
    view, target = request.POST.get("view", ""), request.POST.get("target", "")
    detail = _unmask_target(view, target)
    if detail is None:
        return HttpResponseBadRequest(
            f"nothing to unmask: view must be one of {', '.join(UNMASKABLE_VIEWS)} with an existing target\n",
            content_type="text/plain; charset=utf-8",
        )
    masking.unmask(request=request, view=view, target=target, detail=detail)
    return redirect(_next(request, view, target))


@require_POST
@role_required
def mask_again(request: HttpRequest) -> HttpResponse:
    view, target = request.POST.get("view", ""), request.POST.get("target", "")
    masking.mask_again(request=request, view=view, target=target)
    return redirect(_next(request, view, target))


def _unmask_target(view: str, target: str) -> dict[str, Any] | None:
    """What the audit record says was shown, or None when there is no such view."""
    if view == "stream":
        stream = selectors.get_stream(name=target)
        return {"stream": stream.name, "version": stream.version} if stream else None
    if view == "event":
        try:
            event = selectors.get_event(event_id=uuid.UUID(target))
        except ValueError:
            return None
        return {"stream": event.stream.name, "sequence": event.sequence} if event else None
    if view == "search" and target:
        return {"query": target}
    return None


def _next(request: HttpRequest, view: str, target: str) -> str:
    wanted = request.POST.get("next", "")
    if wanted and url_has_allowed_host_and_scheme(wanted, {request.get_host()}, request.is_secure()):
        return wanted
    try:
        if view == "stream":
            return reverse("streams:detail", args=[target])
        if view == "event":
            return reverse("streams:event", args=[target])
    except NoReverseMatch:
        pass
    return f"{reverse('streams:audit')}?{target}" if view == "search" else reverse("streams:audit")
