"""verify_source: compare a source with Replaydesk's copy of it, stream by stream, up to the position the
copy has reached, and say what differs (docs/sources.md, Verifying a source).

It reads the source through its kind (in the source's order, a batch at a time) and then the copy (the
log's events of the source's streams, in log order). For each stream it counts the events on each side
and sums a digest of each (sha256 of its id, sequence, type and canonical JSON data; a sum modulo 2**256,
so the order the events are read in does not matter, their sequences being part of what is summed). A
stream is equal when its counts and sums are. Event by event, each source event is looked up in the copy
by id, then by stream and sequence (missing, or different: which of id, sequence, type and data), and
each copy event the source has no event for is extra; a few of each are kept as samples.

Events past the copied position (`Source.position` when the job starts) are not copied yet, so not
differences: they are counted as beyond. Events parked and not resolved (parked, or skipped) are not in
the copy by design: they are counted as parked.

The comparison is recovery/source_compare.py. What it has found is kept in `job.work` at the end of each
slice (and when it turns from the source to the copy), with the positions it has read to; a slice that
dies starts again from there, so a killed worker costs at most a slice and counts nothing twice. The work
holds a few numbers per stream of the source (a source of millions of streams makes it large), and the
source's sequences as runs ([[1, 40]] for a stream without a hole).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.db import connection, transaction
from django.urls import reverse

from recovery import runner
from recovery.forms import number_input, source_field
from recovery.kinds.backfill import TARGET_PREFIX
from recovery.kinds.base import JobKind, Step, register
from recovery.kinds.common import FinalError
from recovery.models import Job
from recovery.params import Checker
from recovery.source_compare import Found, read_copy, read_source
from streams import source_connect, source_kinds
from streams.consumer_links import Link
from streams.models import Source
from streams.source_kinds import SourceError

if TYPE_CHECKING:
    import psycopg

DEFAULT_SAMPLES = 10
MAX_SAMPLES = 100


@register
class SourceVerify(JobKind):
    name = "verify_source"
    position = 75
    help = "Compare a source with its copy in the log, stream by stream, and show samples of what differs."
    params_help = f"source, samples (default {DEFAULT_SAMPLES}, at most {MAX_SAMPLES})"
    fields = frozenset({"source", "samples"})
    approvals = 0
    counts_events = False
    result_template = "recovery/results/source_verify.html"

    def check(self, checker: Checker) -> dict[str, Any]:
        source = checker.source_name()
        samples = checker.raw.get("samples", DEFAULT_SAMPLES)
        if not isinstance(samples, int) or isinstance(samples, bool) or not 0 <= samples <= MAX_SAMPLES:
            checker.bad("samples", f"must be a whole number from 0 to {MAX_SAMPLES}")
        return {"source": source, "samples": samples}

    def target(self, params: dict[str, Any]) -> str:
        return f"{TARGET_PREFIX}{params['source']}"

    def target_url(self, target: str) -> str:
        return reverse("streams:source", args=[target.removeprefix(TARGET_PREFIX)])

    def form_fields(self) -> dict[str, forms.Field]:
        return {
            "source": source_field(),
            "samples": forms.IntegerField(
                label="Samples",
                required=False,
                widget=number_input(),
                help_text=f"Of what differs, at most {MAX_SAMPLES}; blank: {DEFAULT_SAMPLES}.",
            ),
        }

    def source_links(self, source: str) -> list[Link]:
        query = urlencode({"kind": self.name, "source": source})
        return [Link("Verify", f"{reverse('recovery:job-new')}?{query}")]

    def unmeasured_rate(self) -> tuple[float | None, str]:
        return None, "no source verify has finished yet to measure"

    # --- what it did

    def summary(self, job: Job) -> list[str]:
        r = job.result
        counted = f"{r['streams']:,} streams, {r['source_events']:,} events in the source"
        notes = f"{r['parked']:,} parked in the source, not copied by design"
        notes += "" if r["beyond"] is None else f"; {r['beyond']:,} beyond that position, not copied yet"
        if r["equal"]:
            agree = f"{r['source']} and its copy agree up to its position {r['position']:,}"
            return [f"{agree}: {counted}", notes]
        lines = [
            f"{r['source']} and its copy differ up to its position {r['position']:,}: "
            f"{r['streams_differing']:,} of {r['streams']:,} streams ({r['source_events']:,} events in the "
            f"source, {r['copy_events']:,} in the copy; {r['missing']:,} missing in the copy, "
            f"{r['extra']:,} extra, {r['different']:,} different)",
            notes,
        ]
        for stream in r["differing"]:
            lines.append(
                f"  {stream['stream']}: {stream['source_events']:,} in the source, {stream['copy_events']:,} "
                f"in the copy ({stream['missing']} missing, {stream['extra']} extra, "
                f"{stream['different']} different)"
            )
        if r["samples"]:
            lines.append("samples:")
            lines += [f"  {describe(sample)}" for sample in r["samples"]]
        return lines

    def exit_error(self, job: Job) -> tuple[int, str] | None:
        if not job.result.get("equal"):
            # Like diff(1), and the projection verify: a script sees the difference in the exit code.
            return 2, f"the copy of {job.result['source']} differs from the source"
        return None

    # --- the work

    def main(self, job: Job, deadline: float) -> Step:
        name = job.params["source"]
        source = Source.objects.filter(name=name).first()
        if source is None:
            raise FinalError(f"no source is named {name!r} any more")
        kind = source_kinds.get(source.kind)
        if kind is None:
            raise FinalError(f"no source kind is named {source.kind!r} in this code")
        try:
            dsn = source_connect.dsn_of(dsn_encrypted=source.dsn_encrypted, dsn_env=source.dsn_env)
            with source_connect.connect(dsn) as reader:
                return self._work(job, source, kind, reader, deadline)
        except SourceError as exc:
            raise FinalError(str(exc)) from exc

    def _work(
        self, job: Job, source: Source, kind: source_kinds.SourceKind, reader: psycopg.Connection, deadline
    ) -> Step:
        if not job.stage:
            self._start(job, source, kind, reader)
        found = Found.load(job.work)
        Job.objects.filter(pk=job.pk).update(done=found.done)  # what a killed slice did is done again
        batch = settings.REPLAYDESK_SOURCE_BATCH
        while not runner.cancel_requested(job):  # a batch at least, however short the slice
            if found.phase == "source":
                if read_source(found, source, kind, reader, batch, job.params["samples"]):
                    found.phase = "copy"
                    with transaction.atomic():
                        runner.set_stage(job, "reading the copy", work=found.dump())
            elif read_copy(found, source, batch, job.params["samples"]):
                return self._finish(job, source, found)
            Job.objects.filter(pk=job.pk).update(done=found.done)
            runner.report(job)
            if time.monotonic() >= deadline:
                break
        Job.objects.filter(pk=job.pk).update(work=found.dump(), done=found.done)
        return Step.AGAIN

    def _start(self, job: Job, source: Source, kind: source_kinds.SourceKind, reader) -> None:
        through = source.position
        beyond = kind.count(reader, source.options, after=through)
        everything = kind.count(reader, source.options, after=0) if beyond is not None else None
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM streams_event e JOIN streams_stream s ON s.id = e.stream_id"
                " WHERE s.source_id = %s",
                [source.pk],
            )
            copied = cursor.fetchone()[0]
        total = everything - beyond + copied if everything is not None else None
        found = Found(through=through, beyond=beyond)
        with transaction.atomic():
            runner.set_stage(job, "reading the source", total=total, work=found.dump())
        job.work = found.dump()

    def _finish(self, job: Job, source: Source, found: Found) -> Step:
        result = found.result(source.name)
        message = (
            f"{source.name} and its copy agree up to its position {found.through}"
            if result["equal"]
            else f"{source.name} and its copy differ in {result['streams_differing']} streams"
        )
        with transaction.atomic():
            Job.objects.filter(pk=job.pk).update(done=found.done, work={})
            runner.finish(job, result=result, message=message)
        return Step.DONE


def describe(sample: dict[str, Any]) -> str:
    where = f"{sample['stream']} sequence {sample['sequence']} (source position {sample['position']})"
    if sample["what"] == "different":
        return f"different {', '.join(sample['fields'])}: {where}"
    return f"{sample['what']} in the copy: {where}"
