"""What the jobs and snapshots API reads and writes: small input and output serializers."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api import NOT_BLANK, ProblemOut
from recovery import approvals, services
from recovery.kinds import base as registry
from recovery.models import Approval, Job
from streams.projections import NAME_RE as PROJECTION_NAME_RE


class ProgressOut(serializers.Serializer):
    stage = serializers.CharField(help_text="Empty until the job starts; `done` when it has succeeded.")
    done = serializers.IntegerField(help_text="Events (or rows, for a snapshot) done in this stage.")
    total = serializers.IntegerField(allow_null=True, help_text="Null until the job knows it.")
    rate = serializers.FloatField(allow_null=True, help_text="Events per second in this stage.")
    eta_seconds = serializers.FloatField(allow_null=True)


class JobLogLineOut(serializers.Serializer):
    at = serializers.DateTimeField()
    level = serializers.CharField(help_text="info, warning or error.")
    message = serializers.CharField()


class ApprovalOut(serializers.Serializer):
    approver = serializers.CharField()
    decision = serializers.ChoiceField(choices=Approval.Decision.choices)
    params_sha256 = serializers.CharField(help_text="The parameters this decision was about.")
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="A yes stops counting then; a no is final.")
    valid = serializers.BooleanField(
        help_text="Counts now: a yes for the job's current parameters, unexpired, not by the requester."
    )


class JobOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=registry.choices())
    target = serializers.CharField(help_text="The projection or sink the job works on.")
    params = serializers.JSONField(help_text="Canonical: checked, with defaults filled in.")
    params_sha256 = serializers.CharField(help_text="sha256 of the canonical params (what is approved).")
    state = serializers.ChoiceField(choices=Job.State.choices)
    reason = serializers.CharField()
    requested_by = serializers.CharField()
    approvals = serializers.SerializerMethodField(
        help_text="Every decision on the job, oldest first; `valid` says which yes counts now."
    )
    approvals_required = serializers.SerializerMethodField(
        help_text="Valid approvals (by people other than the requester) its kind needs before it runs."
    )
    progress = ProgressOut(source="*")
    result = serializers.JSONField(help_text="What the job did, once it has succeeded; {} before.")
    error = serializers.CharField(help_text="Why it failed (or its last failed attempt); empty otherwise.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(
        allow_null=True, help_text="Last sign of life of the worker running it."
    )
    finished_at = serializers.DateTimeField(allow_null=True)
    cancel_requested_by = serializers.CharField(help_text="Who asked to cancel it; empty if nobody.")
    # One component for lists and the detail, so that the kind and state enums are named once.
    log = JobLogLineOut(
        many=True,
        required=False,
        help_text="Only in GET /jobs/{id}: the job's log, oldest first (its first 500 lines).",
    )

    @extend_schema_field(ApprovalOut(many=True))
    def get_approvals(self, job: Job) -> list[dict[str, Any]]:
        decisions = sorted(job.approvals.all(), key=lambda a: (a.created_at, a.pk))
        # Picked from the decisions read (prefetched for a list): no query per job.
        valid = {a.pk for a in approvals.counting(job, decisions)}
        for decision in decisions:
            decision.valid = decision.pk in valid
        return ApprovalOut(decisions, many=True).data

    def get_approvals_required(self, job: Job) -> int:
        return services.approvals_required(job.kind)


SAY_WHY = "say why this job should run (it is shown to whoever approves it)"


def reason_field(*, required: bool) -> serializers.Field:
    """Why a job should run: required (not blank) to request one, optional where it is only kept."""
    if not required:
        return serializers.CharField(
            required=False, allow_blank=True, default="", max_length=services.MAX_REASON
        )
    return serializers.RegexField(
        NOT_BLANK,
        max_length=services.MAX_REASON,
        help_text="Why it should run; shown to whoever approves it.",
        error_messages={"required": SAY_WHY, "blank": SAY_WHY, "invalid": SAY_WHY},
    )


class EstimateIn(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=registry.choices(),
        error_messages={
            "invalid_choice": f"'{{input}}' is not a job kind; use one of {', '.join(registry.names())}"
        },
    )
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Per kind — "
        + "; ".join(f"{kind.name}: {kind.params_help}" for kind in registry.kinds())
        + ". Params of the right form that name nothing known, or break a rule of the kind, are a 422.",
    )
    reason = reason_field(required=False)


class JobIn(EstimateIn):
    reason = reason_field(required=True)


SHA256 = r"^[0-9a-f]{64}$"
PASSWORD_HELP = (
    "Your password, when re-authentication is due: always for a token client; for a browser session "
    "unless it was given (or the login was) in the last REPLAYDESK_REAUTH_SECONDS (5 minutes)."
)


class ApproveIn(serializers.Serializer):
    params_sha256 = serializers.RegexField(
        SHA256,
        help_text="The params_sha256 of the job as you read it: the approval is for exactly those params.",
        error_messages={"invalid": "must be the job's params_sha256 (64 lowercase hex digits)"},
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=approvals.MAX_COMMENT
    )
    password = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, help_text=PASSWORD_HELP
    )


class RejectIn(serializers.Serializer):
    comment = serializers.RegexField(
        NOT_BLANK,
        max_length=approvals.MAX_COMMENT,
        help_text="Why it is rejected (required; the requester reads it).",
        error_messages={
            "required": "say why the job is rejected (the requester reads it)",
            "blank": "say why the job is rejected (the requester reads it)",
            "invalid": "say why the job is rejected (the requester reads it)",
        },
    )
    password = serializers.CharField(
        required=False, allow_blank=True, default="", trim_whitespace=False, help_text=PASSWORD_HELP
    )


class ChangeIn(serializers.Serializer):
    params = serializers.DictField(help_text="The new params, as in a request (same target).")


class BreakdownOut(serializers.Serializer):
    name = serializers.CharField(source="0")
    events = serializers.IntegerField(source="1")

    def to_representation(self, instance):
        name, events = instance
        return {"name": name, "events": events}


class EstimateOut(serializers.Serializer):
    params = serializers.JSONField(help_text="The canonical params the job would run with.")
    params_sha256 = serializers.CharField()
    events = serializers.IntegerField(help_text="Events it would apply or deliver.")
    streams = serializers.IntegerField(help_text="Streams those events belong to.")
    excluded = serializers.IntegerField(help_text="Events the exclusions would drop.")
    rate = serializers.FloatField(allow_null=True, help_text="Events per second expected.")
    seconds = serializers.FloatField(allow_null=True, help_text="How long it may take.")
    basis = serializers.CharField(help_text="Where the rate comes from: measured, or assumed.")
    breakdown = BreakdownOut(
        many=True, help_text="The events per stream, the most first (kinds that say: a write-back)."
    )
    notes = serializers.ListField(
        child=serializers.CharField(), help_text="What it would leave alone, and why."
    )


class SnapshotOut(serializers.Serializer):
    id = serializers.IntegerField()
    projection = serializers.CharField()
    name = serializers.CharField(help_text="Its directory in the snapshot store.")
    position = serializers.IntegerField(help_text="The log position the copy is consistent at.")
    version = serializers.IntegerField(help_text="The projection's version when it was taken.")
    taken_at = serializers.DateTimeField()
    rows = serializers.IntegerField()
    bytes = serializers.IntegerField()
    job = serializers.IntegerField(source="job_id", allow_null=True, help_text="The job that took it.")
    scheduled = serializers.BooleanField(help_text="Taken by the schedule (subject to retention).")


class SnapshotDetailOut(SnapshotOut):
    manifest = serializers.JSONField(help_text="Position, version, and each table's file, rows and sha256.")


class SnapshotIn(serializers.Serializer):
    projection = serializers.RegexField(
        PROJECTION_NAME_RE.pattern, help_text="A projection's name; one that is not known is a 422."
    )
    reason = reason_field(required=True)


class RollbackIn(serializers.Serializer):
    reason = reason_field(required=False)


class RollbackResultOut(serializers.Serializer):
    projection = serializers.CharField()
    schema = serializers.CharField(help_text="The schema now live (it holds what was the previous one).")


class JobConflictOut(ProblemOut):
    job = serializers.IntegerField(
        required=False, help_text="The job in the way, when another job holds the target."
    )
