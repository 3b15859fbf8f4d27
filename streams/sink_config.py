"""Sinks' configuration: creating and changing a sink, each setting checked before anything is written,
and each change in the audit trail (the secret never). streams/sinks.py delivers.

A URL must name a destination a sink may reach (streams/sink_destinations.py: no loopback, private,
link-local or metadata address unless REPLAYDESK_SINK_ALLOW admits it, no user name or password).
Sinks saved before that rule may still hold a password in their URL: it is masked wherever it is shown,
and deliveries to it are refused until the URL is changed.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from core.audit import AuditType
from streams import audit, consumers, selectors, sink_destinations
from streams.consumers import ConsumerError
from streams.models import Consumer, Sink
from streams.validation import TYPE_RE

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
CATEGORY_RE = re.compile(r"^[A-Za-z0-9_.:@]{1,200}$")
MAX_RATE = 10_000.0
MAX_TIMEOUT_SECONDS = 60.0


class SinkConfigError(ConsumerError):
    """A sink configuration refused before anything was written; `errors` maps a field to what is wrong."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{name}: {messages[0]}" for name, messages in errors.items()))


_SETTINGS = (
    "url",
    "categories",
    "types",
    "rate_per_second",
    "batch_size",
    "timeout_seconds",
    "max_attempts",
    "breaker_threshold",
    "breaker_cooldown_seconds",
)


def create_sink(
    *,
    name: str,
    url: str,
    secret: str,
    rate_per_second: float,
    actor: str,
    categories: list[str] | tuple[str, ...] = (),
    types: list[str] | tuple[str, ...] = (),
    batch_size: int = 100,
    timeout_seconds: float = 5.0,
    max_attempts: int = 8,
    breaker_threshold: int = 5,
    breaker_cooldown_seconds: float = 30.0,
    from_head: bool = False,
    request: HttpRequest | None = None,
) -> Sink:
    """A new sink and its consumer. It starts at the beginning of the log, or at the head with
    `from_head`. Raises SinkConfigError, writing nothing, when any setting is wrong."""
    settings = {
        "url": url,
        "secret": secret,
        "categories": list(categories),
        "types": list(types),
        "rate_per_second": rate_per_second,
        "batch_size": batch_size,
        "timeout_seconds": timeout_seconds,
        "max_attempts": max_attempts,
        "breaker_threshold": breaker_threshold,
        "breaker_cooldown_seconds": breaker_cooldown_seconds,
    }
    errors = _check(settings)
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        errors.setdefault("name", []).append(
            "a sink name is 1–40 lowercase letters, digits and _, starting with a letter (e.g. crm_hook)"
        )
    elif Consumer.objects.filter(name=name).exists():
        errors.setdefault("name", []).append(f"a consumer named {name!r} exists already")
    if errors:
        raise SinkConfigError(errors)
    with transaction.atomic():
        consumer = Consumer.objects.create(
            name=name, kind=Consumer.Kind.SINK, position=selectors.head() if from_head else 0
        )
        sink = Sink.objects.create(consumer=consumer, **settings)
        audit.record(
            subject=f"consumer.{name}",
            type=AuditType.SINK_CREATED,
            actor=actor,
            data={"consumer": name, "position": consumer.position, **_public(settings)},
            request=request,
        )
        transaction.on_commit(lambda: consumers._wake(name))
    return sink


