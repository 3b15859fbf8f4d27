"""The orders read model: a process of its own that consumes the `orders_read_model` subscription with
`Client.subscribe` into two PostgreSQL tables of its own (`orders`, `order_lines` in --schema), for
pages and reports that want orders as rows.

    python examples/orders/read_model.py --dsn postgresql://postgres@127.0.0.1:5432/shop

creates the subscription (following the `order` category) if there is none, creates its schema and
tables, and applies each event as it comes, until Ctrl-C or SIGTERM. REPLAYDESK_URL (default
http://127.0.0.1:8000) and REPLAYDESK_TOKEN say where and as whom (a token that may operate, to create
the subscription; one that may read is enough once it exists). --dsn defaults to ORDERS_DSN.

Delivery is at least once: an event comes again after a reader lost its lease, and every event comes
again after a rewind of the subscription. Each order row therefore keeps `version`, the sequence of
the last event of its stream applied to it, and an event at or below it is skipped; each event is
applied in one transaction with that version, so a crash between the two cannot apply it twice. A row
behind the event that arrives (the tables were restored from an old backup, or emptied with --reset)
first catches up from the stream itself. After a rewind the read model rebuilds what it lost, and what
it has keeps as it is: upserts by stream and version, never a blind insert.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

import psycopg
from psycopg import sql
from replaydesk_client import Client, Event

log = logging.getLogger("orders.read_model")

TABLES = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.orders (
    stream text PRIMARY KEY,
    order_id text NOT NULL,
    customer text NOT NULL,
    status text NOT NULL,
    lines integer NOT NULL DEFAULT 0,
    total_cents bigint NOT NULL DEFAULT 0,
    payment_id text,
    tracking text,
    version integer NOT NULL,
    placed_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.order_lines (
    stream text NOT NULL REFERENCES {schema}.orders ON DELETE CASCADE,
    sequence integer NOT NULL,
    sku text NOT NULL,
    quantity integer NOT NULL,
    unit_price_cents bigint NOT NULL,
    PRIMARY KEY (stream, sequence)
);
"""

STATUS = {"OrderPaid": "paid", "OrderShipped": "shipped", "OrderCancelled": "cancelled"}

# Each statement sets what its event says, whatever the row held: applying an event again changes nothing.
PLACED = """
INSERT INTO {}.orders (stream, order_id, customer, status, version, placed_at, updated_at)
VALUES (%(stream)s, %(order_id)s, %(customer)s, 'placed', 0, %(at)s, %(at)s)
ON CONFLICT (stream) DO NOTHING
"""
LINE = """
INSERT INTO {}.order_lines (stream, sequence, sku, quantity, unit_price_cents)
VALUES (%(stream)s, %(sequence)s, %(sku)s, %(quantity)s, %(unit_price_cents)s)
ON CONFLICT (stream, sequence) DO NOTHING
"""
TOTALS = """
UPDATE {0}.orders o SET (lines, total_cents) = (
    SELECT count(*), coalesce(sum(quantity * unit_price_cents), 0)
    FROM {0}.order_lines l WHERE l.stream = o.stream
)
WHERE o.stream = %(stream)s
"""
NEW_STATUS = """
UPDATE {}.orders
SET status = %(status)s, payment_id = coalesce(%(payment_id)s, payment_id),
    tracking = coalesce(%(tracking)s, tracking)
WHERE stream = %(stream)s
"""
APPLIED = "UPDATE {}.orders SET version = %(sequence)s, updated_at = %(at)s WHERE stream = %(stream)s"


class Stopping(Exception):
    """The process is stopping while the database is away: the event is left for the next reader."""


