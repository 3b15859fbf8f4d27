"""Sections 2, 4 and 5: reads (a long stream, global-log pages), consumer lag, and audit look-ups.

Replaydesk is called through what the API calls: for reads, the JSON text its API serves
(streams/event_json.py), and elsewhere its selectors; raw is the same query written by hand with psycopg
(no ORM, no model objects); eventsourcing answers what its recorder can answer.
Latencies are p50 and p95 of `samples` calls per repetition; the medians over repetitions are reported.
"""

from __future__ import annotations

import datetime as dt

import psycopg

from bench import data, peers
from bench.context import Context, interleaved
from bench.measure import percentile, row, timed_ms

PAGE = 100


def _latency_rows(ctx: Context, section: str, name: str, calls: dict, *, times: int = 0, **extra) -> None:
    """Time each system's call, interleaved per repetition; add a p50 and a p95 row."""
    p50 = {system: [] for system in calls}
    p95 = {system: [] for system in calls}
    for repetition in range(ctx.sizes.repetitions):
        for system in interleaved(tuple(calls), repetition):
            times_ms = timed_ms(calls[system], times or ctx.sizes.samples)
            p50[system].append(percentile(times_ms, 50))
            p95[system].append(percentile(times_ms, 95))
    ctx.rows.append(row(section, f"{name} (p50)", "ms", "lower", p50, **extra))
    ctx.rows.append(row(section, f"{name} (p95)", "ms", "lower", p95, **extra))
    ctx.log(f"{section}: {name}: p50 {ctx.rows[-2]['values']} p95 {ctx.rows[-1]['values']}")


# --- section 2: reads


def reads(ctx: Context) -> None:
    from django.conf import settings

    from streams import event_json, selectors

    es_store = peers.es_datastore(ctx.conninfo)
    recorder = peers.es_recorder(es_store)
    raw = psycopg.connect(ctx.url, autocommit=True)
    max_bytes = settings.REPLAYDESK_READ_MAX_BYTES
    try:
        head = selectors.head()
        found = raw.execute("SELECT id FROM streams_stream WHERE name = %s", [data.LONG_STREAM])
        long_id = found.fetchone()[0]
        long_uuid = data.stream_name_uuid(data.LONG_STREAM)

        def stream_read() -> bytes:
            # What GET /api/v1/streams/{stream}/events does below HTTP: the stream's page, its body.
            page = event_json.read_stream_json(
                name=data.LONG_STREAM, limit=data.LONG_STREAM_EVENTS, max_bytes=max_bytes
            )
            return page.body()

        _latency_rows(
            ctx,
            "reads",
            f"a stream of {data.LONG_STREAM_EVENTS:,} events",
            {
                "replaydesk": stream_read,
                "eventsourcing": lambda: recorder.select_events(long_uuid),
                "raw": lambda: _raw_body(
                    raw,
                    "FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id "
                    "WHERE e.stream_id = %s ORDER BY e.sequence LIMIT %s",
                    [long_id, data.LONG_STREAM_EVENTS],
                ),
            },
        )
        for label, after in (("at the start", 0), (f"{head:,} events in", head - PAGE * 10)):
            _latency_rows(
                ctx,
                "reads",
                f"a global-log page of {PAGE} {label}",
                {
                    "replaydesk": lambda after=after: event_json.read_all_json(
                        after_position=after, limit=PAGE, max_bytes=max_bytes
                    ).body(),
                    "eventsourcing": lambda after=after: recorder.select_notifications(
                        after, PAGE, inclusive_of_start=False
                    ),
                    "raw": lambda after=after: _raw_body(
                        raw,
                        "FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id "
                        "WHERE e.position > %s ORDER BY e.position LIMIT %s",
                        [after, PAGE],
                    ),
                },
                position=after,
            )
        _http_read(ctx, stream_read)
    finally:
        raw.close()
        es_store.close()


def _raw_body(raw, rest: str, params: list) -> bytes:
    """The same JSON text per event as Replaydesk's read, by hand: no byte bound, no masking."""
    from streams.event_json import EVENT_OBJECT_SQL

    rows = raw.execute(
        f"SELECT {EVENT_OBJECT_SQL} FROM (SELECT e.*, e.id AS event_id, s.name AS stream_name {rest}) i",
        params,
    ).fetchall()
    return ("[" + ",".join(text for (text,) in rows) + "]").encode()


