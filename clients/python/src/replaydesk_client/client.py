"""The client: one httpx.Client, the token, and the retry rule.

What is retried: no answer at all (a refused or dropped connection, a timeout), 500, 502 and 504 (with
backoff and full jitter), and 429 and 503 after the Retry-After they carry (503 without one after
backoff). Never a 400, 401, 403, 404, 409 or 422: the same request gets the same refusal. Retrying an
append is safe because every event has its id before the first try: a retry of a batch the server
recorded already gets the original result (`AppendResult.replayed`), and nothing is written twice.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from replaydesk_client._version import __version__
from replaydesk_client.errors import RateLimited, Unavailable, Unreachable, WaitTimedOut, error_for
from replaydesk_client.models import AppendResult, Event, NewEvent

ExpectedVersion = int | Literal["any", "no_stream", "exists"]

# Statuses worth another try; 429 and 503 only when the server says when (or 503 after backoff).
_TRANSIENT = {500, 502, 503, 504}


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

    def _events(self, path: str, params: dict[str, Any]) -> Iterator[Event]:
        # A page holds `limit` events or fewer (pages are bounded in bytes too): follow `next` to the end.
        while True:
            page = self._send("GET", path, params=params).json()
            for item in page["results"]:
                yield Event.from_json(item)
            if page["next"] is None:
                return
            params = {**params, "cursor": page["next"]}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise Unreachable(f"{method} {path}: no answer from the server ({exc!r})") from exc
                wait = self._backoff(attempt)
            else:
                if response.is_success:
                    return response
                error = error_for(response)
                wait = self._wait_before_retry(error, response.status_code, attempt)
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
