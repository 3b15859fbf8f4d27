"""Properties checked over generated input (hypothesis):

- an append of any JSON body either stores exactly what was sent, or is refused (400 problem+json, or
  409 for a wrong expected version) and writes nothing; a retry with the same ids gives the same answer;
- the demo's user fold (state as of a sequence) equals a plain model of a user;
- the live projections' tables, after a generated log applied in one or two runs, equal the Python
  fold of the same log.

The database fixture is one transaction for the whole test, while hypothesis runs many examples in it:
each example runs in a savepoint that is rolled back, so every example starts from the same empty store.
(The fixtures themselves, a user and a token, are never changed by an example.)
"""

import json
import string
import uuid
from contextlib import contextmanager
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.consumers import run_projection
from streams.models import Event, Stream
from streams.services import append_events
from streams.timeline import state_as_of
from tests.streams.projection_helpers import fold_access, fold_users, projected_access, projected_users

pytestmark = pytest.mark.django_db

BOUNDED = settings(
    max_examples=30,
    deadline=None,
    # The same examples on every run, so a green suite stays green; to explore, turn this off for a
    # while (and keep what that finds as a plain test, as tests/api/test_fuzz_findings.py does).
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@contextmanager
def rolled_back():
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# -- strategies -----------------------------------------------------------------------------------------


def json_of(text):
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**30), max_value=10**30)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )


# What a JSON body can carry that Python and PostgreSQL read differently: NUL, lone surrogates (both
# as \u escapes), backslashes next to "u0000"; often enough to be found, among any text at all.
tricky_text = st.lists(
    st.sampled_from(["a", "é", "\x00", "\ud800", "\udc00", "\\", "u0000", "😀"]), max_size=4
).map("".join)
any_text = tricky_text | st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
json_values = json_of(any_text)
json_objects = st.dictionaries(any_text, json_values, max_size=4)
# What PostgreSQL stores: no NUL, no lone surrogate.
storable_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
storable_objects = st.dictionaries(storable_text, json_of(storable_text), max_size=4)
good_types = st.from_regex(r"[A-Za-z][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
good_streams = st.from_regex(r"[a-z]{1,6}-[A-Za-z0-9_.:@-]{1,12}", fullmatch=True)
# Anything a path segment can carry (no "/"); "console-…" is refused, the console's own audit trail.
any_streams = good_streams | st.text(
    st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=210
)
event_ids = st.uuids().map(str) | any_text | st.integers()
metadata = st.fixed_dictionaries(
    {},
    optional={
        "actor": st.sampled_from(["alice.admin", "svc-profile"]) | json_values,
        "correlation_id": st.uuids().map(str) | any_text,
        "occurred_at": st.sampled_from(["2026-01-31T12:00:00Z", "2026-02-30T00:00:00Z"]) | any_text,
        "extra": json_values,
    },
)
events = st.fixed_dictionaries(
    {"type": good_types | any_text, "data": json_objects | json_values},
    optional={"id": event_ids, "metadata": metadata | json_values, "other": json_values},
)
expected_versions = st.sampled_from(["any", "no_stream", "exists", 0, 1, -1, "latest"]) | json_values
bodies = (
    st.fixed_dictionaries(
        {"events": st.lists(events, max_size=4)}, optional={"expected_version": expected_versions}
    )
    | json_values
)


def numbers_as_decimals(value):
    """JSON as PostgreSQL's jsonb keeps it: a number is its decimal value (1e300 comes back as the
    integer 10**300), so that is what "stored exactly" can mean."""
    if isinstance(value, dict):
        return {key: numbers_as_decimals(item) for key, item in value.items()}
    if isinstance(value, list):
        return [numbers_as_decimals(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(repr(value))
    return value


def post(api, stream: str, body) -> tuple[int, dict, dict]:
    # Encoded here, ASCII only: the JSON escapes carry lone surrogates that UTF-8 cannot.
    response = api.generic(
        "POST",
        f"/api/v1/streams/{quote(stream, safe='')}/events",
        json.dumps(body),
        content_type="application/json",
    )
    return response.status_code, response.json(), dict(response.items())


def store_is_empty() -> bool:
    return not Event.objects.exists() and not Stream.objects.exists()


# -- appends --------------------------------------------------------------------------------------------


@BOUNDED
@given(stream=any_streams, body=bodies)
def test_an_append_stores_exactly_what_was_sent_or_is_refused_and_writes_nothing(api, stream, body):
    with rolled_back():
        status, answer, headers = post(api, stream, body)

        assert_stored_as_sent_or_refused(stream, body, status, answer, headers)


def assert_stored_as_sent_or_refused(stream, body, status, answer, headers) -> None:
    if status == 201:
        sent = body["events"]
        stored = list(Event.objects.filter(stream__name=stream).order_by("sequence"))
        assert [(e.type, numbers_as_decimals(e.data)) for e in stored] == [
            (s["type"], numbers_as_decimals(s["data"])) for s in sent
        ]
        for event, original in zip(stored, sent, strict=True):
            given_metadata = original.get("metadata") or {}
            expected = {**given_metadata, "actor": given_metadata.get("actor") or "olivia"}
            assert numbers_as_decimals(event.metadata) == numbers_as_decimals(expected)
            if "id" in original:
                assert str(event.event_id) == str(uuid.UUID(original["id"]))
        assert answer == {
            "stream": stream,
            "version": len(sent),
            "first_sequence": 1,
            "positions": [e.position for e in stored],
        }
    else:
        assert status in (400, 409), answer
        assert headers["Content-Type"] == "application/problem+json"
        assert answer["status"] == status and answer["detail"]
        assert status == 409 or answer["errors"]
        assert store_is_empty()


@BOUNDED
@given(
    stream=good_streams,
    batch=st.lists(st.fixed_dictionaries({"type": good_types, "data": json_objects}), min_size=1, max_size=3),
)
def test_any_data_in_a_well_formed_batch_is_stored_as_sent_or_refused_with_a_400(api, stream, batch):
    body = {"events": batch}
    with rolled_back():
        status, answer, headers = post(api, stream, body)

        assert status in (201, 400)
        assert_stored_as_sent_or_refused(stream, body, status, answer, headers)


valid_batches = st.lists(
    st.fixed_dictionaries({"id": st.uuids().map(str), "type": good_types, "data": storable_objects}),
    min_size=1,
    max_size=4,
    unique_by=lambda event: event["id"],
)


@BOUNDED
@given(
    stream=good_streams,
    batch=valid_batches,
    expected_version=st.sampled_from(["any", "no_stream", 0]),
)
def test_a_retry_with_the_same_ids_gives_the_same_answer_and_stores_nothing_more(
    api, stream, batch, expected_version
):
    body = {"events": batch, "expected_version": expected_version}
    with rolled_back():
        first = post(api, stream, body)
        again = post(api, stream, body)

        assert first[0] == again[0] == 201
        assert first[1] == again[1]
        assert again[2].get("Idempotent-Replayed") == "true"
        assert Event.objects.count() == len(batch)


@BOUNDED
@given(batch_sizes=st.lists(st.integers(1, 3), min_size=1, max_size=4), data=st.data())
def test_each_expected_version_form_succeeds_exactly_when_it_matches(api, batch_sizes, data):
    with rolled_back():
        version = 0
        for size in batch_sizes:
            expected = data.draw(st.sampled_from(["any", "no_stream", "exists", version, version + 1]))
            matches = (
                expected == "any"
                or (expected == "no_stream" and version == 0)
                or (expected == "exists" and version > 0)
                or expected == version
            )
            status, answer, _ = post(
                api,
                "ledger-1",
                {"expected_version": expected, "events": [{"type": "Noted", "data": {}}] * size},
            )

            if matches:
                assert status == 201 and answer["version"] == version + size
                version += size
            else:
                assert status == 409 and answer["current_version"] == version
            assert Event.objects.count() == version


# -- folds ----------------------------------------------------------------------------------------------

names = st.text(string.ascii_letters + " ", min_size=1, max_size=8)
resources = st.sampled_from(["issueABC", "repo-web", "wiki"])
permissions = st.sampled_from(["read", "write", "admin"])
user_changes = st.one_of(
    st.tuples(st.just("UserNameSet"), names),
    st.tuples(st.just("UserEmailSet"), names.map(lambda n: n.replace(" ", "") + "@example.com")),
    st.tuples(st.sampled_from(["PermissionGranted", "PermissionRevoked"]), st.tuples(resources, permissions)),
)


def user_event(uid: str, change) -> dict:
    kind, value = change
    if kind == "UserNameSet":
        return {"type": kind, "data": {"user_id": uid, "name": value}}
    if kind == "UserEmailSet":
        return {"type": kind, "data": {"user_id": uid, "email": value}}
    resource, permission = value
    return {"type": kind, "data": {"user_id": uid, "resource": resource, "permission": permission}}


def created(uid: str) -> dict:
    data = {"user_id": uid, "username": f"u{uid}", "name": f"User {uid}", "email": f"u{uid}@example.com"}
    return {"type": "UserCreated", "data": data}


def model_user(events: list[dict]) -> dict:
    """A user as a person would work it out: the profile's last values, and the permissions a
    grant gave and no later revoke took back, per resource."""
    user: dict = {}
    held: dict[str, set] = {}
    for event in events:
        data = event["data"]
        if event["type"] == "UserCreated":
            user = {key: data[key] for key in ("user_id", "username", "name", "email")}
        elif event["type"] == "UserNameSet":
            user["name"] = data["name"]
        elif event["type"] == "UserEmailSet":
            user["email"] = data["email"]
        elif event["type"] == "PermissionGranted":
            held.setdefault(data["resource"], set()).add(data["permission"])
        else:
            held.get(data["resource"], set()).discard(data["permission"])
    return {**user, "permissions": {r: sorted(p) for r, p in sorted(held.items()) if p}}


@BOUNDED
@given(changes=st.lists(user_changes, max_size=12), data=st.data())
def test_a_users_state_as_of_any_sequence_is_the_model_of_its_events_so_far(changes, data):
    log = [created("7"), *(user_event("7", change) for change in changes)]
    upto = data.draw(st.integers(1, len(log)), label="sequence")
    with rolled_back():
        append_events(stream="user-7", events=log)

        state = state_as_of(stream=Stream.objects.get(name="user-7"), masked=False, sequence=upto)

        assert state.fold == "users_directory"
        assert state.state == model_user(log[:upto])


steps = st.lists(
    st.tuples(st.integers(1, 3), user_changes)
    | st.tuples(
        st.integers(1, 3), st.tuples(st.sampled_from(["MemberAdded", "MemberRemoved"]), st.integers(1, 2))
    ),
    max_size=25,
)


def demo_log(generated) -> list[tuple[str, dict]]:
    """(stream, event) in order; a user's stream starts with UserCreated, as the demo's always does."""
    log, users = [], set()
    for uid, change in generated:
        uid = str(uid)
        if uid not in users:
            users.add(uid)
            log.append((f"user-{uid}", created(uid)))
        if change[0] in ("MemberAdded", "MemberRemoved"):
            group = f"g{change[1]}"
            log.append((f"group-{group}", {"type": change[0], "data": {"group_id": group, "user_id": uid}}))
        else:
            log.append((f"user-{uid}", user_event(uid, change)))
    return log


@pytest.fixture
def no_projection_schemas(fresh_projection_schemas):
    """Schemas a committed test left behind would be found by the runs below."""


@BOUNDED
@given(generated=steps, data=st.data())
def test_the_live_projections_equal_the_python_fold_of_the_same_log(no_projection_schemas, generated, data):
    log = demo_log(generated)
    split = data.draw(st.integers(0, len(log)), label="first run after")
    with rolled_back():
        for index, (stream, event) in enumerate(log):
            if index == split:
                run_projection("users_directory")
                run_projection("access")
            append_events(stream=stream, events=[event])
        run_projection("users_directory")
        run_projection("access")

        assert projected_users() == fold_users()
        assert projected_access() == fold_access()
