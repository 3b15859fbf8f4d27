"""Tamper evidence for the console's audit trail: every console event names the hash of its predecessor.

The chain
    Each event appended through streams.audit.record carries `metadata.prev_hash`: the sha256 (hex) of the
    canonical form of the event before it in the same stream, or GENESIS (64 zeros) for sequence 1.
    streams.audit.record reads the predecessor and appends with expected_version = the version it read
    it at, retrying on WrongExpectedVersion, so two concurrent records never chain to the same event.

The canonical form of an event (what is hashed)
    A JSON object with exactly these keys, as stored in streams_event / streams_stream:
        stream       the stream's name                         "console-job.12"
        sequence     integer                                   3
        id           the event id, lowercase hyphenated UUID   "6f1c…"
        type         string
        data         the JSON object, as stored
        metadata     the JSON object, as stored, its own prev_hash included
        actor        string (the actor column)
        recorded_at  UTC, microseconds, "2025-01-31T09:15:02.123456Z"
        appended_by  string, and appended_via, string or null: who the store recorded appending it
                     (core/principals.py); both keys only for events that record it, so the hashes
                     of events recorded before appenders were stand unchanged
    serialised as UTF-8 with no whitespace, object keys sorted by code point at every depth, strings as
    JSON escapes them (non-ASCII kept as is), and numbers written exactly as PostgreSQL's jsonb prints
    them (kept as text, never read into a binary float), so the hash does not depend on how a client
    happens to parse JSON. sha256 of those bytes, as 64 lowercase hex digits.

What `replaydesk audit verify` catches
    It walks every console stream (keyset pages of streams, keyset pages of their events; nothing is held
    in memory beyond one page) and reports the first broken link of each stream:
    - an edited event: its successor's prev_hash no longer matches its hash (sequence 1: its prev_hash is
      not GENESIS). The last event of a stream has no successor: an edit of it is caught only by
      comparison with an exported head (--heads, below).
    - a deleted event: a hole in the sequences.
    - a truncation: the stream row's version (streams_stream.version, raised by every append) above the
      last sequence present.
    - an event without prev_hash: appended to a console stream some other way than core.audit.record.

What it cannot catch, and what to do about it
    The hashes are not keyed: somebody who can write to the database may delete the last events of a
    stream *and* lower streams_stream.version, edit the last event, delete a whole console stream, or
    rewrite every event after an edit with freshly computed hashes, and the chains would still hold.
    The defence is a copy of the chain heads kept where that person cannot write:
    `replaydesk audit verify --export-heads FILE` writes each intact stream's (sequence, hash) as JSON
    lines; keep the file off the database host (a ticket, object storage with retention lock, a log
    collector), and later `replaydesk audit verify --heads FILE` checks that each exported head is
    still present with the same hash. Anything recorded before that export can then no longer be
    changed, truncated or dropped unseen; run it on a schedule to narrow the window.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from core.audit import CATEGORY

GENESIS = "0" * 64

STREAM_PAGE = 500
EVENT_PAGE = 2000


# --- the canonical form


def canonical(
    *,
    stream: str,
    sequence: int,
    id: uuid.UUID | str,
    type: str,
    data: Any,
    metadata: Any,
    actor: str,
    recorded_at: dt.datetime,
    appended_by: str | None = None,
    appended_via: str | None = None,
) -> bytes:
    """The bytes hashed for one event (see the module docstring). data and metadata may be the jsonb text
    PostgreSQL returns (preferred: numbers stay exact) or already decoded JSON."""
    document = {
        "stream": stream,
        "sequence": int(sequence),
        "id": str(uuid.UUID(str(id))),
        "type": type,
        "data": _decoded(data),
        "metadata": _decoded(metadata),
        "actor": actor,
        "recorded_at": recorded_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if appended_by is not None:
        document |= {"appended_by": appended_by, "appended_via": appended_via}
    return _encode(document).encode("utf-8")


def event_hash(**event: Any) -> str:
    return hashlib.sha256(canonical(**event)).hexdigest()


class _Number(str):
    """A JSON number with a fraction or exponent, kept as the text PostgreSQL printed."""


def _decoded(value: Any) -> Any:
    return json.loads(value, parse_float=_Number) if isinstance(value, str) else value


def _encode(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(f"{_encode(str(key))}:{_encode(item)}" for key, item in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, _Number):
        return str.__str__(value)
    if isinstance(value, float):
        # Only when a caller passes decoded JSON; numbers the store returns are kept as text (_Number).
        return repr(value)
    # str, int, bool and None are what json prints for them.
    return json.dumps(value, ensure_ascii=False)


# --- the head a new record chains to

_EVENT_COLUMNS = (
    "e.sequence, e.id, e.type, e.data::text, e.metadata::text, e.actor, e.recorded_at, e.appended_by, "
    "e.appended_via"
)


@dataclass(frozen=True)
class Head:
    version: int
    prev_hash: str
    # False when the stream's version names an event that is not there (it was deleted).
    intact: bool = True


def head(stream: str) -> Head:
    """The stream's version and the hash a record appended at that version must carry.

    One statement, so the version and its event come from one snapshot: both were written by the same
    append, so they are seen together or not at all.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT s.version, {_EVENT_COLUMNS}
              FROM streams_stream s
              LEFT JOIN streams_event e ON e.stream_id = s.id AND e.sequence = s.version
             WHERE s.name = %s
            """,
            [stream],
        )
        row = cursor.fetchone()
    if row is None or row[0] == 0:
        return Head(version=0, prev_hash=GENESIS)
    version, *event = row
    if event[0] is None:
        return Head(version=version, prev_hash=GENESIS, intact=False)
    return Head(version=version, prev_hash=_row_hash(stream, event))


def _row_hash(stream: str, row: tuple | list) -> str:
    sequence, event_id, type_, data, metadata, actor, recorded_at, appended_by, appended_via = row
    return event_hash(
        stream=stream,
        sequence=sequence,
        id=event_id,
        type=type_,
        data=data,
        metadata=metadata,
        actor=actor,
        recorded_at=recorded_at,
        appended_by=appended_by,
        appended_via=appended_via,
    )


# --- verification


@dataclass(frozen=True)
class Break:
    """The first broken link of one stream: which event, what is wrong with it."""

    stream: str
    sequence: int
    problem: str  # edited | deleted | truncated | unchained | version_below_events | gone
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "sequence": self.sequence,
            "problem": self.problem,
            "detail": self.detail,
        }


@dataclass
class Report:
    streams: int = 0
    events: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks


@dataclass
class _Walk:
    """One stream's check while its events go by."""

    name: str
    version: int
    pinned: tuple[int, str] | None  # (sequence, hash) from an exported head
    expected: int = 1
    prev_hash: str = GENESIS
    broken: Break | None = None
    pinned_hash: str | None = None
    seen: int = 0

    def see(self, row: tuple) -> None:
        sequence, metadata_text = row[0], row[4]
        self.seen += 1
        if self.broken is not None:
            return
        if sequence != self.expected:
            missing = _span(self.expected, sequence - 1)
            self._break(self.expected, "deleted", f"{missing} missing: the sequence jumps to {sequence}")
            return
        recorded = json.loads(metadata_text).get("prev_hash")
        if recorded is None:
            self._break(
                sequence,
                "unchained",
                f"event {sequence} carries no prev_hash: it was not recorded through the console's audit "
                "(appended some other way), or its prev_hash was removed",
            )
            return
        if recorded != self.prev_hash:
            if sequence == 1:
                self._break(1, "edited", "event 1 was changed: its prev_hash is not the chain's start")
            else:
                self._break(
                    sequence - 1,
                    "edited",
                    f"event {sequence - 1} was changed after event {sequence} was recorded: its hash no "
                    f"longer matches the prev_hash event {sequence} holds (or that prev_hash was changed)",
                )
            return
        self.prev_hash = _row_hash(self.name, row)
        if self.pinned is not None and sequence == self.pinned[0]:
            self.pinned_hash = self.prev_hash
        self.expected = sequence + 1

    def finish(self) -> Break | None:
        if self.broken is not None:
            return self.broken
        last = self.expected - 1
        if self.version > last:
            self._break(
                last + 1,
                "truncated",
                f"the stream's version is {self.version} but its events end at {last}: "
                f"{_span(last + 1, self.version)} gone",
            )
        elif self.version < last:
            self._break(
                self.version + 1,
                "version_below_events",
                f"the stream's version is {self.version} but events go on to {last}: "
                "streams_stream was rewritten",
            )
        elif self.pinned is not None:
            self._check_pinned(last)
        return self.broken

    def _check_pinned(self, last: int) -> None:
        sequence, expected_hash = self.pinned
        if sequence > last:
            self._break(
                last + 1,
                "truncated",
                f"the exported head is event {sequence}, but the events end at {last} (and the stream's "
                "version was lowered to match)",
            )
        elif self.pinned_hash != expected_hash:
            self._break(
                sequence, "edited", f"event {sequence} no longer has the hash its exported head holds"
            )

    def _break(self, sequence: int, problem: str, detail: str) -> None:
        self.broken = Break(stream=self.name, sequence=sequence, problem=problem, detail=detail)


