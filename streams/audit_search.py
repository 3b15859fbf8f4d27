"""The support staff's search box: one query finds the matching streams and events.

A query is terms separated by spaces (quote a term that holds spaces); events must match every term:

- `actor:alice.admin`         events that claim that actor (metadata.actor)
- `appended_by:user:olivia`   events the store recorded as appended by that principal (core/principals.py)
- `type:PermissionGranted`    events of that type (several type: terms: any of them)
- `stream:user-`              events of streams whose name starts with this
- `resource=issueABC`         JSON containment on data (`data.` in front is allowed; `a.b=x` nests)
- a bare value such as `user-123`, `user-`, `123` or `alice.admin`: events of the stream of that name
  (or when there is none, of the streams whose name starts with it), of the streams named
  `<category>-<value>` (an entity id), by that actor or appended by that user, whose data holds that value
  under any key, at any depth (`issueABC`), or whose data names it as `<category>_id` or `id` (and
  `user-123` as user_id 123). A searcher who sees personal data masked does not find events through a
  value that only their personal fields hold.
  The streams listed above the events are the stream of that name when there is one, else those whose
  name starts with the value, and the entity's streams in every category.

The time range (recorded after / before) and the paging (keyset by position, newest first) are the log's
parameters (streams.queries), and the structured terms become the log's own filter (streams.selectors):
each condition is served by an index (stream name in C collation, (actor, recorded_at),
(appended_by, recorded_at), type, recorded_at, GIN jsonb_path_ops on data, GIN of the data's values,
and of the values keyed by span of the log for a bare value's newest events).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import connection, transaction
from django.db.models import BooleanField, F, Func, JSONField, Max, Q, QuerySet, Subquery, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import DataContains
from django.db.models.functions import Cast
from django.utils.http import urlencode

from core import principals
from core.queries import QueryParser
from streams import masking
from streams.models import Event, Stream
from streams.selectors import Events, LogFilter, data_containment, filter_events, iter_within, load_within
from streams.validation import STREAM_NAME_RE, TYPE_RE

PREFIXES = ("actor", "appended_by", "type", "stream")
MAX_TERMS = 10
MAX_TERM_CHARS = 200
STREAM_RESULTS = 20
# Beyond this many streams a prefix is matched in SQL rather than by a list of ids.
STREAM_ID_LIST = 500
EXPORT_MAX = 10_000
EXPORT_CHUNK = 500
SEARCH_PARAMS = ("q", "recorded_after", "recorded_before")
_PREFIXED = re.compile(r"^([A-Za-z_]+):(.*)$")


@dataclass(frozen=True)
class AuditQuery:
    text: str = ""
    # The searcher sees personal data masked: a bare term is not looked for in personal fields.
    masked: bool = False
    terms: tuple[str, ...] = ()
    stream_prefixes: tuple[str, ...] = ()
    log_filter: LogFilter = field(default_factory=LogFilter)

    @property
    def is_empty(self) -> bool:
        return not self.terms and not self.stream_prefixes and self.log_filter.is_empty

    @property
    def key(self) -> str:
        """One search, as a string: the view that an unmask opens, and what its audit record names."""
        f = self.log_filter
        pairs = [("q", self.text)]
        pairs += [
            (name, value.isoformat())
            for name, value in (("recorded_after", f.recorded_after), ("recorded_before", f.recorded_before))
            if value
        ]
        return urlencode(pairs)


def parse_search(parser: QueryParser, *, masked: bool = False) -> AuditQuery:
    """The query (`q`) and time range out of a parser's parameters; problems go to parser.errors.
    `masked`: the searcher sees personal data masked, so may not search on it."""
    text = (parser.raw("q") or "").strip()
    after, before = parser.time("recorded_after"), parser.time("recorded_before")
    if after and before and after >= before:
        parser.refuse("recorded_before", "must be later than recorded_after")
    try:
        tokens = shlex.split(text)
    except ValueError:
        parser.refuse("q", "a quote is not closed; put a term with spaces in double quotes")
        tokens = []
    if len(tokens) > MAX_TERMS:
        parser.refuse("q", f"at most {MAX_TERMS} terms")
        tokens = []
    parts = _Terms(masked=masked)
    for token in tokens:
        parts.add(token, parser)
    return AuditQuery(
        text=text,
        masked=masked,
        terms=tuple(parts.bare),
        stream_prefixes=tuple(parts.streams),
        log_filter=LogFilter(
            types=tuple(parts.types),
            actor=parts.actors[0] if parts.actors else None,
            appended_by=parts.appenders[0] if parts.appenders else None,
            recorded_after=after,
            recorded_before=before,
            data=tuple(parts.data),
        ),
    )


class _Terms:
    def __init__(self, *, masked: bool) -> None:
        self.masked = masked
        self.bare: list[str] = []
        self.streams: list[str] = []
        self.types: list[str] = []
        self.actors: list[str] = []
        self.appenders: list[str] = []
        self.data: list = []

    def add(self, token: str, parser: QueryParser) -> None:
        if len(token) > MAX_TERM_CHARS:
            parser.refuse("q", f"{token[:20]!r}…: a term is at most {MAX_TERM_CHARS} characters")
            return
        prefixed = _PREFIXED.match(token)
        if prefixed and "=" not in prefixed.group(1):
            self._prefixed(prefixed.group(1).lower(), prefixed.group(2), parser)
        elif "=" in token:
            self._containment(token, parser)
        else:
            self.bare.append(token)

    def _prefixed(self, prefix: str, value: str, parser: QueryParser) -> None:
        if prefix not in PREFIXES:
            known = ", ".join(f"{p}:" for p in PREFIXES)
            parser.refuse("q", f"{prefix}: is not a search prefix; use {known}, or field=value for data")
        elif not value:
            parser.refuse("q", f"{prefix}: needs a value, e.g. {prefix}:{_EXAMPLES[prefix]}")
        elif prefix == "type" and not TYPE_RE.fullmatch(value):
            parser.refuse("q", f"type:{value} is not an event type (they start with a letter)")
        elif prefix == "stream" and not STREAM_NAME_RE.fullmatch(value):
            parser.refuse("q", "stream: takes letters, digits and _ . : @ - (a stream name or its start)")
        elif prefix == "actor" and self.actors and value != self.actors[0]:
            parser.refuse("q", "an event has one actor: give one actor: term")
        elif prefix == "appended_by" and not principals.is_principal(value):
            parser.refuse("q", f"appended_by: names who appended as the store records it: {principals.FORMS}")
        elif prefix == "appended_by" and self.appenders and value != self.appenders[0]:
            parser.refuse("q", "an event has one appender: give one appended_by: term")
        else:
            terms = {
                "type": self.types,
                "stream": self.streams,
                "actor": self.actors,
                "appended_by": self.appenders,
            }
            terms[prefix].append(value)

    def _containment(self, token: str, parser: QueryParser) -> None:
        path, _, value = token.partition("=")
        path = path.removeprefix("data.")
        if not path or any(not part for part in path.split(".")):
            parser.refuse("q", f"{token!r}: write field=value, e.g. resource=issueABC")
            return
        if self.masked and masking.personal("data", path):
            # Refused for this role, as a filter on it is in the log (streams.queries): a 400.
            parser.error("q", f"data.{path} {masking.MASKED_FILTER}")
            return
        self.data.append(data_containment(path, value))


_EXAMPLES = {
    "actor": "alice.admin",
    "appended_by": "user:olivia",
    "type": "PermissionGranted",
    "stream": "user-",
}


def categories() -> list[str]:
    """Every category in use, by a loose index scan of (category, name): one probe per category."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE c(category) AS (
                SELECT min(category) FROM streams_stream
                UNION ALL
                SELECT (SELECT min(s.category) FROM streams_stream s WHERE s.category > c.category)
                  FROM c WHERE c.category IS NOT NULL
            )
            SELECT category FROM c WHERE category IS NOT NULL
            """
        )
        return [row[0] for row in cursor.fetchall()]


def entity_streams(term: str, known: list[str]) -> list[Stream]:
    """Streams named `<category>-<term>`: the entity `term` in every category."""
    names = [f"{category}-{term}" for category in known if STREAM_NAME_RE.fullmatch(f"{category}-{term}")]
    return list(Stream.objects.filter(name__in=names).order_by("name"))


def matching_streams(query: AuditQuery, *, limit: int = STREAM_RESULTS) -> list[Stream]:
    """Streams named by the query: a term's own stream (or, when none has its name, the streams whose
    name starts with it) and its entity's streams, then those a stream: prefix names, by name."""
    if not query.terms and not query.stream_prefixes:
        return []
    known = categories()
    found: dict[str, Stream] = {}
    for term in query.terms:
        # `user-123` is that user, not also user-1230…1239: their names only start with it.
        exact = Stream.objects.filter(name=term).first()
        named = [exact] if exact else []
        named += entity_streams(term, known)
        if exact is None:
            named += Stream.objects.filter(name__startswith=term).order_by("name")[:limit]
        for stream in named:
            found.setdefault(stream.name, stream)
    for prefix in query.stream_prefixes:
        for stream in Stream.objects.filter(name__startswith=prefix).order_by("name")[:limit]:
            found.setdefault(stream.name, stream)
    return list(found.values())[:limit]


