"""One signed POST of events to a webhook sink's endpoint, and what the answer means.

A batch is POSTed as JSON, signed with HMAC-SHA256 of the raw body (SIGNATURE_HEADER). Receivers dedupe
on each event's `id` (the per-event idempotency key); the `Idempotency-Key` header
(`<first id>..<last id>`) names the whole batch. Redirects are not followed: a sink names its final URL.

Each POST goes to an address checked just before it (streams/sink_destinations.py): the URL's host is
resolved, every address checked, and the connection made to the checked one, with the host kept for
the Host header and TLS. A refused destination fails the delivery as an unreachable one does.

What a failure says comes in two parts: `error`, short and the same whatever the receiver answered
(every role reads it), and `detail`, what the receiver or the connection said, for operators.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
from django.utils import timezone

from streams import sink_destinations
from streams.consumer_kinds import Delivery
from streams.models import Event, Sink

# How much of a failing receiver's answer is kept for operators.
DETAIL_CHARS = 300
# A Retry-After further away than this is taken as this: a receiver must not park a sink for days.
MAX_RETRY_AFTER_SECONDS = 3600.0
SIGNATURE_HEADER = "X-Replaydesk-Signature"
TIMESTAMP_HEADER = "X-Replaydesk-Timestamp"
USER_AGENT = "replaydesk-sink/1"


def http_client() -> httpx.Client:
    """The HTTP client deliveries are sent with (one per run, so that connections are reused)."""
    return httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT})


def deliver(client: httpx.Client, sink: Sink, events: list[Event]) -> Delivery:
    """One signed POST of `events` to the sink's endpoint (the live runner's and a resync's)."""
    body = json.dumps(
        {"sink": sink.consumer.name, "events": [event_payload(event) for event in events]},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(sink.secret, body),
        TIMESTAMP_HEADER: str(int(time.time())),
        "Idempotency-Key": f"{events[0].event_id}..{events[-1].event_id}",
    }
    try:
        where = sink_destinations.destination(sink.url)
    except sink_destinations.DestinationRefused as refused:
        return Delivery(ok=False, error=refused.reason, detail=refused.detail)
    headers["Host"] = where.host_header
    extensions = {"sni_hostname": where.sni_hostname} if where.sni_hostname else {}
    try:
        response = client.post(
            where.url,
            content=body,
            headers=headers,
            timeout=httpx.Timeout(sink.timeout_seconds),
            extensions=extensions,
        )
    except httpx.TimeoutException:
        return Delivery(ok=False, error=f"no answer within {sink.timeout_seconds:g} s (timed out)")
    except httpx.ConnectError as exc:
        return Delivery(ok=False, error="could not connect to the receiver", detail=str(exc)[:DETAIL_CHARS])
    except httpx.HTTPError as exc:
        return Delivery(
            ok=False,
            error=f"the exchange with the receiver failed ({exc.__class__.__name__})",
            detail=str(exc)[:DETAIL_CHARS],
        )
    status = response.status_code
    if 200 <= status < 300:
        return Delivery(ok=True)
    said = f"HTTP {status} from the receiver"
    detail = response.text.strip()[:DETAIL_CHARS]
    if 300 <= status < 400:
        return Delivery(
            ok=False,
            error=f"{said}: redirects are not followed; point the sink at the final URL",
            detail=f"Location: {response.headers.get('location', '')}\n{detail}"[:DETAIL_CHARS],
        )
    if status == 429:
        retry_after = _retry_after(response.headers.get("retry-after"))
        return Delivery(ok=False, retry_after=retry_after, error=said, detail=detail)
    if 400 <= status < 500 and status != 408:
        return Delivery(ok=False, refused=True, error=said, detail=detail)
    return Delivery(ok=False, error=said, detail=detail)


def event_payload(event: Event) -> dict[str, Any]:
    return {
        "id": str(event.event_id),
        "stream": event.stream.name,
        "sequence": event.sequence,
        "position": event.position,
        "type": event.type,
        "data": event.data,
        "metadata": event.metadata,
        "actor": event.actor,
        "recorded_at": event.recorded_at.isoformat(),
    }


def signature(secret: str, body: bytes) -> str:
    """The X-Replaydesk-Signature value: receivers compute the same over the raw body and compare."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (it may be a number of seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - timezone.now()).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
