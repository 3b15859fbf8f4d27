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

from recovery.models import Job, Snapshot
from streams import selectors
from streams.models import Consumer, Event, Stream
from streams.projections import get_projection
from streams.validation import STREAM_NAME_RE

MAX_SHARDS = 32
MAX_EXCLUDED_IDS = 10_000
MAX_RESYNC_STREAMS = 1_000
MAX_RESYNC_RATE = 10_000.0

FIELDS = {
    Job.Kind.SNAPSHOT: {"projection"},
    Job.Kind.REPLAY: {"projection", "snapshot", "stream", "exclude", "shards"},
    Job.Kind.RESTORE: {"projection", "snapshot", "before", "exclude", "shards"},
    Job.Kind.VERIFY: {"projection", "repair", "shards"},
    Job.Kind.RESYNC: {"sink", "from_position", "from_time", "streams", "rate_per_second", "exclude"},
    Job.Kind.DRILL: {"quick"},
}
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
    return settings.REPLAYDESK_REPLAY_SHARDS


def target_of(kind: str, params: dict[str, Any]) -> str:
    if kind == Job.Kind.DRILL:
        return DRILL_TARGET
    return params["sink"] if kind == Job.Kind.RESYNC else params["projection"]


def check(kind: str, raw: Any) -> dict[str, Any]:
    """The canonical parameters of a job of `kind`, or JobParamsError."""
    if kind not in Job.Kind.values:
        raise JobParamsError(
            {"kind": [f"{kind!r} is not a job kind; use one of {', '.join(Job.Kind.values)}"]}
        )
    if not isinstance(raw, dict):
        raise JobParamsError({"params": ["must be a JSON object"]})
    errors: dict[str, list[str]] = {}
    for unknown in sorted(set(raw) - FIELDS[kind]):
        errors.setdefault(unknown, []).append(
            f"a {kind} job takes no {unknown!r}; it takes {', '.join(sorted(FIELDS[kind]))}"
        )
    checker = _Checker(raw, errors)
    params = getattr(checker, kind)()
    if errors:
        raise JobParamsError(errors)
    return params


class _Checker:
    def __init__(self, raw: dict[str, Any], errors: dict[str, list[str]]):
        self.raw, self.errors = raw, errors

    def bad(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)

    # --- kinds

    def drill(self) -> dict[str, Any]:
        quick = self.raw.get("quick", True)
        if not isinstance(quick, bool):
            self.bad("quick", "must be true (a drill of about a minute) or false (the full drill)")
        return {"quick": quick}

    def snapshot(self) -> dict[str, Any]:
        return {"projection": self.projection()}

    def replay(self) -> dict[str, Any]:
        projection = self.projection()
        stream = self.stream_name()
        snapshot = self.snapshot_id(projection) if self.raw.get("snapshot") is not None else None
        if stream and snapshot is not None:
            self.bad("stream", "a single-stream repair replays that stream's events; it takes no snapshot")
        if stream and projection and not hasattr(get_projection(projection), "forget"):
            self.bad(
                "stream",
                f"{projection} cannot repair one stream (it has no forget step); replay it whole instead",
            )
        return {
            "projection": projection,
            "snapshot": snapshot,
            "stream": stream,
            "exclude": self.exclude(),
            "shards": 1 if stream else self.shards(projection),
        }

    def restore(self) -> dict[str, Any]:
        projection = self.projection()
        before = self.time("before")
        snapshot = None
        if self.raw.get("snapshot") is not None and before is not None:
            self.bad("before", "give a snapshot or a time to take the latest snapshot before, not both")
        elif self.raw.get("snapshot") is not None:
            snapshot = self.snapshot_id(projection)
        elif projection:
            snapshot = self.latest_snapshot(projection, before)
        return {
            "projection": projection,
            "snapshot": snapshot,
            "before": before,
            "exclude": self.exclude(),
            "shards": self.shards(projection),
        }

    def verify(self) -> dict[str, Any]:
        projection = self.projection()
        repair = self.raw.get("repair", False)
        if not isinstance(repair, bool):
            self.bad("repair", "must be true or false")
        return {"projection": projection, "repair": repair is True, "shards": self.shards(projection)}

    def resync(self) -> dict[str, Any]:
        sink = self.sink()
        streams = self.streams()
        from_time = self.time("from_time")
        from_position = self.raw.get("from_position")
        given = [field for field in ("from_position", "from_time") if self.raw.get(field) is not None]
        if len(given) > 1:
            self.bad("from_time", "give from_position or from_time, not both")
        if from_position is not None and (
            not isinstance(from_position, int) or isinstance(from_position, bool) or from_position < 0
        ):
            self.bad("from_position", "must be a whole number, 0 or more (0 re-sends from the first event)")
            from_position = None
        if from_position is None and from_time is not None:
            from_position = _position_before(dt.datetime.fromisoformat(from_time))
        if from_position is None:
            if not streams and not {"from_position", "from_time"} & set(self.errors):
                self.bad("from_position", "say where to start: from_position, from_time, or streams")
            from_position = 0
        rate = self.raw.get("rate_per_second")
        if rate is None and sink:
            rate = Consumer.objects.get(name=sink).sink.rate_per_second
        if rate is None:
            pass  # no sink to take the rate from: the sink's own error says what to fix
        elif not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 < rate <= MAX_RESYNC_RATE:
            self.bad("rate_per_second", f"must be a number above 0 and at most {MAX_RESYNC_RATE:g}")
            rate = None
        return {
            "sink": sink,
            "from_position": from_position,
            "from_time": from_time,
            "streams": streams,
            "rate_per_second": float(rate) if rate is not None else None,
            "exclude": self.exclude(),
            # Fixed now, so that an approval covers exactly these events; later ones reach the sink live.
            "up_to_position": selectors.head(),
        }

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
        if not Consumer.objects.filter(name=name, kind=Consumer.Kind.SINK).exists():
            self.bad("sink", f"no sink is named {name!r}")
            return None
        return name

    def stream_name(self) -> str | None:
        stream = self.raw.get("stream")
        if stream is None or stream == "":
            return None
        if not isinstance(stream, str) or not STREAM_NAME_RE.match(stream):
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


def _position_before(when: dt.datetime) -> int:
    """The position after which every event was recorded at or after `when`."""
    first = (
        Event.objects.filter(recorded_at__gte=when).order_by("position").values_list("position", flat=True)
    )
    found = first.first()
    return found - 1 if found is not None else selectors.head()


def has_exclusions(exclude: dict[str, Any]) -> bool:
    return bool(exclude) and any(exclude.get(field) for field in EXCLUDE_FIELDS)