def _stream_q(prefix: str) -> Q:
    ids = list(Stream.objects.filter(name__startswith=prefix).values_list("id", flat=True)[:STREAM_ID_LIST])
    if len(ids) < STREAM_ID_LIST:
        return Q(stream_id__in=ids)
    return Q(stream__name__startswith=prefix)


def _named_q(term: str, known: list[str], *, masked: bool = False) -> Q:
    """Events that a bare term names: its stream (or the streams it begins the names of), its entity's
    streams, its actor, its appender, or data that names it as `id` or `<category>_id`."""
    # A term that names a stream means that stream: `user-123` is not also user-1234's events.
    exact = Stream.objects.filter(name=term).values_list("id", flat=True).first()
    either = (Q(stream_id=exact) if exact is not None else _stream_q(term)) | Q(actor=term)
    # Also what that user appended in another's name: the claimed actor alone would hide it.
    either |= Q(appended_by=f"user:{term}")
    entity_ids = [stream.id for stream in entity_streams(term, known)]
    if entity_ids:
        either |= Q(stream_id__in=entity_ids)
    named = [(key, term) for key in ("id", *(f"{category}_id" for category in known))]
    category, _, entity = term.partition("-")
    if entity and category in known:
        # user-123 is also the entity that other streams' events name as user_id 123.
        named.append((f"{category}_id", entity))
    for key, value in named:
        if masked and masking.personal("data", key):
            continue
        for document in data_containment(key, value):
            either |= Q(data__contains=document)
    return either


