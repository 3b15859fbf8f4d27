"""A job's parameters: checked, completed with defaults and resolved (a time to a snapshot or a position),
then written in one canonical form whose sha256 an approval is bound to.

Exclusions ("a bug wrote bad events") drop an event from a replay or restore when its id is listed, or
when it matches every one of the other fields given (actor, types, and the time range, as one rule).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

from recovery.kinds import base as registry
from recovery.models import Snapshot
from streams import consumer_kinds, selectors
from streams.models import Consumer, Event, Source, Stream, Subscription
from streams.projections import get_projection
from streams.validation import STREAM_NAME_RE

MAX_SHARDS = 32
MAX_EXCLUDED_IDS = 10_000
MAX_RESYNC_STREAMS = 1_000

# A drill works in a scratch database of its own; one runs at a time. Not a possible consumer name.
DRILL_TARGET = "drill-sandbox"
EXCLUDE_FIELDS = {"event_ids", "actor", "types", "recorded_after", "recorded_before"}


class JobParamsError(Exception):
    """Parameters that cannot run; `errors` says which and why, field by field."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items()))


def canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def params_sha256(params: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(params).encode()).hexdigest()


def default_shards() -> int:
    """Lanes split a rebuild's streams so that several workers apply them at once. A job requested to run
    in this process (--inline, a drill) runs its lanes one after another, and each lane reads every event
    of its windows to keep its share of the streams: there, one lane reads the log once."""
    from recovery.runner.slices import runs_here

    return 1 if runs_here() else settings.REPLAYDESK_REPLAY_SHARDS


def target_of(kind: str, params: dict[str, Any]) -> str:
    return registry.get(kind).target(params)


def check(kind: str, raw: Any) -> dict[str, Any]:
    """The canonical parameters of a job of `kind`, or JobParamsError."""
    found = registry.get(kind)
    if found is None:
        raise JobParamsError(
            {"kind": [f"{kind!r} is not a job kind; use one of {', '.join(registry.names())}"]}
        )
    if not isinstance(raw, dict):
        raise JobParamsError({"params": ["must be a JSON object"]})
    errors: dict[str, list[str]] = {}
    for unknown in sorted(set(raw) - found.fields):
        errors.setdefault(unknown, []).append(
            f"a {kind} job takes no {unknown!r}; it takes {', '.join(sorted(found.fields))}"
        )
    params = found.check(Checker(raw, errors))
    if errors:
        raise JobParamsError(errors)
    return params


