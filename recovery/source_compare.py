"""The comparison behind the verify_source job (recovery/kinds/source_verify.py): a source's events and
its copy's, per stream (counts and a sum of digests) and event by event (what is missing in the copy,
extra in it, or different), kept between slices in job.work."""

from __future__ import annotations

import bisect
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from streams import source_follow, source_kinds
from streams.models import Source, SourceParkedEvent
from streams.selectors import jsonb_value
from streams.source_kinds import SourceEvent

# Streams that differ, listed in the result with their counts (all of them are counted).
STREAMS_LISTED = 100
SUM_MODULUS = 2**256


def digest(event_id: Any, sequence: Any, type_: str, data: Any) -> int:
    """The same on both sides: the event's id, sequence, type and data (canonical JSON)."""
    text = f"{event_id}\n{sequence}\n{type_}\n{canonical(data)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Found:
    """What the job has found so far; `dump` and `load` keep it in job.work between slices."""

    through: int
    beyond: int | None
    phase: str = "source"
    # How far each side has been read: a position in the source, a position in the log.
    source_after: int = 0
    copy_after: int = 0
    done: int = 0
    parked: int = 0
    # stream → [events, sum of digests, sequences as [first, last] runs]; the copy's without runs.
    source: dict[str, list] = field(default_factory=dict)
    copy: dict[str, list] = field(default_factory=dict)
    # stream → [missing, extra, different]
    differences: dict[str, list[int]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # Copy events matched by id to a source event of another stream or sequence: not extra.
    moved: set[int] = field(default_factory=set)

    def dump(self) -> dict[str, Any]:
        return {
            "through": self.through,
            "beyond": self.beyond,
            "phase": self.phase,
            "source_after": self.source_after,
            "copy_after": self.copy_after,
            "done": self.done,
            "parked": self.parked,
            "source": {name: [n, f"{total:x}", runs] for name, (n, total, runs) in self.source.items()},
            "copy": {name: [n, f"{total:x}"] for name, (n, total) in self.copy.items()},
            "differences": self.differences,
            "samples": self.samples,
            "moved": sorted(self.moved),
        }

    @classmethod
    def load(cls, work: dict[str, Any]) -> Found:
        return cls(
            through=work["through"],
            beyond=work["beyond"],
            phase=work["phase"],
            source_after=work["source_after"],
            copy_after=work["copy_after"],
            done=work["done"],
            parked=work["parked"],
            source={name: [n, int(total, 16), runs] for name, (n, total, runs) in work["source"].items()},
            copy={name: [n, int(total, 16)] for name, (n, total) in work["copy"].items()},
            differences=work["differences"],
            samples=work["samples"],
            moved=set(work["moved"]),
        )

    def differ(self, what: str, stream: str, sequence: Any, position: Any, limit: int, **more: Any) -> None:
        counts = self.differences.setdefault(stream, [0, 0, 0])
        counts[("missing", "extra", "different").index(what)] += 1
        if len(self.samples) < limit:
            self.samples.append(
                {"what": what, "stream": stream, "sequence": sequence, "position": position, **more}
            )

    def result(self, name: str) -> dict[str, Any]:
        differing = []
        for stream in sorted(self.source.keys() | self.copy.keys()):
            ours, theirs = self.source.get(stream, [0, 0, []]), self.copy.get(stream, [0, 0])
            if ours[0] != theirs[0] or ours[1] != theirs[1]:
                missing, extra, different = self.differences.get(stream, [0, 0, 0])
                differing.append(
                    {
                        "stream": stream,
                        "source_events": ours[0],
                        "copy_events": theirs[0],
                        "missing": missing,
                        "extra": extra,
                        "different": different,
                    }
                )
        totals = [sum(counts[i] for counts in self.differences.values()) for i in range(3)]
        return {
            "source": name,
            "position": self.through,
            "equal": not differing,
            "streams": len(self.source.keys() | self.copy.keys()),
            "source_events": sum(n for n, _, _ in self.source.values()),
            "copy_events": sum(n for n, _ in self.copy.values()),
            "parked": self.parked,
            "beyond": self.beyond,
            "streams_differing": len(differing),
            "differing": differing[:STREAMS_LISTED],
            "missing": totals[0],
            "extra": totals[1],
            "different": totals[2],
            "samples": self.samples,
        }


def read_source(
    found: Found, source: Source, kind: source_kinds.SourceKind, reader, batch: int, limit: int
) -> bool:
    """One batch of the source, compared with the copy event by event. True when it is all read."""
    read = kind.read(reader, source.options, after=found.source_after, limit=batch)
    events = [event for event in read.events if event.position > found.source_after]
    within = [event for event in events if event.position <= found.through]
    if not within:
        return True
    parked = set(
        SourceParkedEvent.objects.filter(
            source=source,
            position__gt=found.source_after,
            position__lte=within[-1].position,
            state__in=[SourceParkedEvent.State.PARKED, SourceParkedEvent.State.SKIPPED],
        ).values_list("position", flat=True)
    )
    compared = [event for event in within if event.position not in parked]
    found.parked += len(within) - len(compared)
    for event in compared:
        sums = found.source.setdefault(event.stream, [0, 0, []])
        sums[0] += 1
        sums[1] = (sums[1] + digest(event.id, event.sequence, event.type, event.data)) % SUM_MODULUS
        add_sequence(sums[2], event.sequence or 0)
    _look_up(found, source, compared, limit)
    found.source_after = within[-1].position
    found.done += len(within)
    return len(within) < len(events) or len(read.events) < batch or found.source_after >= found.through


@dataclass(frozen=True)
class Copied:
    position: int
    stream: str
    sequence: int
    id: uuid.UUID
    type: str
    data: Any


def _look_up(found: Found, source: Source, events: list[SourceEvent], limit: int) -> None:
    """Each source event's copy, by id, else by stream and sequence."""
    columns = "e.position, s.name, e.sequence, e.id, e.type, e.data"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id"
            " WHERE e.id = ANY(%s) AND s.source_id = %s",
            [[event.id for event in events if event.id is not None], source.pk],
        )
        by_id = {row.id: row for row in map(_copied, cursor.fetchall())}
        rest = [event for event in events if event.id not in by_id]
        cursor.execute(
            f"SELECT {columns} FROM unnest(%s::text[], %s::bigint[]) AS k(name, sequence)"
            " JOIN streams_stream s ON s.name = k.name AND s.source_id = %s"
            " JOIN streams_event e ON e.stream_id = s.id AND e.sequence = k.sequence",
            [[event.stream for event in rest], [event.sequence for event in rest], source.pk],
        )
        by_key = {(row.stream, row.sequence): row for row in map(_copied, cursor.fetchall())}
    for event in events:
        copy = by_id.get(event.id) or by_key.get((event.stream, event.sequence))
        if copy is None:
            found.differ("missing", event.stream, event.sequence, event.position, limit)
            continue
        if (copy.stream, copy.sequence) != (event.stream, event.sequence):
            found.moved.add(copy.position)
        differing = [
            name
            for name, ours, theirs in (
                ("stream", event.stream, copy.stream),
                ("id", event.id, copy.id),
                ("sequence", event.sequence, copy.sequence),
                ("type", event.type, copy.type),
                ("data", canonical(event.data), canonical(copy.data)),
            )
            if ours != theirs
        ]
        if differing:
            found.differ("different", event.stream, event.sequence, event.position, limit, fields=differing)


