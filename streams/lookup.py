"""The look-up box of the top bar: one value, and the page that shows it.

A stream of that exact name → its page; an event id → the event; the correlation id of events → the
log of those events; anything else (an entity id such as `user-123` or `123`, an actor, a value in the
events' data) → the audit search, which finds it there or says that nothing matches. It only redirects:
each page it leads to checks its reader's role as it always does, and every role may read these.
"""

from __future__ import annotations

import uuid

from django.db.models.fields.json import KT
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_safe

from core.pages import role_required
from streams.models import Event, Stream

MAX_CHARS = 500


@require_safe
@role_required
def lookup(request: HttpRequest) -> HttpResponse:
    value = request.GET.get("q", "").strip()[:MAX_CHARS]
    return redirect(destination(value))


def destination(value: str) -> str:
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
        # As the log filters it (streams.selectors), which its index on metadata.correlation_id answers.
        correlated = Event.objects.annotate(correlation=KT("metadata__correlation_id"))
        if correlated.filter(correlation=str(as_uuid)).exists():
            return f"{reverse('streams:log')}?{urlencode({'correlation_id': str(as_uuid)})}"
    return f"{reverse('streams:audit')}?{urlencode({'q': _quoted(value)})}"


def _quoted(value: str) -> str:
    """The audit search splits its query on spaces: a value that has some is one quoted term."""
    if any(ch.isspace() for ch in value) and '"' not in value:
        return f'"{value}"'
    return value