# Every string and number in an event's data, at any key and depth. The GIN index on data
# (jsonb_path_ops) hashes each value with its path, so it answers `resource=issueABC` but cannot find
# `issueABC` under a key not named; this expression has a GIN index of its own
# (streams_event_data_values, migration 0013), so a bare value is one index probe: a bitmap of the
# matching rows, of which the search reads the newest page (search_candidates), never the whole log.
DATA_VALUES_PATH = 'strict $.** ? (@.type() == "string" || @.type() == "number")'
# A span of the spans index (streams_event_data_values_span): 2**16 positions. At 10 million events that
# is 153 spans; a value that no event under the newest positions holds is an empty probe of each.
SPAN_BITS = 16
# The same values keyed by their event's span, `{"152": [...]}`: kept equal to the index's expression
# (streams/migrations/0019), which PostgreSQL uses only for that expression.
SPAN_VALUES = (
    f'jsonb_set(\'{{}}\'::jsonb, ARRAY[("streams_event"."position" >> {SPAN_BITS})::text], '
    f'jsonb_path_query_array("streams_event"."data", \'{DATA_VALUES_PATH}\'::jsonpath))'
)


class _DataValues(Func):
    function = "jsonb_path_query_array"
    template = f"%(function)s(%(expressions)s, '{DATA_VALUES_PATH}'::jsonpath)"
    output_field = JSONField()


class _Without(Func):
    """`document #- '{address,street}'`: the document without the value at one path."""

    arg_joiner = " #- "
    template = "(%(expressions)s)"
    output_field = JSONField()


def data_values(term: str, *, masked: bool = False) -> Q:
    """Events whose data holds `term` as a value anywhere (and as a number, when it is one). For a
    searcher who sees personal data masked, the events found by the index are checked again with their
    personal fields taken out: a match only there would answer what the mask hides."""
    found = Q()
    for leaf in _leaves(term):
        found |= Q(DataContains(_DataValues(F("data")), Value([leaf], JSONField())))
    return found & _public_values(term) if masked else found


def _public_values(term: str) -> Q:
    """Events whose data holds `term` as a value outside the personal fields (all of them: Q(), when no
    personal field is in data)."""
    document: Any = F("data")
    for root, keys in masking.pii_paths():
        if root == "data":
            literal = ",".join('"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"' for key in keys)
            path = Cast(Value("{" + literal + "}"), ArrayField(TextField()))
            document = _Without(document, path)
    public = Q()
    if isinstance(document, F):
        return public
    for leaf in _leaves(term):
        public |= Q(DataContains(_DataValues(document), Value([leaf], JSONField())))
    return public


