"""Jobs and snapshots. The job row is the truth about a job; Celery only carries the nudges."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


def kind_choices() -> list[tuple[str, str]]:
    """Every registered job kind (recovery/kinds): a new kind needs no migration of this field."""
    from recovery.kinds.base import choices

    return choices()


STATE_TEXT = {
    "pending_approval": "waiting for approval",
    "approved": "approved, not queued yet",
    "queued": "queued",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "rejected": "rejected",
}


class Job(models.Model):
    # The kinds that ship, by name, for code that asks for one of them; the registry (recovery/kinds)
    # is what says which kinds there are.
    class Kind(models.TextChoices):
        SNAPSHOT = "snapshot"
        RESTORE = "restore"
        REPLAY = "replay"
        RESYNC = "resync"
        VERIFY = "verify"
        DRILL = "drill"

    class State(models.TextChoices):
        PENDING_APPROVAL = "pending_approval"
        APPROVED = "approved"
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        REJECTED = "rejected"

    # A job in one of these holds its target (projection or sink): one at a time per target.
    ACTIVE = (State.QUEUED, State.RUNNING)
    FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.REJECTED)

    kind = models.CharField(max_length=20, choices=kind_choices)
    # The projection or sink the job works on.
    target = models.CharField(max_length=60)
    # Canonical: validated, defaults filled in, so that the hash covers exactly what will run.
    params = models.JSONField()
    params_sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State.choices)
    reason = models.TextField()
    requested_by = models.CharField(max_length=150)
    # The account that asked (pages and API): the four-eyes rule compares accounts, not names, so a
    # rename does not make someone a stranger to their own request. None from the command line.
    requested_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Started by the console's schedule (recovery/schedule.py), not asked for by a person: its
    # snapshots are subject to retention. Not told by the requester's name, which a person may share.
    scheduled = models.BooleanField(default=False)
    created_at = models.DateTimeField(db_default=Now())
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by whichever slice is working, at most every 0.5 s; the reconciler reads it.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    stage = models.CharField(max_length=40, blank=True, default="")
    stage_started_at = models.DateTimeField(null=True, blank=True)
    done = models.BigIntegerField(default=0)
    # `done` when the stage began: the stage's rate and ETA count from here.
    stage_done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(null=True, blank=True)
    rate = models.FloatField(null=True, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    # Completed slices of the job's main line. A slice task carries the number it expects, so a
    # duplicated or stale delivery finds another number and does nothing.
    slice = models.IntegerField(default=0)
    # Failed slices in a row; past the cap the job fails (and can be retried from its checkpoint).
    failures = models.IntegerField(default=0)
    # What the runner needs between slices: the schema it builds, the positions it works between.
    work = models.JSONField(default=dict, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["target"],
                condition=Q(state__in=["queued", "running"]),
                name="recovery_job_one_active_per_target",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "heartbeat_at"], name="recovery_job_state_heartbeat"),
            models.Index(fields=["kind", "state", "id"], name="recovery_job_kind_state"),
            models.Index(fields=["target", "id"], name="recovery_job_target"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.kind} {self.target}, {self.state})"

    @property
    def state_text(self) -> str:
        """The state as pages and messages say it."""
        return STATE_TEXT.get(self.state, self.state)

    @property
    def finished(self) -> bool:
        return self.state in self.FINISHED


class JobLane(models.Model):
    """One shard of a job's parallel work: the streams whose id hashes to `lane`, each in sequence order.

    A lane's position moves in the same transaction as the effects of the events it covers, so a killed
    worker loses at most the batch it was in and never applies an event twice.
    """

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="lanes")
    lane = models.IntegerField()
    position = models.BigIntegerField()
    done = models.BigIntegerField(default=0)
    slice = models.IntegerField(default=0)
    finished = models.BooleanField(default=False)
    # When the lane last moved: the reconciler nudges a lane that stopped while others went on.
    moved_at = models.DateTimeField(db_default=Now())
    # A resync's delivery failures in a row and when it may try again.
    attempts = models.IntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "lane"], name="recovery_lane_once")]

    def __str__(self) -> str:
        return f"job {self.job_id} lane {self.lane}"


class JobFailure(models.Model):
    """A failed slice of a job (its main line or a lane), stamped by the database clock. The runner
    decides retries, the back-off after lost sessions and lanes failing together from these rows
    (recovery/runner/failures.py); the job's log says the same to people, and is never read back."""

    class Outcome(models.TextChoices):
        # Counted as one attempt of the job (MAX_FAILURES of them in a row fail it).
        ATTEMPT = "attempt"
        # Failed a moment after another part counted an attempt: the same cause, the same attempt.
        TOGETHER = "together"
        # The database ended the session: no failure of the work, tried again with a growing pause.
        LOST_SESSION = "lost_session"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="failure_rows")
    # "main line" or "lane N".
    part = models.CharField(max_length=40)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["job", "at"], name="recovery_failure_job_at")]

    def __str__(self) -> str:
        return f"job {self.job_id} {self.part}: {self.outcome}"


class JobLogLine(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_lines")
    at = models.DateTimeField(db_default=Now())
    level = models.CharField(max_length=10, default="info")
    message = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["job", "id"], name="recovery_log_job")]

    def __str__(self) -> str:
        return self.message


class Snapshot(models.Model):
    """The catalogue of the snapshot store; the files under REPLAYDESK_SNAPSHOT_DIR are the snapshot,
    and their checksums are checked again whenever one is used."""

    projection = models.CharField(max_length=60)
    # The directory under <snapshot dir>/<projection>/.
    name = models.CharField(max_length=200)
    position = models.BigIntegerField()
    version = models.IntegerField()
    taken_at = models.DateTimeField()
    rows = models.BigIntegerField()
    bytes = models.BigIntegerField()
    manifest = models.JSONField()
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Taken by the schedule (subject to retention) or asked for by someone (kept until deleted).
    scheduled = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["projection", "name"], name="recovery_snapshot_name"),
        ]
        indexes = [models.Index(fields=["projection", "-taken_at"], name="recovery_snapshot_taken")]

    def __str__(self) -> str:
        return f"{self.projection}/{self.name}"


class Approval(models.Model):
    """One person's yes or no to a job, bound to the sha256 of the parameters they saw: a job whose
    parameters change needs new approvals. A yes counts until `expires_at`."""

    class Decision(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="approvals")
    approver = models.CharField(max_length=150)
    approver_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    params_sha256 = models.CharField(max_length=64)
    comment = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            # One yes per person per version of the parameters: a replayed POST adds nothing.
            models.UniqueConstraint(
                fields=["job", "approver", "params_sha256"],
                condition=Q(decision="approve"),
                name="recovery_approval_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.approver} {self.decision}s job {self.job_id}"
