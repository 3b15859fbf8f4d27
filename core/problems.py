"""Errors as RFC 9457 problem details (`application/problem+json`), the same shape everywhere:
type, title, status, detail, and `errors` per field where input was at fault."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "urn:replaydesk:problem:"


class Problem(exceptions.APIException):
    """An error with a problem type of our own and optional extra members (e.g. current_version)."""

    def __init__(
        self,
        *,
        status_code: int,
        problem_type: str,
        title: str,
        detail: str,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        self.status_code = status_code
        self.problem_type = problem_type
        self.title = title
        self.errors = errors
        self.extra = extra
        self.headers = headers or {}
        super().__init__(detail)


def too_large_detail(size: int | None, limit: int) -> str:
    sent = f"the request body is {size} bytes; " if size is not None else ""
    return f"{sent}this server accepts at most {limit} bytes (REPLAYDESK_MAX_BODY_BYTES); send less at once"


def not_found(thing: str, detail: str) -> Problem:
    """A 404 of type `<thing>-not-found`: not_found("parked event", "…") is "Parked event not found"."""
    return Problem(
        status_code=404,
        problem_type=f"{thing.replace(' ', '-')}-not-found" if thing else "not-found",
        title=f"{thing.capitalize()} not found" if thing else "Not found",
        detail=detail,
    )


def invalid_input(errors: dict[str, list[str]], detail: str | None = None) -> Problem:
    return Problem(
        status_code=400,
        problem_type="invalid-input",
        title="Invalid input",
        detail=detail or _summary(errors),
        errors=errors,
    )


def unprocessable(errors: dict[str, list[str]], detail: str | None = None) -> Problem:
    """422: every value has the form the schema states, but breaks a rule about other fields or stored
    data (two fields that exclude each other, a name nothing has)."""
    return Problem(
        status_code=422,
        problem_type="unprocessable",
        title="Refused by a rule",
        detail=detail or _summary(errors),
        errors=errors,
    )


def problem_body(
    *, status_code: int, problem_type: str, title: str, detail: str, errors=None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + problem_type,
        "title": title,
        "status": status_code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_response(**kwargs: Any) -> JsonResponse:
    """A problem for plain Django views (outside DRF)."""
    return JsonResponse(
        problem_body(**kwargs), status=kwargs["status_code"], content_type=PROBLEM_CONTENT_TYPE
    )


_DRF_TYPES = {
    status.HTTP_401_UNAUTHORIZED: ("not-authenticated", "Not authenticated"),
    status.HTTP_403_FORBIDDEN: ("forbidden", "Forbidden"),
    status.HTTP_404_NOT_FOUND: ("not-found", "Not found"),
    status.HTTP_405_METHOD_NOT_ALLOWED: ("method-not-allowed", "Method not allowed"),
    status.HTTP_406_NOT_ACCEPTABLE: ("not-acceptable", "Not acceptable"),
    status.HTTP_413_REQUEST_ENTITY_TOO_LARGE: ("payload-too-large", "Payload too large"),
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: ("unsupported-media-type", "Unsupported media type"),
    status.HTTP_429_TOO_MANY_REQUESTS: ("throttled", "Too many requests"),
}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        exc = Problem(
            status_code=413,
            problem_type="payload-too-large",
            title="Payload too large",
            detail=too_large_detail(None, limit),
            max_bytes=limit,
        )
    if isinstance(exc, Problem):
        body = problem_body(
            status_code=exc.status_code,
            problem_type=exc.problem_type,
            title=exc.title,
            detail=str(exc.detail),
            errors=exc.errors,
            **exc.extra,
        )
        return _respond(body, exc.status_code, exc.headers)
    if isinstance(exc, exceptions.ParseError):
        body = problem_body(
            status_code=400,
            problem_type="malformed-json",
            title="Malformed JSON",
            detail=f"the request body is not valid JSON: {exc.detail}",
            errors={"body": [str(exc.detail)]},
        )
        return _respond(body, 400)
    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        return _respond(
            problem_body(
                status_code=400,
                problem_type="invalid-input",
                title="Invalid input",
                detail=_summary(errors),
                errors=errors,
            ),
            400,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    problem_type, title = _DRF_TYPES.get(response.status_code, ("error", "Error"))
    detail = response.data.get("detail", title) if isinstance(response.data, dict) else title
    body = problem_body(
        status_code=response.status_code, problem_type=problem_type, title=title, detail=str(detail)
    )
    headers = {k: v for k, v in response.items() if k in ("WWW-Authenticate", "Allow", "Retry-After")}
    return _respond(body, response.status_code, headers)


def _respond(body: dict, status_code: int, headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=status_code, headers=headers, content_type=PROBLEM_CONTENT_TYPE)
    return response


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error details as {"field.sub[0]": ["message"]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            name = (
                "body"
                if key == "non_field_errors" and not prefix
                else (f"{prefix}.{key}" if prefix else str(key))
            )
            if key == "non_field_errors" and prefix:
                name = prefix
            for field_name, messages in _flatten(value, name).items():
                flat.setdefault(field_name, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {prefix or "body": [str(item) for item in detail]}
        flat = {}
        for index, value in enumerate(detail):
            for field_name, messages in _flatten(value, f"{prefix}[{index}]").items():
                flat.setdefault(field_name, []).extend(messages)
        return flat
    return {prefix or "body": [str(detail)]}


def _summary(errors: dict[str, list[str]]) -> str:
    name, messages = next(iter(errors.items()))
    more = len(errors) - 1
    return f"{name}: {messages[0]}" + (f" (and {more} more)" if more else "")
