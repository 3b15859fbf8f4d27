"""The client: one httpx.Client, the token, and the retry rule.

What is retried: no answer at all (a refused or dropped connection, a timeout), 500, 502 and 504 (with
backoff and full jitter), and 429 and 503 after the Retry-After they carry (503 without one after
backoff). Never a 400, 401, 403, 404, 409 or 422: the same request gets the same refusal. Retrying an
append is safe because every event has its id before the first try: a retry of a batch the server
recorded already gets the original result (`AppendResult.replayed`), and nothing is written twice.

A subscription's fetch is the exception: it is not idempotent (it moves the lease on), so it is tried
again only when the server surely did nothing: no connection was made, or a 429 (see `fetch`).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from replaydesk_client._version import __version__
from replaydesk_client.errors import (
    Conflict,
    NotFound,
    RateLimited,
    Unavailable,
    Unreachable,
    WaitTimedOut,
    error_for,
)
from replaydesk_client.models import Acknowledged, AppendResult, Batch, Event, Nacked, NewEvent
from replaydesk_client.subscriber import Subscriber

ExpectedVersion = int | Literal["any", "no_stream", "exists"]

# Statuses worth another try; 429 and 503 only when the server says when (or 503 after backoff).
_TRANSIENT = {500, 502, 503, 504}
# Failures before the request reached the server: another try of any request is safe.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
SUBSCRIPTION_CONFLICT = "urn:replaydesk:problem:subscription-conflict"


class Client:
    """`Client("https://replaydesk.example.com", token)`; use it as a context manager, or close() it.

    `timeout` is httpx's (seconds, or an httpx.Timeout). `retries` is how many times a request is tried
    again after the first; waits grow from `backoff` seconds and never pass `max_wait`: a Retry-After
    further away than that is raised at once (RateLimited, Unavailable) for the caller to decide.
    `transport` is passed to httpx (a proxy's, or one for tests)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": f"replaydesk-client/{__version__}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def append(
        self,
        stream: str,
        events: Iterable[NewEvent | Mapping[str, Any]],
        *,
        expected_version: ExpectedVersion = "any",
    ) -> AppendResult:
        """Append the events to `stream` atomically, all or none. `expected_version` is the stream's
        version N, "no_stream", "exists" or "any"; a wrong one raises WrongExpectedVersion with the
        stream's `current_version`. Events are NewEvent or dicts of the API's shape (type, data,
        metadata, id)."""
        batch = [_with_id(event) for event in events]
        response = self._send(
            "POST",
            f"/api/v1/streams/{_segment(stream)}/events",
            json={"expected_version": expected_version, "events": batch},
        )
        body = response.json()
        return AppendResult(
            stream=body["stream"],
            version=body["version"],
            first_sequence=body["first_sequence"],
            positions=tuple(body["positions"]),
            event_ids=tuple(uuid.UUID(event["id"]) for event in batch),
            replayed=response.headers.get("Idempotent-Replayed") == "true",
        )

    def read_stream(
        self,
        stream: str,
        *,
        from_sequence: int | None = None,
        direction: Literal["forward", "backward"] = "forward",
        page_size: int = 100,
    ) -> Iterator[Event]:
        """The stream's events from `from_sequence` (inclusive; the first, or the last going backward),
        fetched a page at a time as the iteration goes. An unknown stream raises NotFound when the
        iteration starts."""
        params: dict[str, Any] = {"direction": direction, "limit": page_size}
        if from_sequence is not None:
            params["from_sequence"] = from_sequence
        return self._events(f"/api/v1/streams/{_segment(stream)}/events", params)

    def read_all(
        self,
        *,
        after_position: int = 0,
        type: str | Sequence[str] | None = None,
        category: str | None = None,
        stream: str | None = None,
        actor: str | None = None,
        appended_by: str | None = None,
        correlation_id: uuid.UUID | str | None = None,
        recorded_after: datetime | str | None = None,
        recorded_before: datetime | str | None = None,
        data: Mapping[str, str] | None = None,
        page_size: int = 100,
    ) -> Iterator[Event]:
        """The global log in position order after `after_position`, filtered, a page at a time. To go on
        later from where you stopped, pass the last event's position as `after_position`: no event
        committed later is ever passed over. `data={"resource": "issueABC"}` matches events whose data
        contains that."""
        filters = {
            "type": type if type is None or isinstance(type, str) else ",".join(type),
            "category": category,
            "stream": stream,
            "actor": actor,
            "appended_by": appended_by,
            "correlation_id": correlation_id,
            "recorded_after": recorded_after,
            "recorded_before": recorded_before,
            **{f"data.{name}": value for name, value in (data or {}).items()},
        }
        params: dict[str, Any] = {"after_position": after_position, "limit": page_size}
        for name, value in filters.items():
            if value is not None:
                params[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return self._events("/api/v1/events", params)

    def wait_for(self, consumer: str, position: int, *, timeout: float = 30.0) -> int:
        """Wait until the consumer (a projection or a sink) has processed the log up to `position`, the
        `AppendResult.position` of your append, and return its checkpoint; WaitTimedOut after `timeout`
        seconds. Then a read of that projection sees the append."""
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            status = self.get(f"/api/v1/consumers/{_segment(consumer)}")
            if status["checkpoint"] >= position:
                return status["checkpoint"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimedOut(consumer, position, status["checkpoint"], status["health"])
            time.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET another read of the API (e.g. a projection's, with `min_position`), with the same errors
        and retries; the decoded JSON."""
        return self._send("GET", path, params=params).json()

    # --- subscriptions

    def create_subscription(
        self,
        name: str,
        *,
        categories: Sequence[str] = (),
        types: Sequence[str] = (),
        partitions: int = 1,
        lease_seconds: int = 30,
        max_nacks: int = 5,
        from_head: bool = False,
        exist_ok: bool = False,
    ) -> dict[str, Any]:
        """Create a subscription (the token's user needs the operate permission) and return its status,
        as `subscription()` does. It follows `categories` and `types` (empty: all), from the start of
        the log (or the head, `from_head`); `partitions` is fixed for good. A consumer of that name
        raises Conflict, unless `exist_ok`: then the existing subscription's status, as it is."""
        body = {
            "name": name,
            "categories": list(categories),
            "types": list(types),
            "partitions": partitions,
            "lease_seconds": lease_seconds,
            "max_nacks": max_nacks,
            "from_head": from_head,
        }
        try:
            return self._send("POST", "/api/v1/subscriptions", json=body).json()
        except Conflict as exists:
            if not (exist_ok and exists.type == SUBSCRIPTION_CONFLICT):
                raise
            try:
                return self.subscription(name)
            except NotFound:
                raise exists from None  # the consumer of that name is a projection or a sink

    def subscription(self, name: str) -> dict[str, Any]:
        """The subscription's status (`GET /api/v1/subscriptions/{name}`): its settings, lag and health,
        and `partition_status`, each partition's `checkpoint`, `reader`, `lease_expires_at`, `nacks`…"""
        return self.get(f"/api/v1/subscriptions/{_segment(name)}")

    def delete_subscription(self, name: str) -> None:
        """Forget the subscription, its checkpoints, leases and parked events (operate permission)."""
        self._send("DELETE", f"/api/v1/subscriptions/{_segment(name)}")

    def fetch(
        self, name: str, reader: str, *, max: int = 100, wait: float = 0, lease: uuid.UUID | str | None = None
    ) -> Batch:
        """Up to `max` events of one partition of the subscription under a lease, waiting up to `wait`
        seconds (the server caps it) when there are none. `reader` names the fetching process.

        With `lease` (that of the last batch you received), a reader that holds the partition goes on
        after what the lease delivered, so it may fetch the next batch before acknowledging this one.
        Without it, the partition's unacknowledged events come again from the checkpoint: what a
        restarted process, or one whose last answer was lost, needs. A fetch is not tried again when
        its answer may have been lost (no answer, a 5xx): it raises, and the caller fetches again
        without a lease (`subscribe` does all of this)."""
        base = self._http.timeout
        timeout = httpx.Timeout(
            connect=base.connect,
            read=None if base.read is None else base.read + wait,
            write=base.write,
            pool=base.pool,
        )
        response = self._send(
            "POST",
            f"/api/v1/subscriptions/{_segment(name)}/fetch",
            json={"reader": reader, "max": max, "wait": wait, **({"lease": str(lease)} if lease else {})},
            timeout=timeout,
            idempotent=False,
        )
        return Batch.from_json(response.json())

    def ack(self, name: str, lease: uuid.UUID | str, position: int) -> Acknowledged:
        """Every event of the lease's partition up to `position` is handled: the checkpoint moves there
        and the lease is renewed (an ack at or before the checkpoint only renews it). LeaseLost when the
        lease expired or another reader holds the partition; Unprocessable beyond what it delivered."""
        response = self._send(
            "POST",
            f"/api/v1/subscriptions/{_segment(name)}/ack",
            json={"lease": str(lease), "position": position},
        )
        return Acknowledged.from_json(response.json())

    def nack(self, name: str, lease: uuid.UUID | str, position: int, reason: str) -> Nacked:
        """The event at `position` was not handled, because of `reason`; the partition's events before
        it were. It is delivered again (with what followed it) by the next fetch, and parked at its
        max_nacks-th nack in a row. LeaseLost as for an ack; Unprocessable when the lease did not
        deliver it or it is acknowledged already."""
        response = self._send(
            "POST",
            f"/api/v1/subscriptions/{_segment(name)}/nack",
            json={"lease": str(lease), "position": position, "reason": reason},
        )
        return Nacked.from_json(response.json())

    def subscribe(
        self,
        name: str,
        handler: Callable[[Event], object],
        *,
        reader: str | None = None,
        max: int = 100,
        wait: float = 5.0,
        stop: threading.Event | None = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        """Handle the subscription's events, one `handler(event)` call each, until `stop` is set or the
        process gets SIGINT or SIGTERM (handled so only when called in the main thread); see README.md,
        "Subscriptions", for what it does on each failure. Raises what no waiting cures: NotFound (no
        such subscription), Unauthorized, Forbidden, InvalidInput (a bad `reader`, `max` or `wait`)."""
        Subscriber(
            self,
            name,
            handler,
            reader=reader,
            max=max,
            wait=wait,
            stop=stop,
            backoff=backoff,
            max_backoff=max_backoff,
        ).run()

    def _events(self, path: str, params: dict[str, Any]) -> Iterator[Event]:
        # A page holds `limit` events or fewer (pages are bounded in bytes too): follow `next` to the end.
        while True:
            page = self._send("GET", path, params=params).json()
            for item in page["results"]:
                yield Event.from_json(item)
            if page["next"] is None:
                return
            params = {**params, "cursor": page["next"]}

    def _send(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        """The request, tried again by the retry rule. One that is not `idempotent` is tried again only
        when it surely did nothing: no connection was made, or a 429."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries or not (idempotent or isinstance(exc, _NOT_SENT)):
                    raise Unreachable(f"{method} {path}: no answer from the server ({exc!r})") from exc
                wait = self._backoff(attempt)
            else:
                if response.is_success:
                    return response
                error = error_for(response)
                wait = self._wait_before_retry(error, response.status_code, attempt)
                if not idempotent and not isinstance(error, RateLimited):
                    wait = None
                if attempt == self.retries or wait is None:
                    raise error
            time.sleep(wait)
            attempt += 1

    def _wait_before_retry(self, error: Exception, status: int, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None when this answer is not worth another try."""
        if isinstance(error, RateLimited | Unavailable) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_wait else None
        return self._backoff(attempt) if status in _TRANSIENT else None

    def _backoff(self, attempt: int) -> float:
        # Full jitter: many clients retrying at once spread out instead of arriving together.
        return random.uniform(0, min(self.max_wait, self.backoff * 2**attempt))


def _with_id(event: NewEvent | Mapping[str, Any]) -> dict[str, Any]:
    """The event as the API takes it, with an id of its own if it had none: decided once, before the first
    try, so that every retry sends the same ids."""
    if isinstance(event, NewEvent):
        event = {"id": event.id, "type": event.type, "data": event.data, "metadata": event.metadata}
    body = dict(event)
    body["id"] = str(body.get("id") or uuid.uuid4())
    return body


def _segment(name: str) -> str:
    return quote(name, safe="")
