"""write_back: after a source's own database was restored from an old backup, write the events it lost
back into it from the copy, through the source's own write path, then follow it on.

The plan, made again at the start of every slice (so a killed worker loses nothing and a second run
writes nothing): for each stream the copy holds from the source, the source's last event in it (its
tail). A tail below the copy's version, and the copy's own event at that sequence (same id, type and
data), means the stream lost the events after it: they are written back. A tail that is not the copy's
event there means the source's writers wrote to the stream since the restore, otherwise than before: a
conflict, written nowhere, reported. A source ahead of the copy in a stream is left to the follower.
Events are written in the log's order, a batch per transaction of the source, each through the kind's
writer (the eventsourcing library's recorder, Message DB's write_message, INSERTs into a named table).

Then the source's copied position is moved back to the last position where the source and the copy
still agree (found by bisection: below it the source is what was copied, above it only what it was
given since the restore and what was written back): the follower reads on from there, copies what the
source's writers wrote since the restore (parking what conflicts), and passes over what was written
back, which the log holds already.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.db import connection, transaction
from django.db.models import F
from django.urls import reverse

from core.audit import AuditType
from recovery import runner
from recovery.forms import source_field
from recovery.kinds.backfill import TARGET_PREFIX, with_source
from recovery.kinds.base import DryRun, JobKind, Step, register
from recovery.models import Job
from recovery.params import Checker, JobParamsError
from streams import audit, source_connect, source_follow, source_kinds, source_services
from streams.consumer_links import Link
from streams.models import Source, SourceParkedEvent
from streams.source_kinds import SourceError, SourceEvent, SourceWriter

# Streams whose tails are asked of the source at once, and events written in one of its transactions.
STREAMS_AT_ONCE = 1000
BATCH = 500
# Of the streams written back, the result lists this many (the most events first).
LISTED = 50


@dataclass
class Plan:
    # Stream → the sequence after which the source lacks the copy's events, and how many.
    after: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    # Stream → why nothing is written to it.
    conflicts: dict[str, str] = field(default_factory=dict)
    # Streams in which the source has more than the copy (the follower copies or parks it).
    ahead: int = 0

    @property
    def events(self) -> int:
        return sum(self.missing.values())


@register
class WriteBack(JobKind):
    name = "write_back"
    position = 75
    help = (
        "After a source's database was restored from an old backup: write the events it lost back into it "
        "from the copy, through its own write path, then follow it on."
    )
    params_help = "source"
    fields = frozenset({"source"})
    approvals = 1
    counts_events = False
    result_template = "recovery/results/write_back.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        name = checker.source_name()
        source = Source.objects.filter(name=name).first() if name else None
        if source is not None and (missing := source_services.write_dsn_missing(source)):
            checker.bad("source", missing)
        return {"source": name}

    def target(self, params: dict[str, Any]) -> str:
        return f"{TARGET_PREFIX}{params['source']}"

    def target_url(self, target: str) -> str:
        return reverse("streams:source", args=[target.removeprefix(TARGET_PREFIX)])

    def form_fields(self) -> dict[str, forms.Field]:
        return {"source": source_field()}

    def source_links(self, source: str) -> list[Link]:
        query = urlencode({"kind": self.name, "source": source})
        return [Link("Write back", f"{reverse('recovery:job-new')}?{query}")]

    def unmeasured_rate(self) -> tuple[float | None, str]:
        return None, "no write-back has finished yet to measure"

    def dry_run(self, params: dict[str, Any]) -> DryRun:
        source = Source.objects.get(name=params["source"])
        try:
            with _writer(source) as writer:
                plan = make_plan(source, writer)
        except SourceError as exc:
            raise JobParamsError({"source": [str(exc)]}) from None
        notes = [f"{stream}: not written ({why})" for stream, why in sorted(plan.conflicts.items())]
        if plan.ahead:
            notes.append(
                f"{plan.ahead} streams hold more in the source than in the copy: the follower copies it"
            )
        return DryRun(
            events=plan.events,
            streams=len(plan.missing),
            breakdown=sorted(plan.missing.items(), key=lambda item: (-item[1], item[0])),
            notes=notes,
        )

    def summary(self, job: Job) -> list[str]:
        r = job.result
        lines = [
            f"wrote {r['written']:,} events back into {r['source']} in {r['streams']:,} streams; it is "
            f"followed on from its position {r['position']:,}"
        ]
        lines += [f"  {stream}: not written ({why})" for stream, why in sorted(r["conflicts"].items())]
        return lines

    def exit_error(self, job: Job) -> tuple[int, str] | None:
        if job.result.get("conflicts"):
            return 2, "streams in conflict were not written back: resolve them by hand"
        return None

    def main(self, job: Job, deadline: float) -> Step:
        def write(source: Source) -> Step:
            with _writer(source) as writer:
                return self._write(job, source, writer, deadline)

        return with_source(job.params["source"], deadline, write)

    def _write(self, job: Job, source: Source, writer: SourceWriter, deadline: float) -> Step:
        plan = make_plan(source, writer)
        if not job.stage:
            with transaction.atomic():
                work = {"planned": plan.missing, "conflicts": plan.conflicts, "ahead": plan.ahead}
                runner.set_stage(job, "writing", total=plan.events, work=work)
        after = 0
        while plan.missing:
            if runner.cancel_requested(job) or time.monotonic() > deadline:
                return Step.AGAIN
            batch = log_events(plan.after, after=after, limit=BATCH)
            if not batch:
                break
            writer.write(batch)
            after = batch[-1].position
            Job.objects.filter(pk=job.pk).update(done=F("done") + len(batch))
            runner.report(job)
        return self._finish(job, source)

    def _finish(self, job: Job, source: Source) -> Step:
        kind = source_kinds.get(source.kind)
        dsn = source_connect.dsn_of(dsn_encrypted=source.dsn_encrypted, dsn_env=source.dsn_env)
        with source_connect.connect(dsn) as reader:
            position, at, top = agreed_position(source, kind, reader)
        job.refresh_from_db(fields=["done", "work"])
        planned = job.work.get("planned", {})
        listed = sorted(planned.items(), key=lambda item: (-item[1], item[0]))[:LISTED]
        result = {
            "source": source.name,
            "written": job.done,
            "streams": len(planned),
            "per_stream": listed,
            "conflicts": job.work.get("conflicts", {}),
            "ahead": job.work.get("ahead", 0),
            "position": position,
            "from_position": source.position,
        }
        with transaction.atomic():
            locked = Source.objects.select_for_update().get(pk=source.pk)
            locked.position = position
            locked.position_stream = at.stream[:500] if at else ""
            locked.position_sequence = at.sequence if at else None
            # Everything up to there is what was copied; what lies above is read again, settled anew.
            locked.final_through = position
            locked.settle_through = locked.settle_seen_at = locked.settle_xmax = None
            locked.head, locked.last_error = top, ""
            locked.save()
            audit.record(
                subject=f"source.{source.name}",
                type=AuditType.SOURCE_WRITTEN_BACK,
                actor=job.requested_by,
                data={
                    "source": source.name,
                    "job": job.pk,
                    "written": job.done,
                    "streams": len(planned),
                    "conflicts": sorted(result["conflicts"]),
                    "position": {"from": source.position, "to": position},
                },
            )
            message = f"{job.done} events written back into {source.name}"
            runner.finish(job, result=result, message=message)
            transaction.on_commit(lambda: _follow_on(source.name))
        return Step.DONE


def _writer(source: Source) -> SourceWriter:
    kind = source_kinds.get(source.kind)
    if kind is None:
        raise SourceError(f"no source kind is named {source.kind!r} in this code")
    writer = kind.writer(source_services.write_dsn_of(source), source.options)
    try:
        writer.check_access()
    except BaseException:
        writer.close()
        raise
    return writer


def _follow_on(name: str) -> None:
    from streams.tasks import enqueue_source

    enqueue_source(name)


# --- the plan


def make_plan(source: Source, writer: SourceWriter) -> Plan:
    """What the source lacks of the copy, stream by stream (see the module's docstring)."""
    plan = Plan()
    last_id = 0
    while True:
        streams = _copied_streams(source, after_id=last_id)
        if not streams:
            return plan
        last_id = streams[-1][0]
        versions = {name: version for _, name, version in streams}
        tails = writer.tails(list(versions))
        ours = _log_events_at({name: tails[name].sequence for name in versions if name in tails})
        for name, version in versions.items():
            tail = tails.get(name)
            have = (tail.sequence or 0) if tail else 0
            if have > version:
                plan.ahead += 1
                continue
            if tail is not None and not _same(tail, ours.get(name)):
                plan.conflicts[name] = (
                    f"the source's sequence {have} of it is not the copy's: written since the restore?"
                )
                continue
            if have < version:
                plan.after[name], plan.missing[name] = have, version - have


def _copied_streams(source: Source, *, after_id: int) -> list[tuple[int, str, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, name, version FROM streams_stream WHERE source_id = %s AND id > %s"
            " ORDER BY id LIMIT %s",
            [source.pk, after_id, STREAMS_AT_ONCE],
        )
        return cursor.fetchall()


def _log_events_at(sequences: dict[str, int]) -> dict[str, tuple]:
    """The log's event at the given sequence of each stream: (id, type, data)."""
    if not sequences:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT s.name, e.id, e.type, e.data
              FROM unnest(%s::text[], %s::bigint[]) AS m(name, sequence)
              JOIN streams_stream s ON s.name = m.name
              JOIN streams_event e ON e.stream_id = s.id AND e.sequence = m.sequence
            """,
            [list(sequences), list(sequences.values())],
        )
        return {name: (id_, type_, _json(data)) for name, id_, type_, data in cursor.fetchall()}


def _same(tail: SourceEvent, ours: tuple | None) -> bool:
    return ours is not None and (tail.id, tail.type, tail.data) == ours


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def log_events(after_sequence: dict[str, int], *, after: int, limit: int) -> list[SourceEvent]:
    """The copy's events the source lacks (those of each stream after its sequence there), in the log's
    order after log position `after`, as the source's writer takes them: without the log's own
    metadata of where they were copied from."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.position, s.name, e.sequence, e.id, e.type, e.data, e.metadata, e.recorded_at
              FROM unnest(%s::text[], %s::bigint[]) AS m(name, after)
              JOIN streams_stream s ON s.name = m.name
              JOIN streams_event e ON e.stream_id = s.id AND e.sequence > m.after
             WHERE e.position > %s
             ORDER BY e.position
             LIMIT %s
            """,
            [list(after_sequence), list(after_sequence.values()), after, limit],
        )
        rows = cursor.fetchall()
    events = []
    for position, stream, sequence, id_, type_, data, metadata, recorded_at in rows:
        metadata = _json(metadata) or {}
        metadata.pop(source_follow.METADATA_KEY, None)
        events.append(
            SourceEvent(
                position=position,
                stream=stream,
                sequence=sequence,
                id=id_,
                type=type_,
                data=_json(data),
                metadata=metadata,
                recorded_at=recorded_at,
            )
        )
    return events


# --- where following goes on


def agreed_position(source: Source, kind, reader) -> tuple[int, SourceEvent | None, int]:
    """The last position at which the source holds the event the copy took from there, that event, and
    the source's top. Bisection over the source's positions: below the restore's point every event is
    the one copied; above it the source holds only what it was given since."""
    read = kind.read(reader, source.options, after=0, limit=1)
    top = read.top
    low, agreed, high = 0, None, min(top, source.position)
    while low < high:
        middle = (low + high + 1) // 2
        found = kind.read(reader, source.options, after=middle - 1, limit=1).events
        event = found[0] if found else None
        if event is not None and event.position <= high and _copied_there(source, event):
            low, agreed = event.position, event
        else:
            high = middle - 1
    return low, agreed, top


def _copied_there(source: Source, event: SourceEvent) -> bool:
    """The copy took this very event from this position (or parked it)."""
    parked = SourceParkedEvent.objects.filter(source=source, position=event.position).first()
    if parked is not None:
        return (parked.stream, parked.sequence) == (event.stream[:500], event.sequence)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.id, e.type, e.data, e.metadata -> %s ->> 'position'
              FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id
             WHERE s.name = %s AND e.sequence = %s AND s.source_id = %s
            """,
            [source_follow.METADATA_KEY, event.stream, event.sequence, source.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    id_, type_, data, position = row
    return position == str(event.position) and (event.id, event.type, event.data) == (id_, type_, _json(data))
