"""The two references: the eventsourcing library's PostgreSQL recorder, and raw psycopg on a table of
the store's own shape.

- eventsourcing: PostgresApplicationRecorder (one table, a bigserial notification id, an EXCLUSIVE table
  lock per insert for global order: the library's own defaults), in the schema `es`; its catch-up folds
  into tables of the demo projections' shapes in `es_view`, with the library's tracking recorder.
- raw: `raw.streams_event`, a copy of streams_event with every index (LIKE … INCLUDING ALL), written
  with plain INSERT + COMMIT or COPY: no stream table, no version check, nothing for global order.
"""

from __future__ import annotations

import psycopg

ES_SCHEMA = "es"
ES_EVENTS = "stored_events"
ES_VIEW_SCHEMA = "es_view"
RAW_SCHEMA = "raw"


def es_datastore(conninfo: dict, *, schema: str = ES_SCHEMA, pool_size: int = 1):
    from eventsourcing.postgres import PostgresDatastore

    return PostgresDatastore(
        conninfo["dbname"],
        conninfo["host"],
        conninfo["port"],
        conninfo["user"],
        conninfo["password"],
        schema=schema,
        pool_size=pool_size,
    )


def es_recorder(datastore):
    from eventsourcing.postgres import PostgresApplicationRecorder

    return PostgresApplicationRecorder(datastore, events_table_name=ES_EVENTS)


def es_tracking(datastore):
    from eventsourcing.postgres import PostgresTrackingRecorder

    return PostgresTrackingRecorder(datastore, tracking_table_name="tracking")


VIEW_TABLES = (
    """CREATE TABLE users (user_id text PRIMARY KEY, username text NOT NULL, name text NOT NULL,
           email text NOT NULL, updated_at timestamptz NOT NULL)""",
    "CREATE INDEX users_email ON users (lower(email))",
    """CREATE TABLE grants (user_id text NOT NULL, resource text NOT NULL, permission text NOT NULL,
           granted_at timestamptz NOT NULL, PRIMARY KEY (resource, user_id, permission))""",
    "CREATE INDEX grants_user ON grants (user_id)",
    """CREATE TABLE memberships (group_id text NOT NULL, user_id text NOT NULL, added_at timestamptz NOT NULL,
           PRIMARY KEY (group_id, user_id))""",
    "CREATE INDEX memberships_user ON memberships (user_id)",
)


def create(url: str, conninfo: dict) -> None:
    """The peer's tables (through the library, as an application would) and the raw table."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ES_SCHEMA}")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ES_VIEW_SCHEMA}")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
        conn.execute(f"CREATE TABLE {RAW_SCHEMA}.streams_event (LIKE public.streams_event INCLUDING ALL)")
    datastore = es_datastore(conninfo)
    try:
        es_recorder(datastore).create_table()
    finally:
        datastore.close()
    reset_view(url, conninfo)


def reset_view(url: str, conninfo: dict) -> None:
    """Empty read-model tables and tracking for the peer's catch-up."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {ES_VIEW_SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {ES_VIEW_SCHEMA}")
        conn.execute(f"SET search_path TO {ES_VIEW_SCHEMA}")
        for statement in VIEW_TABLES:
            conn.execute(statement)
    datastore = es_datastore(conninfo, schema=ES_VIEW_SCHEMA)
    try:
        es_tracking(datastore).create_table()
    finally:
        datastore.close()