class ReadModel:
    def __init__(self, client: Client, dsn: str, schema: str, stop: threading.Event):
        self.client = client
        self.dsn = dsn
        self.schema = sql.Identifier(schema)
        self.stop = stop
        self.conn = psycopg.connect(dsn, autocommit=True)

    def create_tables(self) -> None:
        self.conn.execute(sql.SQL(TABLES).format(schema=self.schema))

    def reset(self) -> None:
        self.conn.execute(sql.SQL("TRUNCATE {}.orders CASCADE").format(self.schema))

    def handle(self, event: Event) -> None:
        """Apply the event, trying again while the database is away: an event is nacked (and at last
        parked) only for a fault of its own, not because PostgreSQL restarted."""
        pause = 0.5
        while True:
            try:
                self._apply_once(event)
                return
            except psycopg.OperationalError as exc:
                log.warning("the database is away (%s); trying again in %.1f s", exc, pause)
                if self.stop.wait(pause):
                    raise Stopping from exc
                pause = min(pause * 2, 30)
                self._reconnect()

    def _reconnect(self) -> None:
        try:
            self.conn.close()
            self.conn = psycopg.connect(self.dsn, autocommit=True)
        except psycopg.OperationalError:
            pass  # the next try says it again

    def _apply_once(self, event: Event) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            # One order at a time, whoever else applies its events (a reader whose lease ran out).
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [event.stream])
            cur.execute(self._sql("SELECT version FROM {}.orders WHERE stream = %s"), [event.stream])
            row = cur.fetchone()
            version = row[0] if row else 0
            if event.sequence <= version:
                log.info("%s@%s applied already", event.stream, event.sequence)
                return
            if event.sequence > version + 1:
                # Behind: the rows were restored or emptied. Catch up from the stream first.
                for earlier in self.client.read_stream(event.stream, from_sequence=version + 1):
                    if earlier.sequence >= event.sequence:
                        break
                    self._apply(cur, earlier)
            self._apply(cur, event)

    def _apply(self, cur: psycopg.Cursor, event: Event) -> None:
        params = {**event.data, "stream": event.stream, "sequence": event.sequence, "at": event.recorded_at}
        if event.type == "OrderPlaced":
            cur.execute(self._sql(PLACED), params)
        elif event.type == "ItemAdded":
            cur.execute(self._sql(LINE), params)
            cur.execute(self._sql(TOTALS), params)
        elif event.type in STATUS:
            params = {"payment_id": None, "tracking": None, **params, "status": STATUS[event.type]}
            cur.execute(self._sql(NEW_STATUS), params)
        cur.execute(self._sql(APPLIED), params)
        log.info("%s@%s %s applied", event.stream, event.sequence, event.type)

    def _sql(self, statement: str) -> sql.Composed:
        return sql.SQL(statement).format(self.schema)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("ORDERS_DSN"), help="its PostgreSQL (ORDERS_DSN)")
    parser.add_argument("--schema", default="orders_read_model", help="its tables' schema")
    parser.add_argument("--subscription", default="orders_read_model", help="the subscription it reads")
    parser.add_argument("--category", default="order", help="the orders' category, for a new subscription")
    parser.add_argument("--partitions", type=int, default=2, help="for a new subscription (2)")
    parser.add_argument("--reader", default="orders-read-model", help="its name on the consumer page")
    parser.add_argument("--reset", action="store_true", help="empty the tables first (then rewind to refill)")
    args = parser.parse_args(argv)
    if not args.dsn:
        sys.exit("give --dsn or set ORDERS_DSN: the PostgreSQL the read model writes to")
    token = os.environ.get("REPLAYDESK_TOKEN") or sys.exit("set REPLAYDESK_TOKEN (replaydesk token USER)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    stop = threading.Event()
    with Client(os.environ.get("REPLAYDESK_URL", "http://127.0.0.1:8000"), token) as client:
        client.create_subscription(
            args.subscription, categories=[args.category], partitions=args.partitions, exist_ok=True
        )
        model = ReadModel(client, args.dsn, args.schema, stop)
        model.create_tables()
        if args.reset:
            model.reset()
        log.info("applying subscription %s into schema %s", args.subscription, args.schema)
        client.subscribe(args.subscription, model.handle, reader=args.reader, stop=stop)
    log.info("stopped")


if __name__ == "__main__":
    main()