def _copied(row: tuple) -> Copied:
    position, stream, sequence, event_id, type_, data = row
    return Copied(position, stream, sequence, event_id, type_, jsonb_value(data))


def read_copy(found: Found, source: Source, batch: int, limit: int) -> bool:
    """One batch of the copy in log order; an event the source has no event for is extra. True when it
    is all read."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.position, s.name, e.sequence, e.id, e.type, e.data,
                   (e.metadata -> %s ->> 'position')::bigint
              FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
             WHERE s.source_id = %s AND e.position > %s
               AND COALESCE((e.metadata -> %s ->> 'position')::bigint, 0) <= %s
             ORDER BY e.position
             LIMIT %s
            """,
            [
                source_follow.METADATA_KEY,
                source.pk,
                found.copy_after,
                source_follow.METADATA_KEY,
                found.through,
                batch,
            ],
        )
        rows = cursor.fetchall()
    for *columns, position in rows:
        copy = _copied(tuple(columns))
        sums = found.copy.setdefault(copy.stream, [0, 0])
        sums[0] += 1
        sums[1] = (sums[1] + digest(copy.id, copy.sequence, copy.type, copy.data)) % SUM_MODULUS
        theirs = found.source.get(copy.stream)
        in_source = theirs is not None and has_sequence(theirs[2], copy.sequence)
        if not in_source and copy.position not in found.moved:
            found.differ("extra", copy.stream, copy.sequence, position, limit)
    if rows:
        found.copy_after = rows[-1][0]
    found.done += len(rows)
    return len(rows) < batch


def add_sequence(runs: list[list[int]], sequence: int) -> None:
    """Runs of consecutive sequences, sorted: [[1, 40]] for a stream of 40 events without a hole."""
    if runs and runs[-1][1] + 1 == sequence:
        runs[-1][1] = sequence
        return
    if not runs or sequence > runs[-1][1]:
        runs.append([sequence, sequence])
        return
    if has_sequence(runs, sequence):
        return
    at = bisect.bisect_left([first for first, _ in runs], sequence)
    runs.insert(at, [sequence, sequence])
    merged: list[list[int]] = []
    for run in runs:
        if merged and merged[-1][1] + 1 >= run[0]:
            merged[-1][1] = max(merged[-1][1], run[1])
        else:
            merged.append(run)
    runs[:] = merged


def has_sequence(runs: list[list[int]], sequence: int) -> bool:
    at = bisect.bisect_right([first for first, _ in runs], sequence) - 1
    return at >= 0 and runs[at][0] <= sequence <= runs[at][1]
