"""API tokens: issued, checked, listed and revoked (docs/architecture.md, API tokens).

A token reads `rd_<prefix>_<secret>`: `rd_` so that secret scanners know it, a public prefix of 8 hex
digits (how a token is listed, found and revoked), and 43 random letters and digits (about 256 bits).
The database keeps the prefix and the sha256 of the whole token, never the token, which is shown once,
when it is issued. A random token that long needs no slow password hash: sha256 and a constant-time
comparison are enough.

Tokens issued before tokens were hashed (40 hex digits) were hashed where they lay by migration
console/0002, and are found by their sha256 instead of a prefix.

A token that opens nothing (unknown, wrong, expired, revoked, or its user inactive) gets the same 401
whatever the reason; the reason goes to the audit trail, at most once a minute for each address and
prefix, so that a flood of bad tokens writes little.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

from console.models import ApiToken
from core import limits, roles
from core.audit import AuditType, subject
from streams import audit

_ALPHABET = string.ascii_letters + string.digits
_SECRET_CHARS = 43
_TOKEN = re.compile(r"rd_([0-9a-f]{8})_[A-Za-z0-9]{43}")
_LEGACY = re.compile(r"[0-9a-f]{40}")
# A token's last use is written at most this often: a busy client costs no write per request.
LAST_USED_EVERY = timedelta(minutes=1)
# Rejected tokens in the audit trail: one entry a minute for each address and prefix claimed, and at most
# ten a minute for each address, whatever prefixes it makes up.
_AUDIT_EACH = limits.Rate(count=1, seconds=60)
_AUDIT_PER_ADDRESS = limits.Rate(count=10, seconds=60)


@dataclass(frozen=True)
class Issued:
    token: str  # the only time it is known: print it, never store it
    record: ApiToken


class Rejected(Exception):
    """A token that opens nothing. `reason` is for the audit trail, never for the client."""

    def __init__(self, reason: str, *, prefix: str | None = None, user: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.prefix = prefix
        self.user = user


def generate() -> str:
    return f"rd_{secrets.token_hex(4)}_{''.join(secrets.choice(_ALPHABET) for _ in range(_SECRET_CHARS))}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def prefix_of(token: str) -> str | None:
    """The prefix a token of the current form claims; None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def default_days() -> int | None:
    return settings.REPLAYDESK_TOKEN_DAYS or None


def issue_token(
    *,
    user,
    actor: str,
    name: str = "",
    days: int | None = None,
    never_expires: bool = False,
    request: HttpRequest | None = None,
) -> Issued:
    """A new token for `user`, lasting `days` (REPLAYDESK_TOKEN_DAYS unless given, or for ever with
    `never_expires`); audited. The user's other tokens keep working."""
    now = timezone.now()
    lifetime = None if never_expires else (days or default_days())
    expires_at = now + timedelta(days=lifetime) if lifetime else None
    with transaction.atomic():
        token, record = _create(user=user, name=name, created_at=now, expires_at=expires_at)
        audit.record(
            subject=_subject(record.prefix),
            type=AuditType.API_TOKEN_ISSUED,
            actor=actor,
            data={
                "user": user.get_username(),
                "token": record.prefix,
                "name": name,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
            request=request,
        )
    return Issued(token=token, record=record)


def _create(**fields) -> tuple[str, ApiToken]:
    tries = 3  # a prefix taken three times running is not chance (one in four billion each)
    while True:
        token = generate()
        try:
            with transaction.atomic():
                return token, ApiToken.objects.create(prefix=prefix_of(token), digest=digest(token), **fields)
        except IntegrityError:
            tries -= 1
            if not tries:
                raise


def revoke_token(*, token: ApiToken, actor: str, request: HttpRequest | None = None) -> bool:
    """Revoke `token` from now on; audited. False when it was revoked already (nothing is written)."""
    with transaction.atomic():
        unrevoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True)
        revoked = unrevoked.update(revoked_at=timezone.now())
        if revoked:
            audit.record(
                subject=_subject(token.prefix),
                type=AuditType.API_TOKEN_REVOKED,
                actor=actor,
                data={"user": token.user.get_username(), "token": token.prefix, "name": token.name},
                request=request,
            )
    return bool(revoked)


def tokens_of(user) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("created_at", "pk")