def _http_read(ctx: Context, in_process) -> None:
    """GET /api/v1/streams/{stream}/events?limit=1000 through gunicorn started as `replaydesk up` starts
    it (httpx, keep-alive, an operator's bearer token), beside the same read in-process."""
    import httpx

    from bench import server as servers
    from bench.suite_appends import operator_token

    token = operator_token()
    port = servers.free_port()
    server = servers.web_server(servers.up_web_argv(port), ctx.env, port)
    url = f"/api/v1/streams/{data.LONG_STREAM}/events"
    query = {"limit": data.LONG_STREAM_EVENTS}
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as client:

            def over_http() -> bytes:
                response = client.get(url, params=query)
                response.raise_for_status()
                return response.content

            for _ in range(20):  # untimed: every worker and thread has read once
                over_http()
            _latency_rows(
                ctx,
                "reads",
                f"a stream of {data.LONG_STREAM_EVENTS:,} events over HTTP",
                {"replaydesk": over_http, "in-process": in_process},
                compared_to="in-process",
            )
    finally:
        servers.stop_web_server(server)


# --- section 5: audit


def audit(ctx: Context) -> None:
    from core.queries import QueryParser
    from streams.audit_search import parse_search, search_events

    raw = psycopg.connect(ctx.url, autocommit=True)
    first, last = raw.execute("SELECT min(recorded_at), max(recorded_at) FROM streams_event").fetchone()
    # Time ranges start in the middle of the history.
    after = first + (last - first) / 2

    def search(params: dict):
        parser = QueryParser(params, ("q", "recorded_after", "recorded_before"))
        return lambda: search_events(parse_search(parser), limit=50)

    try:
        _latency_rows(
            ctx,
            "audit",
            "audit: data containment",
            {
                "replaydesk": search({"q": "resource=issueABC"}),
                "raw": lambda: raw.execute(
                    "SELECT e.*, s.name FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id "
                    "WHERE e.data @> %s::jsonb ORDER BY e.position DESC LIMIT 50",
                    ['{"resource": "issueABC"}'],
                ).fetchall(),
            },
            query="resource=issueABC",
            newest_first=50,
        )
        for label, days in (("a week", 7), ("a day", 1)):
            _actor_and_time(ctx, raw, search, label, after, after + dt.timedelta(days=days))
    finally:
        raw.close()


def _actor_and_time(ctx: Context, raw, search, label: str, after, before) -> None:
    window = {"recorded_after": after.isoformat(), "recorded_before": before.isoformat()}
    _latency_rows(
        ctx,
        "audit",
        f"audit: actor + {label}",
        {
            "replaydesk": search({"q": "actor:alice.admin", **window}),
            "raw": lambda: raw.execute(
                "SELECT e.*, s.name FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id "
                "WHERE e.actor = %s AND e.recorded_at >= %s AND e.recorded_at < %s "
                "ORDER BY e.position DESC LIMIT 50",
                ["alice.admin", after, before],
            ).fetchall(),
        },
        query="actor:alice.admin",
        window=[after.isoformat(), before.isoformat()],
        matching=raw.execute(
            "SELECT count(*) FROM streams_event WHERE actor = %s AND recorded_at >= %s AND recorded_at < %s",
            ["alice.admin", after, before],
        ).fetchone()[0],
    )


# --- section 4: lag


LAG_TYPES = (
    "UserCreated",
    "UserNameSet",
    "UserEmailSet",
    "PermissionGranted",
    "PermissionRevoked",
    "MemberAdded",
    "MemberRemoved",
)


def lag_projection(i: int):
    """The lag benchmark's projection number i, registered in this process (it follows the demo's
    categories and applies nothing)."""
    from streams.projections import Projection, add

    cls = type(
        f"BenchLag{i}",
        (Projection,),
        {
            "name": f"bench_lag_{i}",
            "categories": ("user", "group"),
            "types": LAG_TYPES,
            "tables": ("CREATE TABLE seen (position bigint PRIMARY KEY)",),
            "__module__": __name__,
            "apply": lambda self, cursor, events: None,
        },
        register=False,
    )
    add(cls)
    return cls()


def make_consumers(ctx: Context, head: int) -> list:
    """`consumers` projections of the demo's shape, behind the head by 0 to 10% of the log, with their
    per-stream checkpoints filled in as a runner would have left them."""
    from django.db import connection

    from streams.consumers import ensure_projection
    from streams.models import Consumer

    made = []
    count = ctx.sizes.consumers
    for i in range(count):
        name = f"bench_lag_{i}"
        projection = lag_projection(i)
        ensure_projection(projection)
        behind = 0 if i == 0 else int(head * 0.1 * (i / (count - 1)) ** 2)
        checkpoint = max(0, head - behind)
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {projection.schema}.checkpoint SET position = %s", [checkpoint])
            cursor.execute(
                f"INSERT INTO {projection.schema}.stream_checkpoint (stream_id, sequence) "
                "SELECT stream_id, max(sequence) FROM streams_event WHERE position <= %s GROUP BY stream_id",
                [checkpoint],
            )
        Consumer.objects.filter(name=name).update(progressed_at=dt.datetime.now(dt.UTC))
        made.append((Consumer.objects.get(name=name), checkpoint, behind))
    return made


