"""Following a source into the log, exactly once.

One follower per source at a time (a session advisory lock). Each step reads a batch of the source's
events after the copied position, keeps those the source's order has made final (streams/source_horizon.py),
and in one transaction of the log records them, parks those that cannot be copied as they are, and
moves the source's position: a follower killed anywhere copies nothing twice and skips nothing, because
the position moves only with what it covers.

What is copied keeps the source's event id (or one derived from its stream and sequence), stream,
sequence (a stream's first event is 1), type, data, metadata and time. Its stream is marked as the
source's (only this follower appends to it), its appender is `system:source.<name>` via `source`, and
its metadata says where it came from (`replaydesk_source`: the source's name and position).

What is parked, with the reason, and never copied silently: an event whose state could not be read, one
whose id is in the log already with other content, one whose stream is Replaydesk's own or another
source's, one that leaves a hole in its stream (or repeats a sequence the log has). Every event of a
stream after a parked one parks as well, as a hole: the stream's order is never broken.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core import locks, principals
from streams import services, source_connect, source_horizon, source_kinds
from streams.models import Source, SourceParkedEvent
from streams.source_kinds import SourceError, SourceEvent
from streams.validation import InvalidAppend, category_of, json_text, parse_append, plainly_valid

METADATA_KEY = "replaydesk_source"
VIA = "source"
# While a follower has nothing new, it looks again this often.
POLL_SECONDS = 0.1
# A source's rate is counted over windows of about this long.
RATE_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class FollowResult:
    copied: int
    parked: int
    # Nothing more the source has made final is left to copy.
    caught_up: bool
    # Another follower holds the source, or it is paused or failed.
    idle: bool
    error: str = ""


def appender(name: str) -> principals.Principal:
    return principals.Principal(f"system:source.{name}", VIA)


def follow(*, name: str, budget_seconds: float = 5.0, until_caught_up: bool = False) -> FollowResult:
    """Copy the source's final events for `budget_seconds`, looking again every POLL_SECONDS when it has
    nothing new (or stopping then, with `until_caught_up`). A SourceError (unreachable, its table gone,
    its access taken) is recorded as the source's last error, and the next run tries again."""
    with locks.held(locks.lock_key("source", name)) as got:
        source = Source.objects.filter(name=name).first()
        if not got or source is None or source.state != Source.State.RUNNING:
            return FollowResult(0, 0, caught_up=True, idle=True)
        try:
            return _follow(source, budget_seconds, until_caught_up)
        except (SourceError, psycopg.Error) as exc:
            message = str(exc) if isinstance(exc, SourceError) else f"reading the source failed: {exc}"
            message = message.strip().splitlines()[0][:2000]
            Source.objects.filter(pk=source.pk).update(last_error=message, last_error_at=timezone.now())
            return FollowResult(0, 0, caught_up=False, idle=False, error=message)


def _follow(source: Source, budget_seconds: float, until_caught_up: bool) -> FollowResult:
    kind = source_kinds.get(source.kind)
    if kind is None:
        raise SourceError(f"no source kind is named {source.kind!r} in this code")
    deadline = time.monotonic() + budget_seconds
    copied = parked = 0
    dsn = source_connect.dsn_of(dsn_encrypted=source.dsn_encrypted, dsn_env=source.dsn_env)
    with source_connect.connect(dsn) as reader, principals.acting_as(appender(source.name)):
        while True:
            step = copy_step(source, kind, reader)
            copied, parked = copied + step.copied, parked + step.parked
            left = deadline - time.monotonic()
            done = step.caught_up and not step.waiting
            if left <= 0 or (done and until_caught_up):
                return FollowResult(copied, parked, caught_up=done, idle=False)
            if step.caught_up or step.waiting:
                time.sleep(min(left, source_horizon.GRACE_SECONDS if step.waiting else POLL_SECONDS))
                source.refresh_from_db(fields=["state"])
            if source.state != Source.State.RUNNING:  # copy_step read it again after its transaction
                return FollowResult(copied, parked, caught_up=True, idle=True)


@dataclass(frozen=True)
class Step:
    copied: int
    parked: int
    # Everything read is copied (or parked) and the source had no more.
    caught_up: bool
    # A hole in the source's positions is settling (streams/source_horizon.py).
    waiting: bool