def authenticate(token: str) -> ApiToken:
    """The token's record, its user loaded, when it opens the API now; Rejected otherwise."""
    hashed = digest(token)
    prefix = prefix_of(token)
    if prefix is not None:
        found = _look_up("prefix", prefix)
    elif _LEGACY.fullmatch(token):
        found = _look_up("digest", hashed)
    else:
        raise Rejected("unrecognised")
    if found is None:
        raise Rejected("unknown", prefix=prefix)
    if not hmac.compare_digest(found.digest, hashed):
        raise Rejected("wrong secret", prefix=prefix, user=found.user.get_username())
    now = timezone.now()
    state = found.state(now)
    if state == "active" and not found.user.is_active:
        state = "user inactive"
    if state != "active":
        raise Rejected(state, prefix=found.prefix, user=found.user.get_username())
    _touch(found, now)
    return found


def _look_up(column: str, value: str) -> ApiToken | None:
    """The token whose `column` (prefix or digest, both unique) is `value`, with its user and the user's
    roles, in one statement written by hand: every API request with a token asks it, and building the
    ORM's query for it (the token joined to its user, the roles as a subquery) took more CPU than the
    request's append."""
    statement, token_fields, user_fields = _look_up_statement(column)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        # Prepared, as the append is (streams/services.py): planning the join took three times as long as
        # running it (0.18 ms against 0.05 ms).
        cursor.cursor.execute(statement, [list(roles.ROLES), value], prepare=True)
        row = cursor.fetchone()
    if row is None:
        return None
    found = ApiToken.from_db(connection.alias, token_fields, row[: len(token_fields)])
    user = ApiToken.user.field.related_model.from_db(
        connection.alias, user_fields, row[len(token_fields) : -1]
    )
    roles.remember_roles(user, row[-1])
    found.user = user
    return found


@functools.cache
def _look_up_statement(column: str) -> tuple[str, list[str], list[str]]:
    """The look-up's SQL, written from the models (whatever the user model), and the fields it reads."""
    quote = connection.ops.quote_name
    token, user = ApiToken._meta, ApiToken.user.field.related_model._meta
    groups = user.get_field("groups")
    group = groups.related_model._meta
    names = {
        "token": quote(token.db_table),
        "key": quote(token.get_field(column).column),
        "owner": quote(ApiToken.user.field.column),
        "user": quote(user.db_table),
        "user_pk": quote(user.pk.column),
        "member": quote(groups.m2m_db_table()),
        "member_user": quote(groups.m2m_column_name()),
        "member_group": quote(groups.m2m_reverse_name()),
        "group": quote(group.db_table),
        "group_pk": quote(group.pk.column),
        "group_name": quote(group.get_field("name").column),
    }
    names["token_columns"] = ", ".join(f"t.{quote(field.column)}" for field in token.concrete_fields)
    names["user_columns"] = ", ".join(f"u.{quote(field.column)}" for field in user.concrete_fields)
    statement = """
        SELECT {token_columns}, {user_columns},
               ARRAY(SELECT g.{group_name} FROM {member} m
                       JOIN {group} g ON g.{group_pk} = m.{member_group}
                      WHERE m.{member_user} = u.{user_pk} AND g.{group_name} = ANY(%s))
          FROM {token} t JOIN {user} u ON u.{user_pk} = t.{owner}
         WHERE t.{key} = %s""".format(**names)
    return (
        statement,
        [field.attname for field in token.concrete_fields],
        [field.attname for field in user.concrete_fields],
    )


def _touch(token: ApiToken, now: datetime) -> None:
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    # Conditional, so that concurrent requests write it once.
    ApiToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_EVERY), pk=token.pk
    ).update(last_used_at=now)


def audit_rejection(rejected: Rejected, request: HttpRequest) -> None:
    """A rejected token in the audit trail, with the address and user agent, never the token; what the
    limits above leave out is only counted."""
    address = limits.digest(BaseThrottle().get_ident(request) or "")
    if limits.hit(f"token_rejected:{address}:{rejected.prefix or '-'}", _AUDIT_EACH).used > _AUDIT_EACH.count:
        return
    if limits.hit(f"token_rejected:{address}", _AUDIT_PER_ADDRESS).used > _AUDIT_PER_ADDRESS.count:
        return
    audit.record(
        subject=_subject(rejected.prefix or "unrecognised"),
        type=AuditType.API_TOKEN_REJECTED,
        actor="anonymous",
        data={"token": rejected.prefix, "user": rejected.user, "reason": rejected.reason},
        request=request,
    )


def _subject(prefix: str) -> str:
    return subject("token", prefix)