def lag(ctx: Context) -> None:
    from console import dashboard
    from streams import lag as lags
    from streams import selectors

    head = selectors.head()
    consumers = make_consumers(ctx, head)
    raw = psycopg.connect(ctx.url, autocommit=True)
    es_store = peers.es_datastore(ctx.conninfo, schema=peers.ES_VIEW_SCHEMA)
    tracking = peers.es_tracking(es_store)
    es_events = peers.es_recorder(peers.es_datastore(ctx.conninfo))
    from eventsourcing.persistence import Tracking

    for consumer, checkpoint, _ in consumers:
        if checkpoint:
            tracking.insert_tracking(Tracking(consumer.name, checkpoint))
    cycle = {"i": 0}

    def next_consumer():
        cycle["i"] += 1
        return consumers[cycle["i"] % len(consumers)]

    def raw_lag():
        consumer, checkpoint, _ = next_consumer()
        return raw.execute(
            "SELECT count(*), min(e.recorded_at) "
            "FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id "
            "WHERE e.position > %s AND e.position <= (SELECT max(position) FROM streams_event) "
            "AND e.type = ANY(%s) AND s.category = ANY(%s)",
            [checkpoint, list(LAG_TYPES), ["user", "group"]],
        ).fetchone()

    def es_lag():
        consumer, _, _ = next_consumer()
        return (es_events.max_notification_id() or 0) - (tracking.max_tracking_id(consumer.name) or 0)

    try:
        extra = {
            "consumers": len(consumers),
            "streams": _streams(raw),
            "events": head,
            "behind": [behind for _, _, behind in consumers],
        }
        _latency_rows(
            ctx,
            "lag",
            "lag of one consumer",
            {
                "replaydesk": lambda: lags.consumer_status(consumer=next_consumer()[0]),
                "eventsourcing": es_lag,
                "raw": raw_lag,
            },
            **extra,
        )
        _per_consumer(ctx, consumers, lags)
        _latency_rows(
            ctx,
            "lag",
            "top lagging streams of one consumer",
            {
                "replaydesk": lambda: lags.top_lagging_streams(consumer=next_consumer()[0]),
            },
            **extra,
        )
        # From here each consumer has the lag samples the scheduler takes every 10 s, so that its rate
        # is counted as it is on a live store, and the dashboard's lag trends have something to draw.
        # The calls are made as of when the samples were taken: however long the rows take, the rate's
        # minute holds the same samples.
        sampled_at = _sample(consumers, head)
        _latency_rows(
            ctx,
            "lag",
            "lag of one consumer, its rate counted",
            {"replaydesk": lambda: lags.consumer_status(consumer=next_consumer()[0], now=sampled_at)},
            **extra,
        )
        _latency_rows(
            ctx,
            "lag",
            f"all {len(consumers)} consumers (the dashboard)",
            {"replaydesk": lambda: dashboard.consumer_list(now=sampled_at)},
            times=max(10, ctx.sizes.samples // 10),
            **extra,
        )
    finally:
        raw.close()
        es_store.close()
        es_events.datastore.close()
        _drop_consumers(consumers)


# Each consumer's samples: every 10 s over the dashboard's lag trend (30 minutes), its checkpoint this
# many positions further at each, so that the rate's minute spans more than a lag window (the most a
# count reads).
SAMPLED_MINUTES = 30
SAMPLE_STEP = 1_000


def _sample(consumers, head: int) -> dt.datetime:
    """Takes the samples as of now, and returns now."""
    from streams.models import LagSample

    now = dt.datetime.now(dt.UTC)
    LagSample.objects.bulk_create(
        LagSample(
            consumer=consumer,
            sampled_at=now - dt.timedelta(seconds=10 * back),
            head=head,
            checkpoint=max(0, checkpoint - SAMPLE_STEP * back),
            lag_events=behind,
            lag_seconds=0,
        )
        for consumer, checkpoint, behind in consumers
        for back in range(1, SAMPLED_MINUTES * 6 + 1)
    )
    return now


def _per_consumer(ctx: Context, consumers, lags) -> None:
    """consumer_status of each consumer alone: how the cost grows with the lag (milliseconds, p50)."""
    detail = []
    for consumer, _, behind in consumers:
        times = timed_ms(lambda consumer=consumer: lags.consumer_status(consumer=consumer), 10)
        detail.append({"behind": behind, "p50_ms": round(percentile(times, 50), 2)})
    ctx.notes["lag_per_consumer"] = detail
    ctx.log(f"lag per consumer: {detail}")


def _streams(conn) -> int:
    return conn.execute("SELECT count(*) FROM streams_stream").fetchone()[0]


def _drop_consumers(consumers) -> None:
    from django.db import connection

    from streams.models import Consumer
    from streams.projections import quote, remove

    for consumer, _, _ in consumers:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {quote('proj_' + consumer.name)} CASCADE")
        Consumer.objects.filter(pk=consumer.pk).delete()
        remove(consumer.name)
