"""What the client raises. The server answers every refusal as problem+json (type, title, status, detail,
and `errors` per field); each status an application handles differently has a class of its own."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx


class ReplaydeskError(Exception):
    """Anything this package raises: catch this one to catch them all."""


class ApiError(ReplaydeskError):
    """The server refused the request. `problem` is its whole problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]):
        self.status = status
        self.problem = problem
        self.type: str = problem.get("type", "")
        self.title: str = problem.get("title", "")
        self.detail: str = problem.get("detail", "")
        self.errors: dict[str, list[str]] = problem.get("errors") or {}
        super().__init__(f"{status} {self.title}: {self.detail}" if self.title else f"{status} {self.detail}")


class InvalidInput(ApiError):
    """400: the request is not of the form the API states; `errors` says which field and why. Nothing was
    written. Sending it again gets the same answer."""


class Unauthorized(ApiError):
    """401: the token is missing, wrong, expired or revoked."""


class Forbidden(ApiError):
    """403: the token's user may not do this (or the stream is the console's own audit trail)."""


class NotFound(ApiError):
    """404: no stream, event or consumer has that name."""


class Conflict(ApiError):
    """409: the request cannot be done in the state things are in (a paused consumer paused again)."""


class WrongExpectedVersion(Conflict):
    """409: the stream is not at the version the append expected. Read it again, decide again, and append
    with `current_version` as the expected version."""

    def __init__(self, status: int, problem: dict[str, Any]):
        super().__init__(status, problem)
        self.current_version: int = problem["current_version"]


class LeaseLost(Conflict):
    """409: the subscription's lease expired, or another reader holds the partition now; nothing was
    changed. Fetch again: what the lease delivered and did not acknowledge goes to the next fetch (this
    reader's or another's), so delivery is at least once."""


class Unprocessable(ApiError):
    """422: of the right form, but against a rule the server checks: event ids some of which were
    recorded with other events, a position no event has, an ack beyond what the lease delivered."""


class RateLimited(ApiError):
    """429: too many requests, or too many reads waiting; come back after `retry_after` seconds."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after: float | None):
        super().__init__(status, problem)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """503: not now (a projection has not applied the position yet, the server is not ready); come back
    after `retry_after` seconds."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after: float | None):
        super().__init__(status, problem)
        self.retry_after = retry_after


class ServerError(ApiError):
    """Another 5xx: the server or a proxy in front of it failed."""


class Unreachable(ReplaydeskError):
    """No answer from the server (refused connection, timeout, dropped connection) after the retries."""


class WaitTimedOut(ReplaydeskError):
    """wait_for ran out of time before the consumer's checkpoint reached the position. `checkpoint` and
    `health` are what the server said last: a `paused`, `failing` or `stalled` consumer will not get there
    by waiting."""

    def __init__(self, consumer: str, position: int, checkpoint: int, health: str):
        self.consumer = consumer
        self.position = position
        self.checkpoint = checkpoint
        self.health = health
        super().__init__(
            f"consumer {consumer!r} is at position {checkpoint} ({health}), not yet at {position}"
        )


WRONG_EXPECTED_VERSION = "urn:replaydesk:problem:wrong-expected-version"
LEASE_CONFLICT = "urn:replaydesk:problem:lease-conflict"

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    422: Unprocessable,
}


def error_for(response: httpx.Response) -> ApiError:
    """The typed error for a response that is not a success."""
    problem = _problem(response)
    status = response.status_code
    if status == 409:
        if problem.get("type") == WRONG_EXPECTED_VERSION and "current_version" in problem:
            return WrongExpectedVersion(status, problem)
        return (LeaseLost if problem.get("type") == LEASE_CONFLICT else Conflict)(status, problem)
    if status == 429:
        return RateLimited(status, problem, retry_after(response))
    if status == 503:
        return Unavailable(status, problem, retry_after(response))
    if status in _BY_STATUS:
        return _BY_STATUS[status](status, problem)
    return ServerError(status, problem) if status >= 500 else ApiError(status, problem)


def _problem(response: httpx.Response) -> dict[str, Any]:
    # A proxy in front of the server may answer with HTML or nothing: keep the start of what it said.
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"status": response.status_code, "title": response.reason_phrase, "detail": response.text[:500]}


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (a number of seconds or an HTTP date), or None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