def _span(first: int, last: int) -> str:
    return f"event {first} is" if first == last else f"events {first}–{last} are"


def verify(
    *,
    heads: dict[str, tuple[int, str]] | None = None,
    on_intact: Callable[[str, int, str], None] | None = None,
    stream_page: int = STREAM_PAGE,
) -> Report:
    """Check every console stream; a Report with the first broken link of each broken one.

    heads: exported chain heads {stream: (sequence, hash)}; each must still be there, unchanged.
    on_intact(stream, sequence, hash): called with the head of each stream whose chain holds (an export).
    """
    heads = dict(heads or {})  # what is left at the end names streams that are gone
    report = Report()
    after = ""
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, name, version FROM streams_stream WHERE category = %s AND name > %s "
                "ORDER BY name LIMIT %s",
                [CATEGORY, after, stream_page],
            )
            page = cursor.fetchall()
        if not page:
            break
        walks = {row[0]: _Walk(name=row[1], version=row[2], pinned=heads.pop(row[1], None)) for row in page}
        _walk_events(walks)
        for walk in walks.values():
            report.streams += 1
            report.events += walk.seen
            broken = walk.finish()
            if broken is not None:
                report.breaks.append(broken)
            elif on_intact is not None and walk.version > 0:
                on_intact(walk.name, walk.version, walk.prev_hash)
        after = page[-1][1]
    # What is left of the exported heads names streams that are no longer there at all.
    for name, (sequence, _) in sorted(heads.items()):
        report.streams += 1
        report.breaks.append(
            Break(name, 1, "gone", f"the stream is gone; its exported head was event {sequence}")
        )
    return report


def _walk_events(walks: dict[int, _Walk]) -> None:
    ids = sorted(walks)
    cursor_at = (ids[0] - 1, 0)
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT e.stream_id, {_EVENT_COLUMNS}
                  FROM streams_event e
                 WHERE e.stream_id = ANY(%s) AND (e.stream_id, e.sequence) > (%s, %s)
                 ORDER BY e.stream_id, e.sequence
                 LIMIT %s
                """,
                [ids, *cursor_at, EVENT_PAGE],
            )
            rows = cursor.fetchall()
        for stream_id, *event in rows:
            walks[stream_id].see(event)
        if len(rows) < EVENT_PAGE:
            return
        cursor_at = (rows[-1][0], rows[-1][1])
