"""The console's own audit trail: events in the store itself, category `console` (docs/architecture.md,
The audit trail).

What is shared by every app: the category, the event types, and how a user becomes an audit subject.
The writer is `streams.audit.record` (it appends to the store); the chain that makes edits behind the
store's back visible is core/audit_chain.py.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

# Streams of this category are the console's own: the store refuses anyone else's append to them.
CATEGORY = "console"

_SUBJECT_CHAR = re.compile(r"[A-Za-z0-9_.@-]")
_MAX_USER_SUBJECT = 180


class AuditType(StrEnum):
    """Every type of event the console records about itself."""

    USER_CREATED = "UserCreated"
    USER_UPDATED = "UserUpdated"
    USER_DELETED = "UserDeleted"
    GROUP_CREATED = "GroupCreated"
    GROUP_UPDATED = "GroupUpdated"
    GROUP_DELETED = "GroupDeleted"
    USER_LOGGED_IN = "UserLoggedIn"
    USER_LOGGED_OUT = "UserLoggedOut"
    USER_LOGIN_FAILED = "UserLoginFailed"
    # A sign-in through the OpenID provider gave the account these roles (console/oidc.py).
    USER_ROLES_MAPPED = "UserRolesMapped"
    REAUTHENTICATION_FAILED = "ReauthenticationFailed"
    API_TOKEN_ISSUED = "ApiTokenIssued"
    API_TOKEN_REVOKED = "ApiTokenRevoked"
    API_TOKEN_REJECTED = "ApiTokenRejected"
    PII_UNMASKED = "PiiUnmasked"
    CONSUMER_PAUSED = "ConsumerPaused"
    CONSUMER_RESUMED = "ConsumerResumed"
    PARKED_EVENT_QUEUED = "ParkedEventQueued"
    PARKED_EVENT_RETRIED = "ParkedEventRetried"
    PARKED_EVENT_SKIPPED = "ParkedEventSkipped"
    SINK_CREATED = "SinkCreated"
    SINK_UPDATED = "SinkUpdated"
    SUBSCRIPTION_CREATED = "SubscriptionCreated"
    SUBSCRIPTION_DELETED = "SubscriptionDeleted"
    SUBSCRIPTION_MOVED = "SubscriptionCheckpointsMoved"
    SOURCE_ADDED = "SourceAdded"
    SOURCE_PAUSED = "SourcePaused"
    SOURCE_RESUMED = "SourceResumed"
    SOURCE_PARKED_RETRIED = "SourceParkedEventRetried"
    SOURCE_PARKED_SKIPPED = "SourceParkedEventSkipped"
    SOURCE_WRITE_DSN_SET = "SourceWriteDsnSet"
    SOURCE_WRITTEN_BACK = "SourceEventsWrittenBack"
    PROJECTION_ROLLED_BACK = "ProjectionRolledBack"
    JOB_REQUESTED = "JobRequested"
    JOB_CHANGED = "JobChanged"
    JOB_APPROVED = "JobApproved"
    JOB_APPROVAL_REFUSED = "JobApprovalRefused"
    JOB_REJECTED = "JobRejected"
    JOB_QUEUED = "JobQueued"
    JOB_START_REFUSED = "JobStartRefused"
    JOB_STARTED = "JobStarted"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    JOB_CANCEL_REQUESTED = "JobCancelRequested"
    JOB_CANCELLED = "JobCancelled"
    JOB_RETRIED = "JobRetried"


def user_subject(username: str) -> str:
    """The audit subject of a user (`user.<name>`), for any name a login form may receive."""
    return subject("user", username)


def subject(kind: str, name: str) -> str:
    """The audit subject `<kind>.<name>` for any name (a user's, a group's).

    Stream names allow fewer characters than names do (`+`, letters beyond ASCII), and a failed login
    can carry anything: other characters are written as `:` and their UTF-8 bytes in hex, and an overlong
    name becomes its sha256.
    """
    encoded = "".join(
        char if _SUBJECT_CHAR.fullmatch(char) else "".join(f":{byte:02x}" for byte in char.encode())
        for char in name
    )
    if not encoded or len(encoded) > _MAX_USER_SUBJECT:
        encoded = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    return f"{kind}.{encoded}"