def update_sink(
    *,
    name: str,
    actor: str,
    url: str | None = None,
    secret: str | None = None,
    categories: list[str] | tuple[str, ...] | None = None,
    types: list[str] | tuple[str, ...] | None = None,
    rate_per_second: float | None = None,
    batch_size: int | None = None,
    timeout_seconds: float | None = None,
    max_attempts: int | None = None,
    breaker_threshold: int | None = None,
    breaker_cooldown_seconds: float | None = None,
    request: HttpRequest | None = None,
) -> Sink:
    """Change some settings (None = unchanged). The checkpoint stays: a new filter applies to events
    after it. Raises SinkConfigError, changing nothing, when any setting is wrong."""
    given = {
        "url": url,
        "secret": secret,
        "categories": None if categories is None else list(categories),
        "types": None if types is None else list(types),
        "rate_per_second": rate_per_second,
        "batch_size": batch_size,
        "timeout_seconds": timeout_seconds,
        "max_attempts": max_attempts,
        "breaker_threshold": breaker_threshold,
        "breaker_cooldown_seconds": breaker_cooldown_seconds,
    }
    changes = {field: value for field, value in given.items() if value is not None}
    errors = _check(changes)
    if errors:
        raise SinkConfigError(errors)
    with transaction.atomic():
        sink = Sink.objects.select_for_update().filter(consumer__name=name).first()
        if sink is None:
            raise ConsumerError(f"no sink is named {name!r}")
        changed = sorted(field for field, value in changes.items() if getattr(sink, field) != value)
        if not changed:
            return sink
        for field in changed:
            setattr(sink, field, changes[field])
        sink.updated_at = timezone.now()
        sink.save(update_fields=[*changed, "updated_at"])
        audit.record(
            subject=f"consumer.{name}",
            type=AuditType.SINK_UPDATED,
            actor=actor,
            data={
                "consumer": name,
                "changed": changed,
                **_public({f: changes[f] for f in changed if f != "secret"}),
            },
            request=request,
        )
    return sink


def _check(settings: dict[str, Any]) -> dict[str, list[str]]:
    """What is wrong with each given setting; settings absent from the dict are not checked."""
    errors: dict[str, list[str]] = {}

    def bad(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if "url" in settings:
        url = settings["url"]
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            bad("url", "an http:// or https:// URL with a host, e.g. https://hooks.example.com/replaydesk")
        else:
            if len(url) > 2000:
                bad("url", "at most 2000 characters")
            elif refusal := sink_destinations.refusal(url):
                bad("url", refusal)
    if "secret" in settings:
        secret = settings["secret"]
        if not isinstance(secret, str) or not 16 <= len(secret) <= 500:
            bad("secret", "the signing secret is 16–500 characters (e.g. from `openssl rand -hex 32`)")
    for category in settings.get("categories", []):
        if not isinstance(category, str) or not CATEGORY_RE.fullmatch(category):
            bad("categories", f"{category!r} is not a category (the part of a stream name before its '-')")
    for event_type in settings.get("types", []):
        if not isinstance(event_type, str) or not TYPE_RE.fullmatch(event_type):
            bad(
                "types",
                f"{event_type!r} is not an event type (starts with a letter; letters, digits _ . : -)",
            )
    _number(settings, "rate_per_second", 0, MAX_RATE, bad, "events per second: more than 0, at most 10000")
    _number(settings, "timeout_seconds", 0, MAX_TIMEOUT_SECONDS, bad, "seconds: more than 0, at most 60")
    _number(settings, "breaker_cooldown_seconds", 0, 86_400, bad, "seconds: more than 0, at most a day")
    _integer(settings, "batch_size", 1, 1000, bad)
    _integer(settings, "max_attempts", 1, 100, bad)
    _integer(settings, "breaker_threshold", 1, 1000, bad)
    return errors


def _number(settings, field, above, most, bad, message) -> None:
    if field not in settings:
        return
    value = settings[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or not above < value <= most:
        bad(field, message)
    elif not math.isfinite(value):
        bad(field, message)


def _integer(settings, field, least, most, bad) -> None:
    if field not in settings:
        return
    value = settings[field]
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        bad(field, f"a whole number from {least} to {most}")


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings fit for the audit trail: no secret (a URL holds no password: _check refuses one)."""
    return {field: settings[field] for field in _SETTINGS if field in settings}


def public_url(url: str) -> str:
    """The URL with any password in it masked, for display (of a sink saved before they were refused)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
