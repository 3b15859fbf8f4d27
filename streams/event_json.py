"""Events as the API serves them, written as JSON text by PostgreSQL.

A page of a stream or of the global log is one query that returns each event as the JSON object
`streams.api.EventOut` renders (the same keys in the same order, the time as DRF writes it), with data
and metadata as PostgreSQL's own text of the stored JSON; the response is those texts joined. No event's
data is decoded into Python objects and encoded again, except an event that holds personal data
(REPLAYDESK_PII_PATHS), which is masked as `streams.masking` masks it and written out by DRF's renderer.

The text differs from what DRF would write only in PostgreSQL's spaces inside data and metadata
(`{"a": 1}`) and in how it writes a number (as stored: `1.50`, where Python writes `1.5`); parsed, it is
the same. Non-ASCII text is sent as \\u escapes, as the API's renderer sends it (UNICODE_JSON is off).

`selectors.read_stream` and `selectors.read_all` stay for callers that need Event objects."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import F
from rest_framework.renderers import JSONRenderer

from streams import masking, selectors
from streams.models import Stream

# `{"results": [], "next": "<cursor>"}` around the events, with room to spare.
ENVELOPE_BYTES = 64

# The columns the page query reads of each candidate event; its stream's name is `stream_name`.
_COLUMNS = (
    "position",
    "sequence",
    "event_id",
    "type",
    "data",
    "metadata",
    "actor",
    "appended_by",
    "appended_via",
    "recorded_at",
)
# The same, written by hand where the candidates are a plain index range: building the query with the
# ORM took longer than PostgreSQL took to answer it.
_COLUMNS_SQL = ", ".join(f"e.{column}" for column in _COLUMNS).replace("e.event_id", "e.id AS event_id")

# EventOut's fields in its order, from a candidate `i`. The time is DRF's DateTimeField under
# TIME_ZONE = "UTC" (settings fix it, and no view activates another zone): ISO 8601 with "Z", and
# microseconds only when there are any (_read drops ".000000").
EVENT_OBJECT_SQL = """
    '{"id":"' || i.event_id::text
    || '","stream":' || to_json(i.stream_name)::text
    || ',"sequence":' || i.sequence::text
    || ',"position":' || i.position::text
    || ',"type":' || to_json(i.type)::text
    || ',"data":' || i.data::text
    || ',"metadata":' || i.metadata::text
    || ',"actor":' || to_json(i.actor)::text
    || ',"appended_by":' || coalesce(to_json(i.appended_by)::text, 'null')
    || ',"appended_via":' || coalesce(to_json(i.appended_via)::text, 'null')
    || ',"recorded_at":"' || to_char(i.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
    || 'Z"}'
"""
_WHOLE_SECOND = '.000000Z"}'

# Each candidate's object and its running size in the page's order; only those within the budget
# (always the first) are sent, the others come back as NULL: they tell that the budget cut the page.
# OFFSET 0 keeps PostgreSQL from writing each object twice (once to measure it, once to send it).
_PAGE_SQL = """
    SELECT c.position, c.sequence, CASE WHEN c.n = 1 OR c.used <= %s THEN c.object END, c.personal
      FROM (SELECT b.*,
                   row_number() OVER w AS n,
                   sum(octet_length(b.object) + 1) OVER w AS used
              FROM (SELECT i.position, i.sequence, {event_object} AS object, {personal} AS personal
                      FROM ({candidates}) i
                    OFFSET 0) b
            WINDOW w AS (ORDER BY {order} ROWS UNBOUNDED PRECEDING)) c
     ORDER BY c.n
"""

_RENDERER = JSONRenderer()
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@dataclass(frozen=True)
class EventPage:
    """A page of events as JSON texts (ASCII), and the cursor of the next page (None at the end)."""

    results: list[str]
    next: str | None

    def body(self) -> bytes:
        """The response body, as DRF renders `{"results": [...], "next": ...}`."""
        following = "null" if self.next is None else json.dumps(self.next)
        return f'{{"results":[{",".join(self.results)}],"next":{following}}}'.encode("ascii")


@dataclass(frozen=True)
class _Read:
    texts: list[str]
    # (position, sequence) of the last event kept.
    last: tuple[int, int] | None
    more: bool


def read_stream_json(
    *,
    stream: Stream,
    from_sequence: int | None = None,
    direction: str = "forward",
    limit: int = selectors.DEFAULT_LIMIT,
    max_bytes: int,
) -> EventPage:
    """What GET /api/v1/streams/{stream}/events serves: the events of selectors.read_stream, masked,
    as many as a body of `max_bytes` holds (always the first), and the sequence to go on from."""
    backward = direction == "backward"
    where, params = "e.stream_id = %s", [stream.name, stream.id]
    if from_sequence is not None:
        where += " AND e.sequence <= %s" if backward else " AND e.sequence >= %s"
        params.append(from_sequence)
    order = "sequence DESC" if backward else "sequence"
    read = _read(
        f"SELECT {_COLUMNS_SQL}, %s AS stream_name FROM streams_event e"
        f" WHERE {where} ORDER BY e.{order} LIMIT %s",
        [*params, limit],
        order=f"b.{order}",
        limit=limit,
        max_bytes=max_bytes,
    )
    following = None
    if read.more and read.last is not None:
        sequence = read.last[1] + (1 if direction == "forward" else -1)
        following = str(sequence) if sequence >= 1 else None
    return EventPage(read.texts, following)


def read_all_json(
    *,
    after_position: int = 0,
    log_filter: selectors.LogFilter | None = None,
    limit: int = selectors.DEFAULT_LIMIT,
    max_bytes: int,
) -> EventPage:
    """What GET /api/v1/events serves: the events of selectors.read_all, masked, as many as a body of
    `max_bytes` holds (always the first), and the position to go on after."""
    if log_filter is None or log_filter.is_empty:
        # selectors.log_events without a filter: after the position, never past the settled head.
        candidates = (
            f"SELECT {_COLUMNS_SQL}, s.name AS stream_name"
            " FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id"
            " WHERE e.position > %s AND e.position <= %s ORDER BY e.position LIMIT %s"
        )
        params = [after_position, selectors.settled_head(), limit]
    else:
        filtered = selectors.log_events(after_position=after_position, log_filter=log_filter)
        sql, found = filtered.values(*_COLUMNS, stream_name=F("stream__name"))[:limit].query.sql_with_params()
        candidates, params = sql, list(found)
    read = _read(candidates, params, order="b.position", limit=limit, max_bytes=max_bytes)
    return EventPage(read.texts, str(read.last[0]) if read.more and read.last is not None else None)


def _read(candidates: str, params: list, *, order: str, limit: int, max_bytes: int) -> _Read:
    """The page of the candidates (SQL selecting _COLUMNS and stream_name, ordered and limited)."""
    budget = max_bytes - ENVELOPE_BYTES
    personal, personal_params = _personal()
    sql = _PAGE_SQL.format(
        event_object=EVENT_OBJECT_SQL, personal=personal, candidates=candidates, order=order
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [budget, *personal_params, *params])
        rows = cursor.fetchall()
    texts: list[str] = []
    last = None
    used = 0
    cut = False
    for position, sequence, text, holds_personal in rows:
        if text is None:
            cut = True
            break
        if text.endswith(_WHOLE_SECOND):
            text = text[: -len(_WHOLE_SECOND)] + 'Z"}'
        if holds_personal:
            text = _masked(text)
        elif not text.isascii():
            text = _NON_ASCII.sub(_escaped, text)
        # Measured as sent: PostgreSQL counted non-ASCII text as UTF-8, fewer bytes than its escapes,
        # so it never leaves out an event that fits here.
        size = len(text) + 1  # and its comma
        if texts and used + size > budget:
            cut = True
            break
        texts.append(text)
        used += size
        last = (position, sequence)
    return _Read(texts, last, bool(texts) and (len(texts) == limit or cut))


def _personal() -> tuple[str, list]:
    """SQL that is true for an event that may hold a value at a personal-data path: its data or metadata
    has the path's first key (masking.mask_document masks only non-null values under objects; an event
    this finds and that holds none only costs the Python path)."""
    first_keys: dict[str, list[str]] = {}
    for root, keys in masking.pii_paths():
        first_keys.setdefault(root, []).append(keys[0])
    if not first_keys:
        return "false", []
    tests = [f"i.{root} ?| %s::text[]" for root in first_keys]
    return "(" + " OR ".join(tests) + ")", list(first_keys.values())


def _masked(text: str) -> str:
    item = json.loads(text)
    item["data"] = masking.mask_document(item["data"], "data")
    item["metadata"] = masking.mask_document(item["metadata"], "metadata")
    return _RENDERER.render(item).decode("ascii")


def _escaped(found: re.Match) -> str:
    # A run of non-ASCII characters holds no quote or backslash: the encoder only escapes each one.
    return json.dumps(found.group())[1:-1]