def _leaves(term: str) -> list[Any]:
    """The JSON values a bare term is: the string, and the number (or true, false, null) it also reads as."""
    return [document["v"] for document in data_containment("v", term)]


def _filtered(query: AuditQuery) -> QuerySet[Event]:
    """The events that the query's filters and stream prefixes let through, whatever its terms."""
    events = filter_events(Event.objects.select_related("stream"), query.log_filter)
    for prefix in query.stream_prefixes:
        events = events.filter(_stream_q(prefix))
    return events


def _with_terms(events: QuerySet[Event], query: AuditQuery, named: Mapping[str, Q]) -> QuerySet[Event]:
    """Those of the events that match every term: named by it (`named`, each term's _named_q) or holding
    it as a value."""
    for term in query.terms:
        events = events.filter(named[term] | data_values(term, masked=query.masked))
    return events


def _names(query: AuditQuery) -> dict[str, Q]:
    known = categories() if query.terms else []
    return {term: _named_q(term, known, masked=query.masked) for term in query.terms}


@contextmanager
def without_jit() -> Iterator[None]:
    """A transaction in which the search's statements are not compiled. Picking the newest of many
    matches (a value tens of thousands of old events hold) is costed above jit_above_cost, and compiling
    it took 135 ms of a 900 ms search on a log of 10 million events (bench/README.md, section 9) to read
    a page of rows."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
        yield


def search_candidates(query: AuditQuery, *, before: int | None = None, limit: int = 50) -> QuerySet[Event]:
    """Matching events newest first, before position `before` (the keyset cursor), unloaded.

    Positions first, then only those rows: a look-up matching thousands of events reads just the page's
    from the table. The positions are not found by walking the log back from its head: the planner
    assumes matches are spread evenly over the log, and a value found only in old history (or a time
    window far back) would read everything after it. With a time range, the time indexes find the
    window's events and the newest are picked from them. Without one, the newest RECENT_SCAN positions
    are walked back first (a term that many recent events match fills its page there, in a bounded
    walk); what they leave unfilled is picked the same way from the indexes' matches below them. A
    query of one term finds its bare value span by span instead (_one_term)."""
    others, named = _filtered(query), _names(query)
    if before is not None:
        others = others.filter(position__lt=before)
    events = _with_terms(others, query, named)
    if _one_actor(query):
        # Read from the end of the (actor, position) index: newest first, however many events the actor has.
        return _by_position(events.order_by("-position").values("position")[:limit])
    if query.log_filter.recorded_after or query.log_filter.recorded_before:
        return _by_position(_newest(events, limit))
    # Not above the log's head, whatever cursor was given: the spans are walked down from here.
    top = min(before, _last_position() + 1) if before is not None else _last_position() + 1
    if len(query.terms) == 1:
        return _by_position(_one_term(query, others, named[query.terms[0]], top=top, limit=limit))
    recent = list(
        events.filter(position__gte=top - RECENT_SCAN)
        .order_by("-position")
        .values_list("position", flat=True)[:limit]
    )
    if len(recent) >= limit:
        return _by_position(recent)
    older = _newest(events.filter(position__lt=top - RECENT_SCAN), limit - len(recent))
    return (
        Event.objects.select_related("stream")
        .filter(Q(position__in=recent) | Q(position__in=older))
        .order_by("-position")
    )


def _one_term(query: AuditQuery, others: QuerySet[Event], named: Q, *, top: int, limit: int) -> list[int]:
    """The newest `limit` positions under `top` that match a query of one term, among `others` (what the
    filters let through), with the term's bare value looked up in the spans index, not among all the
    events that hold it.

    The newest RECENT_SCAN positions first, with the value asked of the one or two spans they are in.
    Below them, the newest of what the term names (`named`: by stream, actor, appender and id, with
    their own indexes, few rows as a rule) merged with the newest of what holds it as a bare value,
    found span by span (_newest_values)."""
    (term,) = query.terms
    below = max(top - RECENT_SCAN, 0)
    spans = range(below >> SPAN_BITS, ((top - 1) >> SPAN_BITS) + 1)
    recent = list(
        others.filter(
            named | _in_spans(term, spans, masked=query.masked), position__gte=below, position__lt=top
        )
        .order_by("-position")
        .values_list("position", flat=True)[:limit]
    )
    need = limit - len(recent)
    if need <= 0 or below == 0:
        return recent
    found = {row["position"] for row in _newest(others.filter(named, position__lt=below), need)}
    found.update(_newest_values(others, term, masked=query.masked, below=below, need=need))
    return recent + sorted(found, reverse=True)[:need]


def _in_spans(term: str, spans: Iterable[int] | None, *, masked: bool) -> Q:
    """Events of these spans whose data holds the bare value: the spans index's condition. `spans` None:
    the span `span.n` of the LATERAL walk that the condition is written into (_newest_values)."""
    keys = [("span.n::text", [])] if spans is None else [("%s::text", [span]) for span in spans]
    found = Q()
    for key, params in keys:
        for leaf in _leaves(term):
            found |= Q(
                RawSQL(
                    f"{SPAN_VALUES} @> jsonb_set('{{}}'::jsonb, ARRAY[{key}], %s::jsonb)",
                    [*params, json.dumps([leaf])],
                    output_field=BooleanField(),
                )
            )
    return found & _public_values(term) if masked else found


def _newest_values(events: QuerySet[Event], term: str, *, masked: bool, below: int, need: int) -> list[int]:
    """The newest `need` of the events under `below` whose data holds the bare value: asked of the spans
    index (streams_event_data_values_span) one span of 65,536 positions at a time, newest first, until
    `need` are found. Each span reads only the rows that hold the value in it, so a value that tens of
    thousands of old events hold costs the spans walked (an index probe each, a few hundredths of a
    millisecond) and the rows of the newest spans that hold it, not all of its rows (bench/README.md,
    section 9).

    One statement: the spans are a generate_series, newest first, and each is a LATERAL query; the nested
    loop asks them in that order and stops at the LIMIT."""
    inner = _newest(events.filter(_in_spans(term, None, masked=masked), position__lt=below), need)
    sql, params = inner.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT found.position FROM generate_series(%s, 0, -1) AS span(n),"
            f" LATERAL ({sql}) found LIMIT %s",
            [(below - 1) >> SPAN_BITS, *params, need],
        )
        return [row[0] for row in cursor.fetchall()]


# The newest positions a search without a time range walks before it asks the indexes. A term that one
# event in a few hundred holds fills its page within them (a walk of a few ms); at 1,000, such a term
# fell through to picking the newest of all its matches (0.3 s on a million events, bench/README.md).
RECENT_SCAN = 20_000


def _one_actor(query: AuditQuery) -> bool:
    """`actor:NAME` and nothing else: no term, no stream prefix, no other filter and no time range."""
    only = query.log_filter
    return (
        bool(only.actor)
        and not query.terms
        and not query.stream_prefixes
        and (replace(only, actor=None).is_empty)
    )


def _newest(events: QuerySet[Event], limit: int) -> QuerySet:
    """The newest `limit` positions of the events, ordered by an expression, not the primary key: the
    indexes of the conditions find the matches and the newest are picked from them."""
    return events.annotate(newest=F("position") + 0).order_by("-newest").values("position")[:limit]


def _by_position(positions) -> QuerySet[Event]:
    found = positions if isinstance(positions, list) else Subquery(positions)
    return Event.objects.select_related("stream").filter(position__in=found).order_by("-position")


def _last_position() -> int:
    return Event.objects.aggregate(last=Max("position"))["last"] or 0


def search_events(
    query: AuditQuery, *, before: int | None = None, limit: int = 50, max_bytes: int | None = None
) -> Events:
    """search_candidates(), loaded: fewer than `limit` when `max_bytes` would be passed (load_within)."""
    if query.is_empty:
        return Events()
    return load_within(search_candidates(query, before=before, limit=limit), max_bytes=max_bytes)


@dataclass
class Export:
    """The events of an export, newest first, in keyset chunks of at most EXPORT_CHUNK events and
    CHUNK_BYTES of them loaded at a time; `truncated` once EXPORT_MAX is hit."""

    query: AuditQuery
    limit: int = 0  # 0: EXPORT_MAX
    truncated: bool = False

    def __post_init__(self) -> None:
        self.limit = self.limit or EXPORT_MAX

    def __iter__(self) -> Iterator[Event]:
        before, sent = None, 0
        while sent < self.limit:
            wanted = min(EXPORT_CHUNK, self.limit - sent + 1)
            seen = 0
            for event in iter_within(search_candidates(self.query, before=before, limit=wanted)):
                if sent == self.limit:
                    self.truncated = True
                    return
                seen += 1
                sent += 1
                before = event.position
                yield event
            if seen < EXPORT_CHUNK:
                return


def search_params(params: Mapping) -> dict[str, str]:
    """The parameters that say what is searched (not the page): for links to exports and pages."""
    return {name: params[name] for name in SEARCH_PARAMS if params.get(name)}
