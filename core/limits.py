"""Request limits, each refused with a problem+json that says which limit and when to come back:

- a request body over REPLAYDESK_MAX_BODY_BYTES (Django's DATA_UPLOAD_MAX_MEMORY_SIZE): 413
  `payload-too-large`, before anything reads the body, logs anyone in or writes anything;
- API requests per user (an API token or a browser session; per IP address for the anonymous) in
  three budgets, `append`, `write` and `read` (settings.REPLAYDESK_RATES): 429 `throttled` with
  Retry-After;
- failed logins per username and per IP address: the login page answers 429 (console/login.py).

Counters are fixed windows in the Django cache (Redis): one atomic INCR per request, whatever the rate.
A window lets a client spend its budget at the end of one window and again at the start of the next:
at most twice the rate over a short span, which is what a limit against floods needs.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

_PREFIX = "limits"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_OFF = {"", "0", "off", "none", "unlimited"}


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str | None) -> Rate | None:
        """ "600/min", "10/15min", "5000/h"; "off" (or empty) for no limit."""
        if text is None or text.strip().lower() in _OFF:
            return None
        match = _RATE.match(text.lower())
        if match is None:
            raise ValueError(f"{text!r} is not a rate; write it as 600/min, 10/15min, 5000/h or off")
        count, multiple, unit = match.groups()
        return cls(count=int(count), seconds=int(multiple or 1) * _SECONDS[unit[0]])

    def __str__(self) -> str:
        return f"{self.count} per {_period(self.seconds)}"


def _period(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            many = seconds // size
            return unit if many == 1 else f"{many} {unit}s"
    return "second" if seconds == 1 else f"{seconds} seconds"


def rate(scope: str) -> Rate | None:
    # Read at each request, not at import, so that a changed setting (or a test's) takes effect.
    return Rate.parse(settings.REPLAYDESK_RATES.get(scope))


@dataclass(frozen=True)
class Window:
    used: int
    retry_after: int  # whole seconds until the window ends


def _window_key(name: str, limit: Rate, now: float) -> tuple[str, int]:
    index = int(now // limit.seconds)
    return f"{_PREFIX}:{name}:{limit.seconds}:{index}", math.ceil((index + 1) * limit.seconds - now)


def hit(name: str, limit: Rate) -> Window:
    """Count one more in the current window of `name`."""
    key, retry_after = _window_key(name, limit, time.time())
    # The key outlives its window by a second, so the INCR right after ADD always finds it.
    cache.add(key, 0, timeout=limit.seconds + 1)
    return Window(used=cache.incr(key), retry_after=max(retry_after, 1))


def peek(name: str, limit: Rate) -> Window:
    key, retry_after = _window_key(name, limit, time.time())
    return Window(used=cache.get(key, 0), retry_after=max(retry_after, 1))


def forget(name: str, limit: Rate) -> None:
    cache.delete(_window_key(name, limit, time.time())[0])


def reset() -> None:
    """Forget every window (tests; an operator who lets everyone in again at once)."""
    from core.redis import client

    keys = list(client().scan_iter(match=cache.make_key(f"{_PREFIX}:*").replace("[", "\\[")))
    if keys:
        client().delete(*keys)


def digest(text: str) -> str:
    """Whatever a client sent, as a short key part of fixed characters."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# -- the API --------------------------------------------------------------------------------------------


class ApiRateThrottle(BaseThrottle):
    """DRF's throttle for every API view: one budget per user and scope (append, subscribe, write, read).
    Applied after authentication and permissions, so refused requests spend nothing."""

    def allow_request(self, request, view) -> bool:
        scope = api_scope(request)
        limit = rate(scope)
        if limit is None:
            return True
        user = request.user
        who = (
            f"user:{user.pk}"
            if user and user.is_authenticated
            else f"ip:{digest(self.get_ident(request) or '')}"
        )
        window = hit(f"api:{scope}:{who}", limit)
        if window.used > limit.count:
            # Here, not at the top: core.problems imports DRF's views, which import this class.
            from core.problems import Problem

            raise Problem(
                status_code=429,
                problem_type="throttled",
                title="Too many requests",
                detail=f"at most {limit} {scope} requests for each "
                f"{'user' if user and user.is_authenticated else 'address'}; "
                f"retry in {window.retry_after} s",
                headers={"Retry-After": str(window.retry_after)},
            )
        return True


# A subscription's readers fetch, acknowledge and nack batch after batch: a budget of their own, not the
# one of operators' writes (pausing a consumer, requesting a job).
SUBSCRIBE_URLS = frozenset({"api-subscription-fetch", "api-subscription-ack", "api-subscription-nack"})


def api_scope(request) -> str:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    match = getattr(request, "resolver_match", None)
    if match is not None and match.url_name == "api-stream-events":
        return "append"
    if match is not None and match.url_name in SUBSCRIBE_URLS:
        return "subscribe"
    return "write"


def document_limits(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing: every operation may answer 429, one with a body also 413."""
    schema = {"$ref": "#/components/schemas/ProblemOut"}
    problem = {"content": {"application/problem+json": {"schema": schema}}}
    for item in result.get("paths", {}).values():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("429", {**problem, "description": "Too many requests; see Retry-After."})
            if "requestBody" in operation:
                responses.setdefault("413", {**problem, "description": "The request body is too large."})
    return result


# -- request bodies -------------------------------------------------------------------------------------


class BodySizeLimitMiddleware:
    """413 for a body whose Content-Length is over the limit, before sessions, logins or views run.
    (Without a Content-Length, Django reads no body at all.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        if limit is not None and size > limit:
            from core.problems import problem_response, too_large_detail

            return problem_response(
                status_code=413,
                problem_type="payload-too-large",
                title="Payload too large",
                detail=too_large_detail(size, limit),
                max_bytes=limit,
            )
        return self.get_response(request)
