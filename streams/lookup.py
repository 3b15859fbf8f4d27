"""The look-up box of the top bar: one value, and the page that shows it.

A stream of that exact name → its page; an event id → the event; the correlation id of events → the
log of those events; anything the audit search finds (an entity id such as `user-123` or `123`, an
actor, a value in the events' data) → the audit search for it; nothing at all → a page that says so.
Every role may read the pages it leads to, and it searches the audit trail as that reader's audit page
would (personal fields not searched for a role that sees them masked), so that "nothing found" says no
more than the audit search itself would.
"""

from __future__ import annotations

import uuid

from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_safe

from core.pages import role_required
from core.queries import QueryParser
from streams import audit_search, masking
from streams.models import Event, Stream

MAX_CHARS = 500


@require_safe
@role_required
def lookup(request: HttpRequest) -> HttpResponse:
    value = request.GET.get("q", "").strip()[:MAX_CHARS]
    found = destination(value, masked=masking.sees_masked(request.user))
    if found is None:
        context = {"value": value, "audit_url": audit_url(value)}
        return render(request, "streams/lookup_not_found.html", context, status=404)
    return redirect(found)


def destination(value: str, *, masked: bool) -> str | None:
    """Where the value leads, or None when nothing in the store answers to it."""
    if not value:
        return reverse("streams:audit")
    if Stream.objects.filter(name=value).exists():
        return reverse("streams:detail", args=[value])
    try:
        as_uuid = uuid.UUID(value)
    except ValueError:
        as_uuid = None
    if as_uuid is not None:
        if Event.objects.filter(event_id=as_uuid).exists():
            return reverse("streams:event", args=[as_uuid])
        # As the log filters it (streams.selectors), which its index on metadata.correlation_id answers;
        # not for a reader who sees it masked, whom the log's filter refuses too.
        correlated = Event.objects.annotate(correlation=KT("metadata__correlation_id"))
        personal = masked and masking.personal("metadata", "correlation_id")
        if not personal and correlated.filter(correlation=str(as_uuid)).exists():
            return f"{reverse('streams:log')}?{urlencode({'correlation_id': str(as_uuid)})}"
    return audit_url(value) if in_audit_trail(value, masked=masked) else None


def in_audit_trail(value: str, *, masked: bool) -> bool:
    """Whether the audit search for the value lists a stream or an event. A query it refuses counts as
    found: its page says what is wrong with it, better than "nothing found" would."""
    parser = QueryParser({"q": _quoted(value)}, audit_search.SEARCH_PARAMS)
    query = audit_search.parse_search(parser, masked=masked)
    if parser.errors or query.is_empty:
        return True
    if audit_search.matching_streams(query, limit=1):
        return True
    with audit_search.without_jit():
        return audit_search.search_candidates(query, limit=1).exists()


def audit_url(value: str) -> str:
    return f"{reverse('streams:audit')}?{urlencode({'q': _quoted(value)})}"


def _quoted(value: str) -> str:
    """The audit search splits its query on spaces: a value that has some is one quoted term."""
    if any(ch.isspace() for ch in value) and '"' not in value:
        return f'"{value}"'
    return value
