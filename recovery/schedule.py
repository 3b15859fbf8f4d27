"""Jobs the console starts by itself: scheduled snapshots with retention, and a nightly verification.

Settings (environment): REPLAYDESK_SNAPSHOT_EVERY_MINUTES (60; 0 turns scheduled snapshots off),
REPLAYDESK_SNAPSHOT_KEEP (24 scheduled snapshots per projection; those asked for by a person are kept
until deleted), REPLAYDESK_VERIFY_NIGHTLY_AT ("HH:MM" UTC; empty, the default, turns it off).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from recovery import services, snapshot_store
from recovery.models import Job, Snapshot
from streams.projections import projections, read_checkpoint

STAGING_MAX_AGE_SECONDS = 3600


def run_schedule(*, now: dt.datetime | None = None) -> list[Job]:
    now = now or timezone.now()
    started = [*_due_snapshots(now), *_due_verifications(now)]
    prune()
    return started


def _due_snapshots(now: dt.datetime) -> list[Job]:
    every = settings.REPLAYDESK_SNAPSHOT_EVERY_MINUTES
    if every <= 0:
        return []
    started = []
    for projection in projections().values():
        if read_checkpoint(projection) is None:
            continue  # nothing to copy yet
        latest = (
            Snapshot.objects.filter(projection=projection.name, scheduled=True).order_by("-taken_at").first()
        )
        if latest is not None and latest.taken_at > now - dt.timedelta(minutes=every):
            continue
        if _asked_since(Job.Kind.SNAPSHOT, projection.name, now - dt.timedelta(minutes=every)):
            continue
        started += _request(
            Job.Kind.SNAPSHOT, projection.name, f"scheduled snapshot (every {every:g} minutes)"
        )
    return started


def _due_verifications(now: dt.datetime) -> list[Job]:
    at = settings.REPLAYDESK_VERIFY_NIGHTLY_AT
    if not at:
        return []
    hour, minute = (int(part) for part in at.split(":"))
    today = now.astimezone(dt.UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    if now < today:
        return []
    started = []
    for projection in projections().values():
        if read_checkpoint(projection) is None or _asked_since(Job.Kind.VERIFY, projection.name, today):
            continue
        started += _request(Job.Kind.VERIFY, projection.name, f"nightly verification ({at} UTC)")
    return started


def _asked_since(kind: str, target: str, since: dt.datetime) -> bool:
    return Job.objects.filter(kind=kind, target=target, scheduled=True, created_at__gte=since).exists()


def _request(kind: str, projection: str, reason: str) -> list[Job]:
    try:
        return [
            services.request_job(
                kind=kind,
                params={"projection": projection},
                requested_by=services.SCHEDULER,
                reason=reason,
                scheduled=True,
            )
        ]
    except services.JobConflict:
        return []  # another job has the projection; the next run of the schedule tries again


def prune() -> list[str]:
    """Drop scheduled snapshots beyond the retention count, and half-written ones a killed job left."""
    keep = settings.REPLAYDESK_SNAPSHOT_KEEP
    store = snapshot_store.configured()
    dropped = []
    for projection in Snapshot.objects.values_list("projection", flat=True).distinct():
        old = Snapshot.objects.filter(projection=projection, scheduled=True).order_by("-taken_at")[keep:]
        for snapshot in list(old):
            with transaction.atomic():
                snapshot.delete()
                store.delete(snapshot.projection, snapshot.name)
            dropped.append(f"{snapshot.projection}/{snapshot.name}")
    store.prune_unfinished(older_than=STAGING_MAX_AGE_SECONDS)
    return dropped