class Checker:
    """The checks of the parameters kinds share; a kind's own check (JobKind.check) composes them."""

    def __init__(self, raw: dict[str, Any], errors: dict[str, list[str]]):
        self.raw, self.errors = raw, errors

    def bad(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    # --- fields

    def projection(self) -> str | None:
        name = self.raw.get("projection")
        if not isinstance(name, str) or not name:
            self.bad("projection", "name the projection (see /consumers/)")
            return None
        if get_projection(name) is None:
            self.bad("projection", f"no projection is named {name!r}")
            return None
        return name

    def sink(self) -> str | None:
        name = self.raw.get("sink")
        if not isinstance(name, str) or not name:
            self.bad("sink", "name the sink (see /consumers/)")
            return None
        consumer = Consumer.objects.filter(name=name).first()
        if consumer is None or not consumer_kinds.of(consumer).resyncs:
            self.bad("sink", f"no sink is named {name!r}")
            return None
        return name

    def subscription(self) -> str | None:
        name = self.raw.get("subscription")
        if not isinstance(name, str) or not name:
            self.bad("subscription", "name the subscription (see /consumers/)")
            return None
        if not Subscription.objects.filter(consumer__name=name).exists():
            self.bad("subscription", f"no subscription is named {name!r}")
            return None
        return name

    def source_name(self) -> str | None:
        name = self.raw.get("source")
        if not isinstance(name, str) or not name:
            self.bad("source", "name the source (see /api/v1/sources)")
            return None
        if not Source.objects.filter(name=name).exists():
            self.bad("source", f"no source is named {name!r}")
            return None
        return name

    def stream_name(self) -> str | None:
        stream = self.raw.get("stream")
        if stream is None or stream == "":
            return None
        if not isinstance(stream, str) or not STREAM_NAME_RE.fullmatch(stream):
            self.bad("stream", "must be a stream name such as user-123")
            return None
        if not Stream.objects.filter(name=stream).exists():
            self.bad("stream", f"no stream is named {stream!r}")
            return None
        return stream

    def streams(self) -> list[str]:
        streams = self.raw.get("streams") or []
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            self.bad("streams", "must be a list of stream names")
            return []
        if len(streams) > MAX_RESYNC_STREAMS:
            self.bad("streams", f"at most {MAX_RESYNC_STREAMS} streams; resync from a position instead")
            return []
        known = set(Stream.objects.filter(name__in=streams).values_list("name", flat=True))
        if missing := sorted(set(streams) - known):
            self.bad("streams", f"no stream is named {', '.join(missing[:5])}")
        return sorted(set(streams))

    def snapshot_id(self, projection: str | None) -> int | None:
        value = self.raw.get("snapshot")
        if not isinstance(value, int) or isinstance(value, bool):
            self.bad("snapshot", "must be a snapshot id (see /snapshots/)")
            return None
        snapshot = Snapshot.objects.filter(pk=value).first()
        if snapshot is None:
            self.bad("snapshot", f"no snapshot has id {value}")
            return None
        if projection and snapshot.projection != projection:
            self.bad("snapshot", f"snapshot {value} is of {snapshot.projection}, not {projection}")
            return None
        return value

    def latest_snapshot(self, projection: str, before: str | None) -> int | None:
        snapshots = Snapshot.objects.filter(projection=projection)
        if before is not None:
            snapshots = snapshots.filter(taken_at__lte=dt.datetime.fromisoformat(before))
        found = snapshots.order_by("-taken_at").values_list("pk", flat=True).first()
        if found is None:
            where = f" taken before {before}" if before else ""
            self.bad("snapshot", f"{projection} has no snapshot{where}; take one, or replay from the log")
        return found

    def shards(self, projection: str | None) -> int:
        shards = self.raw.get("shards", default_shards())
        if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= MAX_SHARDS:
            self.bad("shards", f"must be a whole number from 1 to {MAX_SHARDS}")
            return 1
        found = get_projection(projection) if projection else None
        if found is not None and not getattr(found, "shard_by_stream", True):
            return 1  # its rows mix streams: it replays in one lane, in position order
        return shards

    def time(self, field: str, *, source: dict | None = None, field_name: str | None = None) -> str | None:
        value = (self.raw if source is None else source).get(field)
        if value is None or value == "":
            return None
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is None or parsed.tzinfo is None:
            self.bad(
                field_name or field, "must be an ISO 8601 time with a zone, such as 2026-11-22T14:00:00Z"
            )
            return None
        return parsed.astimezone(dt.UTC).isoformat()

    def exclude(self) -> dict[str, Any]:
        raw = self.raw.get("exclude") or {}
        if not isinstance(raw, dict):
            self.bad(
                "exclude", "must be an object with event_ids, actor, types, recorded_after, recorded_before"
            )
            return {}
        for unknown in sorted(set(raw) - EXCLUDE_FIELDS):
            self.bad(f"exclude.{unknown}", f"unknown; use {', '.join(sorted(EXCLUDE_FIELDS))}")
        ids = raw.get("event_ids") or []
        event_ids: list[str] = []
        if not isinstance(ids, list) or len(ids) > MAX_EXCLUDED_IDS:
            self.bad("exclude.event_ids", f"must be a list of at most {MAX_EXCLUDED_IDS} event ids")
        else:
            for value in ids:
                try:
                    event_ids.append(str(uuid.UUID(str(value))))
                except ValueError:
                    self.bad("exclude.event_ids", f"{value!r} is not an event id (a UUID)")
        actor = raw.get("actor") or None
        if actor is not None and not isinstance(actor, str):
            self.bad("exclude.actor", "must be a string")
            actor = None
        types = raw.get("types") or []
        if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
            self.bad("exclude.types", "must be a list of event types")
            types = []
        after = self.time("recorded_after", source=raw, field_name="exclude.recorded_after")
        before = self.time("recorded_before", source=raw, field_name="exclude.recorded_before")
        if after and before and after >= before:
            self.bad("exclude.recorded_before", "must be after recorded_after")
        return {
            "event_ids": sorted(set(event_ids)),
            "actor": actor,
            "types": sorted(set(types)),
            "recorded_after": after,
            "recorded_before": before,
        }


def position_before(when: dt.datetime) -> int:
    """The position after which every event was recorded at or after `when`."""
    first = (
        Event.objects.filter(recorded_at__gte=when).order_by("position").values_list("position", flat=True)
    )
    found = first.first()
    return found - 1 if found is not None else selectors.head()


def has_exclusions(exclude: dict[str, Any]) -> bool:
    return bool(exclude) and any(exclude.get(field) for field in EXCLUDE_FIELDS)