def copy_step(
    source: Source, kind: source_kinds.SourceKind, reader: psycopg.Connection, *, batch: int | None = None
) -> Step:
    """One batch (`batch` events at most, REPLAYDESK_SOURCE_BATCH by default): read, keep what is final,
    record it with the new position in one transaction."""
    batch = batch or settings.REPLAYDESK_SOURCE_BATCH
    read = kind.read(reader, source.options, after=source.position, limit=batch)
    if read.top < source.position:
        # Its positions went back: a restore from an old backup, most likely. Copying on would skip the
        # events written at the positions it hands out again, so the follower stops and says so.
        raise SourceError(
            f"the source's last position is {read.top}, below the {source.position} copied already: was its "
            "database restored from an old backup? Write its lost events back (a write_back job)"
        )
    _check_still_there(source, read.at)
    before = source_horizon.Settle(
        source.final_through, source.settle_through, source.settle_seen_at, source.settle_xmax
    )
    taken, blocked = source_horizon.copyable(
        read.events, after=source.position, final_through=before.final_through
    )
    now = timezone.now()
    settle = source_horizon.advance(before, read=read, blocked=blocked, now=now)
    with transaction.atomic():
        locked = Source.objects.select_for_update().get(pk=source.pk)
        if locked.position != source.position:
            raise SourceError(f"another follower moved {source.name} meanwhile; following again")
        copied, parked = record(locked, taken) if taken else (0, 0)
        if taken:
            locked.position, locked.progressed_at, locked.last_error = taken[-1].position, now, ""
            locked.position_stream, locked.position_sequence = taken[-1].stream[:500], taken[-1].sequence
        locked.events_copied += copied
        locked.events_parked += parked
        _measure_rate(locked, now)
        locked.head, locked.head_at = read.top, now
        locked.final_through = settle.final_through
        locked.settle_through, locked.settle_seen_at, locked.settle_xmax = (
            settle.through,
            settle.seen_at,
            settle.xmax,
        )
        locked.save()
    source.refresh_from_db()
    settled = settle.final_through > before.final_through
    return Step(
        copied,
        parked,
        caught_up=not blocked and len(read.events) < batch,
        waiting=blocked and not settled,
    )


def _check_still_there(source: Source, at: SourceEvent | None) -> None:
    """The source's event at the copied position is still the one copied there. When it is gone or
    another, the source's database was restored from an old backup and has handed out that position
    again: following on would skip what it wrote there since."""
    if not source.position or not source.position_stream:
        return  # nothing copied yet, or copied before this was kept
    if at is not None and (at.stream, at.sequence) == (source.position_stream, source.position_sequence):
        return
    found = "no event" if at is None else f"{at.stream} sequence {at.sequence}"
    raise SourceError(
        f"the source has {found} at position {source.position}, where {source.position_stream} sequence "
        f"{source.position_sequence} was copied: was its database restored from an old backup? Write its "
        "lost events back (a write_back job), which then follows it on from where it agrees with the copy"
    )


def _measure_rate(source: Source, now: dt.datetime) -> None:
    """Once a window of about RATE_WINDOW_SECONDS is over, its copies are counted and the next starts."""
    if source.rate_window_at is None:
        source.rate_window_at, source.rate_window_copied = now, source.events_copied
        return
    elapsed = (now - source.rate_window_at).total_seconds()
    if elapsed >= RATE_WINDOW_SECONDS:
        source.rate = round((source.events_copied - source.rate_window_copied) / elapsed, 3)
        source.rate_window_at, source.rate_window_copied = now, source.events_copied


# --- recording


