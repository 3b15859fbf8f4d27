"""JSON the store cannot keep is a 400 problem+json naming the rule, on every JSON endpoint and in every
way in: numbers beyond a float (PostgreSQL's jsonb has no Infinity), and nesting past the limit
(core/json.py), which once reached the parser's recursion limit and answered 500."""

import pytest

from core.json import MAX_DEPTH
from recovery.models import Job
from streams.models import Event
from streams.services import append_events
from streams.validation import InvalidAppend
from tests.streams.test_api_append import assert_problem

pytestmark = pytest.mark.django_db

APPEND = "/api/v1/streams/order-1/events"


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("number", ["1e400", "-1e400"])
@pytest.mark.parametrize("where", ["data", "metadata"])
def test_a_number_beyond_a_float_is_a_400_naming_the_rule_and_writes_nothing(api, number, where):
    body = f'{{"events": [{{"type": "Added", "data": {{}}, "{where}": {{"n": {number}}}}}]}}'

    problem = assert_problem(api.post(APPEND, body, content_type="application/json"), 400)

    assert "numbers must be finite" in problem["errors"]["body"][0]
    assert not Event.objects.exists()


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 100_000])
def test_nesting_past_the_limit_is_a_400_naming_the_limit(api, levels):
    body = f'{{"events": [{{"type": "Added", "data": {{"deep": {nested(levels)}}}}}]}}'

    problem = assert_problem(api.post(APPEND, body, content_type="application/json"), 400)

    assert problem["errors"]["body"] == [f"objects and arrays may be nested at most {MAX_DEPTH} levels deep"]
    assert not Event.objects.exists()


def test_nesting_up_to_the_limit_is_accepted(api):
    inside = MAX_DEPTH - 4  # the body, events, the event and data hold it
    body = f'{{"events": [{{"type": "Added", "data": {{"deep": {nested(inside)}}}}}]}}'

    assert api.post(APPEND, body, content_type="application/json").status_code == 201


@pytest.mark.parametrize(
    "body", ['{"kind": "snapshot", "reason": "r", "params": {"x": 1e400}}', nested(5_000)]
)
def test_every_json_endpoint_keeps_the_rules(api, body):
    assert_problem(api.post("/api/v1/jobs", body, content_type="application/json"), 400)
    assert not Job.objects.exists()


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_an_append_in_process_refuses_a_non_finite_number(value):
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="order-1", events=[{"type": "Added", "data": {"n": value}}])

    assert refused.value.errors["events[0]"] == ["numbers must be finite"]
    assert not Event.objects.exists()


def test_an_append_in_process_refuses_nesting_past_the_limit():
    deep: list = []
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(InvalidAppend) as refused:
        append_events(stream="order-1", events=[{"type": "Added", "data": {"deep": deep}}])

    assert "nested at most" in refused.value.errors["events[0]"][0]
