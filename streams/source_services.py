"""Adding, pausing and resuming sources (audited). A source is checked before it is saved: its options,
that its DSN may be reached (streams/source_connect.py), that its role can read what following reads
and may not write there; a source that fails any check is not saved, and the error says what to fix."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone

from core import principals
from core.audit import AuditType
from streams import audit, source_connect, source_follow, source_kinds
from streams.models import Source, SourceParkedEvent
from streams.source_kinds import SourceError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class InvalidSource(Exception):
    """A source that cannot be added as given; `errors` says what, field by field. Nothing was saved."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {messages[0]}" for field, messages in errors.items()))


def add_source(
    *,
    name: str,
    kind: str,
    actor: str,
    dsn: str = "",
    dsn_env: str = "",
    options: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> Source:
    """Check and save a source, following from the start of the source's order. The DSN is stored
    encrypted (or given as the name of the environment variable that holds it) and never shown back."""
    options = options if options is not None else {}
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        errors["name"] = ["a source name is 1–40 lowercase letters, digits and _, starting with a letter"]
    elif Source.objects.filter(name=name).exists():
        errors["name"] = [f"a source named {name!r} exists already"]
    found = source_kinds.get(kind) if isinstance(kind, str) else None
    if found is None:
        names = ", ".join(each.name for each in source_kinds.kinds())
        errors["kind"] = [f"{kind!r} is not a source kind; use one of {names}"]
    if bool(dsn) == bool(dsn_env):
        errors["dsn"] = ["give the DSN, or the name of the environment variable that holds it (dsn_env)"]
    elif dsn_env and not source_connect.ENV_NAME_RE.fullmatch(dsn_env):
        errors["dsn_env"] = ["must be an environment variable's name: capitals, digits and _"]
    if not isinstance(options, dict):
        errors["options"] = ["must be an object of option names and values"]
    elif found is not None:
        options, problems = found.check_options(options)
        errors.update({f"options.{key}": messages for key, messages in problems.items()})
    if errors:
        raise InvalidSource(errors)
    try:
        given = dsn or source_connect.dsn_of(dsn_encrypted="", dsn_env=dsn_env)
        with source_connect.connect(given) as connection:
            found.check_access(connection, options)
    except SourceError as exc:
        raise InvalidSource({"dsn_env" if dsn_env else "dsn": [str(exc)]}) from None
    with transaction.atomic():
        source = Source.objects.create(
            name=name,
            kind=kind,
            dsn_encrypted=source_connect.encrypt(dsn) if dsn else "",
            dsn_env=dsn_env,
            options=options,
            created_by=actor,
        )
        audit.record(
            subject=f"source.{name}",
            type=AuditType.SOURCE_ADDED,
            actor=actor,
            # Never the DSN: it may hold a password.
            data={"source": name, "kind": kind, "options": options, "dsn_env": dsn_env or None},
            request=request,
        )
        transaction.on_commit(lambda: (_copy_history or _start_following)(name, actor))
    return source


# Who copies a new source's history: by default its live follower. The recovery app hands it to a
# backfill job instead (progress and ETA on a job's page), which starts the follower when it is done.
_copy_history: Callable[[str, str], None] | None = None


def copy_history_with(starter: Callable[[str, str], None]) -> None:
    """`starter(name, actor)` copies a new source's history, after the source is saved."""
    global _copy_history
    _copy_history = starter


def _start_following(name: str, actor: str = "") -> None:
    _start(name)


def set_state(*, name: str, state: str, actor: str, request: HttpRequest | None = None) -> Source:
    """Pause or resume following (audited). Resuming a failed source tries it again."""
    with transaction.atomic():
        source = Source.objects.select_for_update().filter(name=name).first()
        if source is None:
            raise SourceError(f"no source is named {name!r}")
        before = source.state
        source.state = state
        source.save(update_fields=["state"])
        audit.record(
            subject=f"source.{name}",
            type=AuditType.SOURCE_PAUSED if state == Source.State.PAUSED else AuditType.SOURCE_RESUMED,
            actor=actor,
            data={"source": name, "from": before, "to": state},
            request=request,
        )
        if state == Source.State.RUNNING:
            transaction.on_commit(lambda: _start(name))
    return source


def set_write_dsn(
    *, name: str, actor: str, dsn: str = "", dsn_env: str = "", request: HttpRequest | None = None
) -> Source:
    """Give the source the DSN of a role that may write there, for write-backs (or take it away with
    neither). Checked as the DSN is (may it be reached) and for what a write-back writes; stored
    encrypted or as an environment variable's name, never shown back; audited without it."""
    source = Source.objects.filter(name=name).first()
    if source is None:
        raise SourceError(f"no source is named {name!r}")
    if dsn and dsn_env:
        raise InvalidSource({"dsn": ["give the DSN or the name of the variable that holds it, not both"]})
    if dsn_env and not source_connect.ENV_NAME_RE.fullmatch(dsn_env):
        raise InvalidSource({"dsn_env": ["must be an environment variable's name: capitals, digits and _"]})
    if dsn or dsn_env:
        try:
            given = dsn or source_connect.dsn_of(dsn_encrypted="", dsn_env=dsn_env)
            with source_kinds.get(source.kind).writer(given, source.options) as writer:
                writer.check_access()
        except SourceError as exc:
            raise InvalidSource({"dsn_env" if dsn_env else "dsn": [str(exc)]}) from None
    with transaction.atomic():
        source = Source.objects.select_for_update().get(pk=source.pk)
        source.write_dsn_encrypted = source_connect.encrypt(dsn) if dsn else ""
        source.write_dsn_env = dsn_env
        source.save(update_fields=["write_dsn_encrypted", "write_dsn_env"])
        audit.record(
            subject=f"source.{name}",
            type=AuditType.SOURCE_WRITE_DSN_SET,
            actor=actor,
            data={"source": name, "set": bool(dsn or dsn_env), "dsn_env": dsn_env or None},
            request=request,
        )
    return source


def write_dsn_missing(source: Source) -> str:
    """Why a write-back cannot reach the source ("" when it can try)."""
    if source.write_dsn_encrypted or source.write_dsn_env:
        return ""
    return (
        f"{source.name} has no DSN to write back with: give it one of a role that may write there "
        f"(replaydesk source write-dsn {source.name} --dsn …, or PUT /api/v1/sources/{source.name}/write-dsn)"
    )


def write_dsn_of(source: Source) -> str:
    """The DSN a write-back writes with; SourceError when the source has none."""
    if missing := write_dsn_missing(source):
        raise SourceError(missing)
    return source_connect.dsn_of(dsn_encrypted=source.write_dsn_encrypted, dsn_env=source.write_dsn_env)


def _start(name: str) -> None:
    from streams.tasks import enqueue_source

    enqueue_source(name)


def skip_parked(
    *, name: str, parked_id: int, actor: str, request: HttpRequest | None = None
) -> SourceParkedEvent:
    """Leave a parked event out of the log for good (audited)."""
    with transaction.atomic():
        parked = _parked(name, parked_id)
        _resolve(parked, SourceParkedEvent.State.SKIPPED, actor)
        _audit_parked(parked, AuditType.SOURCE_PARKED_SKIPPED, actor, request)
    return parked


def retry_parked(
    *, name: str, parked_id: int, actor: str, request: HttpRequest | None = None
) -> SourceParkedEvent:
    """Read the parked event from the source again and copy it, now that what stopped it is fixed (its
    stream's hole filled by an earlier retry, say). Still in conflict: SourceError says why, and it
    stays parked with that reason."""
    source = Source.objects.filter(name=name).first()
    if source is None:
        raise SourceError(f"no source is named {name!r}")
    kind = source_kinds.get(source.kind)
    with transaction.atomic():
        parked = _parked(name, parked_id)
    dsn = source_connect.dsn_of(dsn_encrypted=source.dsn_encrypted, dsn_env=source.dsn_env)
    with source_connect.connect(dsn) as reader:
        read = kind.read(reader, source.options, after=parked.position - 1, limit=1)
    events = [event for event in read.events if event.position == parked.position]
    if not events:
        raise SourceError(f"the source has no event at position {parked.position} any more; skip it")
    with transaction.atomic(), principals.acting_as(source_follow.appender(name)):
        locked = Source.objects.select_for_update().get(pk=source.pk)
        parked = _parked(name, parked_id)
        copied, _ = source_follow.record(locked, events)
        parked.refresh_from_db()
        if copied:
            _resolve(parked, SourceParkedEvent.State.RETRIED, actor)
            Source.objects.filter(pk=source.pk).update(events_copied=F("events_copied") + copied)
            _audit_parked(parked, AuditType.SOURCE_PARKED_RETRIED, actor, request)
        else:
            # It stays parked, with the reason it has now, one attempt more.
            SourceParkedEvent.objects.filter(pk=parked.pk).update(attempts=F("attempts") + 1)
    if not copied:
        raise SourceError(f"it is still in conflict: {parked.reason}")
    return parked


def _parked(name: str, parked_id: int) -> SourceParkedEvent:
    parked = (
        SourceParkedEvent.objects.select_for_update()
        .filter(source__name=name, pk=parked_id, state=SourceParkedEvent.State.PARKED)
        .first()
    )
    if parked is None:
        raise SourceError(f"source {name} has no parked event {parked_id} waiting for a decision")
    return parked


def _resolve(parked: SourceParkedEvent, state: str, actor: str) -> None:
    parked.state, parked.resolved_at, parked.resolved_by = state, timezone.now(), actor
    parked.save(update_fields=["state", "resolved_at", "resolved_by"])


def _audit_parked(
    parked: SourceParkedEvent, type_: AuditType, actor: str, request: HttpRequest | None
) -> None:
    audit.record(
        subject=f"source.{parked.source.name}",
        type=type_,
        actor=actor,
        data={
            "source": parked.source.name,
            "position": parked.position,
            "stream": parked.stream,
            "sequence": parked.sequence,
            "reason": parked.reason,
        },
        request=request,
    )
