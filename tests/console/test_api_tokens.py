"""API tokens are kept as hashes, expire and can be revoked; every token that opens nothing gets the same
401, and the audit trail notes it, once a minute for each address and prefix however many arrive."""

import hashlib
import importlib
import secrets
import time
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from console import tokens
from console.models import ApiToken
from core import limits
from streams.models import Event
from tests.conftest import bearer_token

ATTACKER = {"REMOTE_ADDR": "198.51.100.23", "HTTP_USER_AGENT": "curl/8.5.0"}


@pytest.fixture(autouse=True)
def _fresh_limit_windows():
    # Rejections are noted once a minute per address and prefix; each test starts a minute of its own.
    limits.reset()
    yield
    limits.reset()


def get(token: str, **extra):
    return APIClient().get("/api/v1/streams", HTTP_AUTHORIZATION=f"Bearer {token}", **{**ATTACKER, **extra})


def rejections() -> list[Event]:
    return list(Event.objects.filter(type="ApiTokenRejected").order_by("position"))


def minutes_spanned(since: float) -> int:
    """The fixed one-minute windows (core.limits) from `since` until now: 1, or 2 when a flood crossed
    the end of a minute."""
    return int(time.time() // 60) - int(since // 60) + 1


def test_a_token_opens_the_api_and_its_last_use_is_noted(operator):
    token = bearer_token(operator)

    assert get(token).status_code == 200
    assert ApiToken.objects.get(user=operator).last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute(operator):
    token = bearer_token(operator)
    get(token)
    first = ApiToken.objects.get(user=operator).last_used_at

    assert get(token).status_code == 200
    assert ApiToken.objects.get(user=operator).last_used_at == first
    ApiToken.objects.update(last_used_at=first - timedelta(minutes=2))
    get(token)
    assert ApiToken.objects.get(user=operator).last_used_at > first


def test_the_database_keeps_a_prefix_and_a_hash_never_the_token(operator):
    issued = tokens.issue_token(user=operator, actor="ada", name="ci")
    prefix, secret = issued.token.removeprefix("rd_").split("_")

    record = ApiToken.objects.get(user=operator)
    assert record.prefix == prefix and record.digest == hashlib.sha256(issued.token.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT t::text FROM console_apitoken t UNION ALL SELECT e::text FROM streams_event e")
        stored = " ".join(row[0] for row in cursor.fetchall())
    assert secret not in stored


def refused_as_unknown(token: str) -> dict:
    response = get(token)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"] == "Bearer"
    return response.json()


def test_expired_revoked_wrong_and_unknown_tokens_get_one_and_the_same_401(operator):
    unknown = refused_as_unknown(tokens.generate())
    expired = bearer_token(operator)
    ApiToken.objects.filter(prefix=tokens.prefix_of(expired)).update(expires_at=timezone.now())
    revoked = bearer_token(operator)
    tokens.revoke_token(token=ApiToken.objects.get(prefix=tokens.prefix_of(revoked)), actor="ada")
    live = bearer_token(operator)
    wrong_secret = live[:-4] + ("aaaa" if not live.endswith("aaaa") else "bbbb")

    for token in (expired, revoked, wrong_secret, "not-a-token", "0" * 40):
        assert refused_as_unknown(token) == unknown
    assert get(live).status_code == 200


def test_an_inactive_users_token_gets_the_same_401(operator):
    token = bearer_token(operator)
    operator.is_active = False
    operator.save()

    assert refused_as_unknown(token) == refused_as_unknown(tokens.generate())


def test_a_rejected_token_is_audited_with_its_prefix_and_reason_never_its_secret(operator):
    token = bearer_token(operator)
    prefix, secret = token.removeprefix("rd_").split("_")
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(days=1))

    get(token)

    [rejected] = rejections()
    assert rejected.stream.name == f"console-token.{prefix}"
    assert rejected.actor == "anonymous"
    assert rejected.data == {"token": prefix, "user": "olivia", "reason": "expired"}
    assert (rejected.metadata["ip"], rejected.metadata["user_agent"]) == ("198.51.100.23", "curl/8.5.0")
    assert secret not in repr((rejected.data, rejected.metadata))


def test_a_flood_of_the_same_bad_token_writes_one_entry_a_minute(db):
    token = tokens.generate()
    start = time.time()

    answers = {get(token).status_code for _ in range(50)}

    assert answers == {401}
    noted = rejections()
    assert len(noted) == minutes_spanned(start)
    assert noted[0].data == {"token": tokens.prefix_of(token), "user": None, "reason": "unknown"}


def test_a_flood_of_made_up_tokens_from_one_address_writes_at_most_ten_entries_a_minute(db):
    start = time.time()

    answers = {get(tokens.generate()).status_code for _ in range(50)}

    assert answers == {401}
    assert 10 <= len(rejections()) <= 10 * minutes_spanned(start)
    # Another address is noted as usual.
    get(tokens.generate(), REMOTE_ADDR="203.0.113.9")
    assert rejections()[-1].metadata["ip"] == "203.0.113.9"


def test_metrics_refuse_and_audit_a_bad_token_alike(db):
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer " + tokens.generate()).status_code == 401
    assert len(rejections()) == 1


# -- tokens issued before hashing --------------------------------------------------------------------------


@pytest.fixture
def plain_token_table(db):
    """The table Django REST framework's authtoken app kept its tokens in, as an upgraded database has it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, "
            "user_id integer NOT NULL UNIQUE)"
        )
    yield


def test_plain_tokens_are_hashed_by_the_migration_and_keep_working(operator, plain_token_table, settings):
    settings.REPLAYDESK_TOKEN_DAYS = 90
    key = secrets.token_hex(20)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO authtoken_token (key, created, user_id) VALUES (%s, now() - interval '1 year', %s)",
            [key, operator.pk],
        )
    migration = importlib.import_module("console.migrations.0002_hash_plain_tokens")

    with connection.schema_editor() as editor:
        migration.hash_plain_tokens(apps, editor)

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT t::text FROM console_apitoken t")
        assert key not in cursor.fetchone()[0]
    record = ApiToken.objects.get(user=operator)
    assert record.name == migration.LEGACY_NAME
    assert timedelta(days=89) < record.expires_at - timezone.now() <= timedelta(days=90)
    assert get(key).status_code == 200
    tokens.revoke_token(token=record, actor="ada")
    assert get(key).status_code == 401
