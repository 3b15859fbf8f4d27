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

from streams import masking, selectors

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
    SELECT c.n, c.position, c.sequence, CASE WHEN c.n = 1 OR c.used <= %s THEN c.object END, c.personal
      FROM (SELECT b.*,
                   row_number() OVER w AS n,
                   sum(octet_length(b.object) + 1) OVER w AS used
              FROM (SELECT i.position, i.sequence, {event_object} AS object, {personal} AS personal
                      FROM ({candidates}) i
                    OFFSET 0) b
            WINDOW w AS (ORDER BY {order} ROWS UNBOUNDED PRECEDING)) c
"""

# A stream's page and the stream row in one statement: the row (its version is the page's ETag) even
# when the page is empty, none when no stream has the name.
_STREAM_PAGE_SQL = """
    SELECT s.version, p.position, p.sequence, p.object, p.personal
      FROM streams_stream s
      LEFT JOIN LATERAL ({page}) p (n, position, sequence, object, personal) ON true
     WHERE s.name = %s
     ORDER BY p.n
"""

# The settled head, kept in the session for the page's statement that follows in the same round trip:
# it must be known before that statement starts (selectors.settled_head says why).
_SETTLED_HEAD_SQL = "SELECT set_config('replaydesk.settled_head', replaydesk_settled_head()::text, false)"
_SETTLED_HEAD = "current_setting('replaydesk.settled_head')::bigint"

# What DRF's JSONRenderer writes under the API's settings (ASCII, compact, no NaN) for values that
# json.loads made, built once: the renderer builds an encoder for every call.
_render = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


@dataclass(frozen=True)
class EventPage:
    """A page of events as JSON texts (ASCII), and the cursor of the next page (None at the end); for
    a stream's page, the stream's version (its ETag)."""

    results: list[str]
    next: str | None
    version: int | None = None

    def body(self) -> bytes:
        """The response body, as DRF renders `{"results": [...], "next": ...}`."""
        following = "null" if self.next is None else json.dumps(self.next)
        return f'{{"results":[{",".join(self.results)}],"next":{following}}}'.encode("ascii")


@dataclass(frozen=True)
class _Kept:
    texts: list[str]
    # (position, sequence) of the last event kept.
    last: tuple[int, int] | None
    more: bool


def read_stream_json(
    *,
    name: str,
    from_sequence: int | None = None,
    direction: str = "forward",
    limit: int = selectors.DEFAULT_LIMIT,
    max_bytes: int,
) -> EventPage | None:
    """What GET /api/v1/streams/{stream}/events serves: the events of selectors.read_stream, masked,
    as many as a body of `max_bytes` holds (always the first), the sequence to go on from and the
    stream's version; None when no stream has the name. One statement, one round trip."""
    backward = direction == "backward"
    where, params = "e.stream_id = s.id", []
    if from_sequence is not None:
        where += " AND e.sequence <= %s" if backward else " AND e.sequence >= %s"
        params.append(from_sequence)
    order = "sequence DESC" if backward else "sequence"
    page, page_params = _page_sql(
        f"SELECT {_COLUMNS_SQL}, s.name AS stream_name FROM streams_event e"
        f" WHERE {where} ORDER BY e.{order} LIMIT %s",
        [*params, limit],
        order=f"b.{order}",
        max_bytes=max_bytes,
    )
    with connection.cursor() as cursor:
        with connection.wrap_database_errors:
            # Prepared, as the append is (console/settings.py): parsing and planning it cost about as
            # much as running it. Four texts at most (direction, from_sequence or not).
            cursor.cursor.execute(_STREAM_PAGE_SQL.format(page=page), [*page_params, name], prepare=True)
        rows = cursor.fetchall()
    if not rows:
        return None
    kept = _kept([row[1:] for row in rows if row[1] is not None], limit=limit, max_bytes=max_bytes)
    following = None
    if kept.more and kept.last is not None:
        sequence = kept.last[1] + (-1 if backward else 1)
        following = str(sequence) if sequence >= 1 else None
    return EventPage(kept.texts, following, version=rows[0][0])


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
        rows = _unfiltered_log(after_position=after_position, limit=limit, max_bytes=max_bytes)
    else:
        filtered = selectors.log_events(after_position=after_position, log_filter=log_filter)
        candidates = filtered.values(*_COLUMNS, stream_name=F("stream__name"))[:limit]
        sql, params = candidates.query.sql_with_params()
        page, page_params = _page_sql(sql, list(params), order="b.position", max_bytes=max_bytes)
        with connection.cursor() as cursor:
            cursor.execute(page + " ORDER BY c.n", page_params)
            rows = cursor.fetchall()
    kept = _kept([row[1:] for row in rows], limit=limit, max_bytes=max_bytes)
    return EventPage(kept.texts, str(kept.last[0]) if kept.more and kept.last is not None else None)


def _unfiltered_log(*, after_position: int, limit: int, max_bytes: int) -> list[tuple]:
    """selectors.log_events without a filter (after the position, never past the settled head), written
    by hand: building it with the ORM took longer than PostgreSQL took to answer it. The settled head
    and the page are two statements sent in one round trip (a pipeline), both prepared."""
    page, page_params = _page_sql(
        f"SELECT {_COLUMNS_SQL}, s.name AS stream_name"
        " FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id"
        f" WHERE e.position > %s AND e.position <= {_SETTLED_HEAD} ORDER BY e.position LIMIT %s",
        [after_position, limit],
        order="b.position",
        max_bytes=max_bytes,
    )
    with connection.cursor() as cursor:
        with connection.wrap_database_errors, connection.connection.pipeline():
            cursor.cursor.execute(_SETTLED_HEAD_SQL, prepare=True)
            cursor.cursor.execute(page + " ORDER BY c.n", page_params, prepare=True)
        return cursor.fetchall()


def _page_sql(candidates: str, params: list, *, order: str, max_bytes: int) -> tuple[str, list]:
    """The page of the candidates (SQL selecting _COLUMNS and stream_name, ordered and limited), as
    (n, position, sequence, object or NULL, may hold personal data), and its parameters."""
    personal, personal_params = _personal()
    sql = _PAGE_SQL.format(
        event_object=EVENT_OBJECT_SQL, personal=personal, candidates=candidates, order=order
    )
    return sql, [max_bytes - ENVELOPE_BYTES, *personal_params, *params]


def _kept(rows: list[tuple], *, limit: int, max_bytes: int) -> _Kept:
    """The events of the page's rows that the body holds, written as sent, and whether more follow."""
    budget = max_bytes - ENVELOPE_BYTES
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
    return _Kept(texts, last, bool(texts) and (len(texts) == limit or cut))


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
    masking.mask_document(item["data"], "data", in_place=True)
    masking.mask_document(item["metadata"], "metadata", in_place=True)
    return _render(item)


def _escaped(found: re.Match) -> str:
    # A run of non-ASCII characters holds no quote or backslash: the encoder only escapes each one.
    return json.dumps(found.group())[1:-1]
