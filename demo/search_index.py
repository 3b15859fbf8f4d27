"""The demo's downstream search index: it receives the `search_index` sink's webhooks (HMAC-checked,
deduplicated by event id, as any receiver of Replaydesk sinks should) and answers searches."""

from __future__ import annotations

import hmac
import json
import secrets

from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from core.pages import role_required
from demo.models import SearchDelivery, SearchDocument
from streams.models import Sink
from streams.sink_config import create_sink, update_sink
from streams.sinks import SIGNATURE_HEADER, signature

SINK_NAME = "search_index"
PATH = "/demo/search-index/events"
TYPES = ("UserCreated", "UserNameSet", "UserEmailSet")


def ensure_sink(*, base_url: str, actor: str = "replaydesk up") -> Sink:
    """The demo's sink to its search index at base_url (created once; its URL follows the port)."""
    url = base_url.rstrip("/") + PATH
    sink = Sink.objects.filter(consumer__name=SINK_NAME).first()
    if sink is None:
        return create_sink(
            name=SINK_NAME,
            url=url,
            secret=secrets.token_urlsafe(32),
            rate_per_second=2000,
            batch_size=500,
            categories=["user"],
            types=list(TYPES),
            actor=actor,
        )
    if sink.url != url:
        update_sink(name=SINK_NAME, url=url, actor=actor)
    return sink


@csrf_exempt  # a webhook: authenticated by its HMAC signature, not a browser session
@require_POST
def receive(request: HttpRequest) -> JsonResponse:
    sink = Sink.objects.filter(consumer__name=SINK_NAME).first()
    expected = signature(sink.secret, request.body) if sink else ""
    if not sink or not hmac.compare_digest(expected, request.headers.get(SIGNATURE_HEADER, "")):
        return JsonResponse({"error": "bad signature"}, status=401)
    try:
        events = json.loads(request.body)["events"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected {"events": [...]}'}, status=400)
    accepted = duplicates = 0
    with transaction.atomic():
        seen = set(
            str(i)
            for i in SearchDelivery.objects.filter(event_id__in=[e["id"] for e in events]).values_list(
                "event_id", flat=True
            )
        )
        for event in events:
            if event["id"] in seen:
                duplicates += 1
                continue
            _apply(event)
            seen.add(event["id"])
            accepted += 1
        SearchDelivery.objects.bulk_create(
            [SearchDelivery(event_id=e["id"]) for e in events], ignore_conflicts=True
        )
    return JsonResponse({"accepted": accepted, "duplicates": duplicates})


def _apply(event: dict) -> None:
    data = event["data"]
    if event["type"] == "UserCreated":
        SearchDocument.objects.update_or_create(
            user_id=data["user_id"],
            defaults={"username": data["username"], "name": data["name"], "email": data["email"]},
        )
    elif event["type"] == "UserNameSet":
        SearchDocument.objects.filter(user_id=data["user_id"]).update(name=data["name"])
    elif event["type"] == "UserEmailSet":
        SearchDocument.objects.filter(user_id=data["user_id"]).update(email=data["email"])


def search(*, query: str, limit: int = 50) -> list[SearchDocument]:
    matches = Q(name__icontains=query) | Q(email__icontains=query) | Q(username__icontains=query)
    return list(SearchDocument.objects.filter(matches).order_by("username")[:limit])


@require_safe
@role_required
def search_page(request: HttpRequest):
    query = request.GET.get("q", "").strip()
    results = search(query=query) if query else []
    total = SearchDocument.objects.count()
    return render(
        request, "demo/search.html", {"query": query, "results": results, "total": total, "section": "search"}
    )
