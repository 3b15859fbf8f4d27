"""The eventsourcing library's own catch-up: a ProjectionRunner following an Application's recorder and
calling a Projection's process_event for each event, which writes its view and its tracking record in
one transaction (the library's exactly-once contract, one event at a time).

The store's events are copied into the application's table with topics naming the classes below, so
the library's mapper decodes them into domain events as it would its own.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner

from bench import peers

TYPES = (
    "UserCreated",
    "UserNameSet",
    "UserEmailSet",
    "PermissionGranted",
    "PermissionRevoked",
    "MemberAdded",
    "MemberRemoved",
)


def topic(event_type: str) -> str:
    return f"{__name__}:{event_type}"


class DemoEvent:
    originator_id: UUID
    originator_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]


# One class per demo event type: the mapper resolves a stored event's topic to its class.
for _name in TYPES:
    globals()[_name] = type(_name, (DemoEvent,), {"__module__": __name__})


class Stored(Application):
    """Named so that its recorder's table is `stored_events`, where the bench copies the log."""


class DemoViews(PostgresTrackingRecorder):
    def record(self, statement: str, params: tuple, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(f"SET LOCAL search_path TO {peers.ES_VIEW_SCHEMA}")
            cursor.execute(statement, params)
            self._insert_tracking(cursor, tracking)


class DemoViewsProjection(Projection[DemoViews]):
    name = "demo_views"
    topics = tuple(topic(t) for t in TYPES)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        from bench.suite_replay import FOLD

        statement, params = FOLD[type(domain_event).__name__]
        occurred_at = domain_event.metadata.get("occurred_at")
        self.view.record(statement, params(domain_event.data, occurred_at), tracking)


def environment(conninfo: dict) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": conninfo["dbname"],
        "POSTGRES_HOST": str(conninfo["host"]),
        "POSTGRES_PORT": str(conninfo["port"]),
        "POSTGRES_USER": conninfo["user"],
        "POSTGRES_PASSWORD": conninfo["password"],
        "STORED_POSTGRES_SCHEMA": peers.ES_SCHEMA,
        "DEMO_VIEWS_POSTGRES_SCHEMA": peers.ES_VIEW_SCHEMA,
    }


def catch_up(conninfo: dict, url: str, *, up_to: int) -> float:
    """Seconds for a ProjectionRunner to apply every followed event up to position `up_to` into fresh
    view tables."""
    import psycopg

    with psycopg.connect(url) as conn:
        target = conn.execute(
            f"SELECT max(notification_id) FROM {peers.ES_SCHEMA}.{peers.ES_EVENTS} "
            "WHERE notification_id <= %s AND topic = ANY(%s)",
            [up_to, list(DemoViewsProjection.topics)],
        ).fetchone()[0]
    started = time.perf_counter()
    with ProjectionRunner(
        application_class=Stored,
        projection_class=DemoViewsProjection,
        view_class=DemoViews,
        env=environment(conninfo),
    ) as runner:
        runner.wait(target, timeout=3600)
        seconds = time.perf_counter() - started
    return seconds