def record(source: Source, events: list[SourceEvent]) -> tuple[int, int]:
    """Record the copyable events in the log and park the rest, inside the caller's transaction."""
    candidates: list[SourceEvent] = []
    parked: list[SourceParkedEvent] = []
    encoded: dict[int, tuple[str, str]] = {}
    for event in events:
        problem = event.problem
        if not problem:
            problem, encoded[event.position] = _checked(event)
        if problem:
            parked.append(_parked(source, event, problem))
        else:
            candidates.append(event)
    with connection.cursor() as cursor:
        streams = _lock_streams(cursor, source, {event.stream for event in candidates})
        recorded = _recorded(cursor, [event.id for event in candidates])
        rows = []
        broken: set[str] = {p.stream for p in parked if p.stream}
        for event in candidates:
            problem = _conflict(source, event, streams, recorded, broken)
            if problem is None:
                rows.append(event)
                streams[event.stream]["version"] = event.sequence
            elif problem:
                parked.append(_parked(source, event, problem))
                broken.add(event.stream)
        copied = _write(cursor, source, streams, rows, encoded)
    for item in parked:
        SourceParkedEvent.objects.update_or_create(
            source=source,
            position=item.position,
            defaults={
                "stream": item.stream,
                "sequence": item.sequence,
                "event_id": item.event_id,
                "type": item.type,
                "payload": item.payload,
                "reason": item.reason,
                "state": SourceParkedEvent.State.PARKED,
                "resolved_at": None,
                "resolved_by": "",
            },
        )
    return copied, len(parked)


def _checked(event: SourceEvent) -> tuple[str, tuple[str, str]]:
    """Why the log refuses the event as an append ("" when it takes it), and its data and metadata as
    JSON text: the rules of parse_append, through its shortcut for events plainly within them."""
    if event.id is not None:
        plain = plainly_valid(
            stream=event.stream,
            event_id=event.id,
            event_type=event.type,
            data=event.data,
            metadata=event.metadata,
        )
        if plain is not None and event.sequence is not None and event.sequence >= 1:
            return "", plain
    problem = _invalid(event)
    if problem:
        return problem, ("", "")
    return "", (json_text(event.data), json_text(event.metadata))


def _invalid(event: SourceEvent) -> str:
    if not isinstance(event.data, dict):
        return "its data is not a JSON object"
    if event.sequence is None or event.sequence < 1:
        return f"its sequence maps to {event.sequence} in the log, which counts from 1 (see first_sequence)"
    try:
        parse_append(
            stream=event.stream,
            events=[
                {"id": str(event.id), "type": event.type, "data": event.data, "metadata": event.metadata}
            ],
            expected_version="any",
        )
    except InvalidAppend as exc:
        return "; ".join(
            f"{field.replace('events[0].', '')}: {' '.join(m)}" for field, m in exc.errors.items()
        )
    return ""


def _lock_streams(cursor, source: Source, names: set[str]) -> dict[str, dict[str, Any]]:
    if not names:
        return {}
    cursor.execute(
        "SELECT name, id, version, source_id FROM streams_stream WHERE name = ANY(%s::text[])"
        " ORDER BY name FOR UPDATE",
        [_array(sorted(names), quoted=True)],
    )
    found = {
        name: {"id": id_, "version": version, "source": owner, "new": False}
        for name, id_, version, owner in cursor.fetchall()
    }
    for name in names - set(found):
        found[name] = {"id": None, "version": 0, "source": source.pk, "new": True}
    return found


def _recorded(cursor, ids: list) -> dict:
    """The events of the log with these ids (in a backfill, mostly none): their stream, sequence, type
    and data. Looked up by id alone, and the few streams found by theirs: a join would read every
    stream of the log for each batch."""
    if not ids:
        return {}
    cursor.execute(
        "SELECT id, stream_id, sequence, type, data FROM streams_event WHERE id = ANY(%s::uuid[])",
        [_array(ids)],
    )
    found = cursor.fetchall()
    if not found:
        return {}
    cursor.execute(
        "SELECT id, name FROM streams_stream WHERE id = ANY(%s::bigint[])",
        [_array({row[1] for row in found})],
    )
    names = dict(cursor.fetchall())
    return {event_id: (names[stream_id], *rest) for event_id, stream_id, *rest in found}


