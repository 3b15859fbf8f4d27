"""Section 1: appends, 1 event per transaction with 1/4/16 writers, batches, the GIN index's cost, and
the HTTP API through gunicorn."""

from __future__ import annotations

import psycopg

from bench import server as servers
from bench.appends import WriterPool
from bench.context import SYSTEMS, Context, interleaved
from bench.measure import row

# Events a request in the API's batched row, and the name of the in-process figure beside the API's.
HTTP_BATCH = 100
IN_PROCESS = "in-process"


def run(ctx: Context) -> None:
    sizes = ctx.sizes
    parts = ctx.append_parts
    writers = max(
        max(sizes.writers) if "throughput" in parts else 1, sizes.http_clients if "http" in parts else 1
    )
    pool = WriterPool(size=writers, env=ctx.env)
    try:
        for part, measure in (("throughput", _throughput), ("gin", _gin_cost), ("http", _http)):
            if part in parts:
                measure(ctx, pool)
    finally:
        pool.close()


def _measure(ctx: Context, pool: WriterPool, system: str, writers: int, batch: int, http=None) -> float:
    return pool.run(
        system=system,
        writers=writers,
        batch=batch,
        seconds=ctx.sizes.append_seconds,
        streams=ctx.sizes.append_streams,
        conninfo=ctx.conninfo,
        url=ctx.url,
        http=http,
    )


def _throughput(ctx: Context, pool: WriterPool) -> None:
    sizes = ctx.sizes
    configs = [(f"1 event/tx, {w} writer{'s' if w > 1 else ''}", w, 1) for w in sizes.writers]
    configs += [(f"batches of {b:,}, 1 writer", 1, b) for b in sizes.batches]
    samples = {name: {system: [] for system in SYSTEMS} for name, _, _ in configs}
    for repetition in range(sizes.repetitions):
        for name, writers, batch in configs:
            for system in interleaved(SYSTEMS, repetition):
                rate = _measure(ctx, pool, system, writers, batch)
                samples[name][system].append(rate)
            ctx.log(
                f"appends {name} rep {repetition + 1}: "
                + ", ".join(f"{s} {v[-1]:,.0f}/s" for s, v in samples[name].items())
            )
    for name, writers, batch in configs:
        ctx.rows.append(
            row("appends", name, "events/s", "higher", samples[name], writers=writers, batch=batch)
        )


def _gin_cost(ctx: Context, pool: WriterPool) -> None:
    """Replaydesk's appends with and without the GIN indexes on data (containment, and the bare values
    of the audit search), dropped and rebuilt each time."""
    configs = [
        ("1 event/tx, 1 writer", 1, 1),
        (f"batches of {max(ctx.sizes.batches):,}, 1 writer", 1, max(ctx.sizes.batches)),
    ]
    samples = {name: {"with GIN": [], "without GIN": []} for name, _, _ in configs}
    indexes = _gin_indexes(ctx.url)
    for repetition in range(ctx.sizes.repetitions):
        order = ("with GIN", "without GIN") if repetition % 2 == 0 else ("without GIN", "with GIN")
        for variant in order:
            _set_gin(ctx.url, indexes, present=variant == "with GIN")
            for name, writers, batch in configs:
                samples[name][variant].append(_measure(ctx, pool, "replaydesk", writers, batch))
        ctx.log(f"GIN cost rep {repetition + 1}: {samples}")
    _set_gin(ctx.url, indexes, present=True)
    for name, _, batch in configs:
        figure = row("appends", f"GIN index cost: {name}", "events/s", "higher", samples[name], batch=batch)
        with_gin, without = figure["values"]["with GIN"], figure["values"]["without GIN"]
        figure["cost"] = round(1 - with_gin / without, 3) if without else None
        ctx.rows.append(figure)


def _gin_indexes(url: str) -> dict[str, str]:
    """The log's GIN indexes, by name, as the migrations made them."""
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = 'streams_event' AND indexdef LIKE '%USING gin%'"
        ).fetchall()
    return dict(found)


def _set_gin(url: str, indexes: dict[str, str], *, present: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name, definition in indexes.items():
            conn.execute(f'DROP INDEX IF EXISTS "{name}"')
            if present:
                conn.execute(definition)


def _http(ctx: Context, pool: WriterPool) -> None:
    """The API's appends through gunicorn as a deployment runs it (`replaydesk up`'s arguments), 1 event
    and HTTP_BATCH events a request, each beside the same writers appending in-process."""
    clients = ctx.sizes.http_clients
    configs = [
        (f"HTTP API, 1 event/request, {clients} clients", 1, "requests/s"),
        (f"HTTP API, batches of {HTTP_BATCH}/request, {clients} clients", HTTP_BATCH, "events/s"),
    ]
    token = operator_token()
    port = servers.free_port()
    argv = servers.up_web_argv(port)
    server = servers.web_server(argv, ctx.env, port)
    samples = {name: {"http": [], "replaydesk": []} for name, _, _ in configs}
    try:
        http = {"base_url": f"http://127.0.0.1:{port}", "token": token}
        for _, batch, _ in configs:
            _measure(ctx, pool, "http", clients, batch, http=http)  # untimed: every gunicorn worker warms up
        for repetition in range(ctx.sizes.repetitions):
            for name, batch, _ in configs:
                for system in interleaved(("http", "replaydesk"), repetition):
                    samples[name][system].append(_measure(ctx, pool, system, clients, batch, http=http))
                ctx.log(
                    f"{name} rep {repetition + 1}: "
                    + ", ".join(f"{s} {v[-1]:,.0f}/s" for s, v in samples[name].items())
                )
    finally:
        servers.stop_web_server(server)
    served = argv[argv.index("console.wsgi") :]
    bind = served.index("--bind")
    ctx.notes["appends_web_server"] = " ".join(served[:bind] + served[bind + 2 :])
    for name, batch, unit in configs:
        # The API's figure is Replaydesk's; beside it, the same writers appending in-process.
        values = {"replaydesk": samples[name]["http"], IN_PROCESS: samples[name]["replaydesk"]}
        ctx.rows.append(
            row("appends", name, unit, "higher", values, clients=clients, batch=batch, compared_to=IN_PROCESS)
        )


def operator_token() -> str:
    """A bearer token of an operator (the API's rate limits are off for the run: bench/server.py)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from console.tokens import issue_token
    from core.roles import OPERATOR, ensure_groups

    ensure_groups()
    user, _ = get_user_model().objects.get_or_create(username="bench.writer")
    user.groups.add(Group.objects.get(name=OPERATOR))
    return issue_token(user=user, actor="bench", name="benchmark", days=1).token