def _array(values, *, quoted: bool = False) -> str:
    """An array literal of numbers, UUIDs or (quoted) text: psycopg quotes a list element by element,
    which costs more than the statement for a batch of thousands."""
    if quoted:
        values = ('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values)
    return "{" + ",".join(map(str, values)) + "}"


def _conflict(
    source: Source, event: SourceEvent, streams: dict, recorded: dict, broken: set[str]
) -> str | None:
    """Why the event cannot be copied now; "" when it is in the log already as it is (nothing to do)."""
    earlier = recorded.get(event.id)
    if earlier is not None:
        stream, sequence, type_, data = earlier
        data = json.loads(data) if isinstance(data, str) else data
        if (stream, sequence, type_, data) == (event.stream, event.sequence, event.type, event.data):
            return ""
        return f"its id {event.id} is in the log already with other content ({stream}, sequence {sequence})"
    stream = streams[event.stream]
    if stream["source"] is None:
        return f"stream {event.stream} is Replaydesk's own (appended here, not copied from {source.name})"
    if stream["source"] != source.pk:
        return f"stream {event.stream} is copied from another source"
    if event.stream in broken:
        return f"an earlier event of stream {event.stream} is parked; its order would break"
    if event.sequence <= stream["version"]:
        return f"the log has sequence {event.sequence} of {event.stream} already, with another id"
    if event.sequence != stream["version"] + 1:
        return (
            f"a hole in stream {event.stream}: the log has it up to sequence {stream['version']}, "
            f"the source's next is {event.sequence}"
        )
    return None


def _write(
    cursor, source: Source, streams: dict, events: list[SourceEvent], encoded: dict[int, tuple[str, str]]
) -> int:
    if not events:
        return 0
    new = sorted({event.stream for event in events if streams[event.stream]["new"]})
    if new:
        cursor.execute(
            """
            INSERT INTO streams_stream (name, category, version, created_at, updated_at, source_id)
            SELECT name, category, version, now(), now(), %s
              FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS s(name, category, version)
            ON CONFLICT (name) DO NOTHING
            RETURNING name, id
            """,
            [
                source.pk,
                _array(new, quoted=True),
                _array([category_of(name) for name in new], quoted=True),
                _array([streams[name]["version"] for name in new]),
            ],
        )
        for name, stream_id in cursor.fetchall():
            streams[name]["id"] = stream_id
        taken = [name for name in new if streams[name]["id"] is None]
        if taken:
            # Another source's follower (or an append) created it since this batch looked: the batch is
            # undone, and the next one finds it someone else's and parks its events with that reason.
            raise SourceError(f"stream {taken[0]} was created by another writer meanwhile; following again")
    touched = sorted({event.stream for event in events if not streams[event.stream]["new"]})
    if touched:
        ids = _array([streams[name]["id"] for name in touched])
        # The rows by their key (s.id = ANY): a join alone would be planned as a scan of every stream.
        cursor.execute(
            """
            UPDATE streams_stream s SET version = v.version, updated_at = now()
              FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, version)
             WHERE s.id = v.id AND s.id = ANY(%s::bigint[])
            """,
            [ids, _array([streams[name]["version"] for name in touched]), ids],
        )
    who = appender(source.name)
    now = timezone.now()

    name = json_text(source.name)

    def rows():
        for event in events:
            data, metadata = encoded[event.position]
            yield (
                streams[event.stream]["id"],
                category_of(event.stream),
                event.sequence,
                event.id,
                event.type,
                data,
                _with_origin(event, metadata, name),
                str(event.metadata.get("actor") or ""),
                who.name,
                who.via,
                _aware(event.recorded_at) or now,
            )

    count, _ = services.copy_events(cursor, rows())
    return count


def _with_origin(event: SourceEvent, metadata: str, name: str) -> str:
    """The event's metadata (as JSON text) with where it came from, METADATA_KEY, added last."""
    if METADATA_KEY in event.metadata:
        return json_text(
            {**event.metadata, METADATA_KEY: {"name": json.loads(name), "position": event.position}}
        )
    origin = f'"{METADATA_KEY}":{{"name":{name},"position":{event.position}}}'
    return f"{{{origin}}}" if metadata == "{}" else f"{metadata[:-1]},{origin}}}"


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    if when is not None and when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when


def _parked(source: Source, event: SourceEvent, reason: str) -> SourceParkedEvent:
    payload = {"type": event.type, "data": event.data, "metadata": event.metadata}
    try:
        json.dumps(payload)
    except (TypeError, ValueError):
        payload = {
            "type": event.type,
            "data": repr(event.data)[:10_000],
            "metadata": repr(event.metadata)[:10_000],
        }
    return SourceParkedEvent(
        source=source,
        position=event.position,
        stream=event.stream[:500],
        sequence=event.sequence,
        event_id=event.id,
        type=event.type[:500],
        payload=payload,
        reason=reason[:2000],
    )
