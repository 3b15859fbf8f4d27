"""Requests the schema fuzzing (test_schema_fuzz.py) once answered with a 500, kept as plain tests."""

import pytest

from streams.services import append_events
from tests.streams.test_api_append import assert_problem


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_data_value_python_reads_as_a_non_finite_number_is_searched_as_text(api, value):
    append_events(stream="user-1", events=[{"type": "UserNameSet", "data": {"name": value}}])

    by_log = api.get("/api/v1/events", {"data.name": value})
    by_search = api.get("/api/v1/audit/search", {"q": value})

    assert by_log.status_code == 200
    assert [e["stream"] for e in by_log.json()["results"]] == ["user-1"]
    assert by_search.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/api/v1/streams?prefix=us%00er", "/api/v1/events?actor=%00", "/api/v1/jobs?target=a%00"]
)
def test_a_nul_character_in_a_query_is_a_400_that_names_the_parameter(api, url):
    problem = assert_problem(api.get(url), 400)

    assert "NUL" in " ".join(next(iter(problem["errors"].values())))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/v1/streams?prefix=user-1&prefix=user-2", "prefix"),
        ("/api/v1/events?after_position=0&after_position=5", "after_position"),
        ("/api/v1/events?data.name=a&data.name=b", "data.name"),
    ],
)
def test_a_parameter_that_takes_one_value_given_twice_is_a_400_that_names_it(api, url, name):
    problem = assert_problem(api.get(url), 400)

    assert list(problem["errors"]) == [name]


@pytest.mark.django_db
def test_types_may_be_repeated(api):
    append_events(stream="user-1", events=[{"type": "A", "data": {}}, {"type": "B", "data": {}}])

    response = api.get("/api/v1/events?type=A&type=B")

    assert response.status_code == 200
    assert [e["type"] for e in response.json()["results"]] == ["A", "B"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/v1/demo/users/1", "/api/v1/demo/access?resource=issueABC"])
def test_a_projection_read_before_the_projection_ever_ran_is_503_not_500(api, url):
    response = api.get(url)

    problem = assert_problem(response, 503)
    assert response["Retry-After"] == "1"
    assert "has not run yet" in problem["detail"]


@pytest.mark.django_db
def test_an_error_that_quotes_a_lone_surrogate_renders_as_a_400(api):
    body = '{"expected_version": "any", "events": [{"type": "A", "data": {}, "\\ud800": 1}]}'
    response = api.post("/api/v1/streams/order-1/events", body, content_type="application/json")

    problem = assert_problem(response, 400)
    assert "\ud800" in " ".join(problem["errors"]["events[0]"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("stream", "event_type", "field"),
    [("order-1%0A", "OrderPlaced", "stream"), ("order-1", "OrderPlaced\n", "events[0].type")],
)
def test_a_name_that_ends_in_a_newline_is_refused_not_stored(api, stream, event_type, field):
    body = {"expected_version": "any", "events": [{"type": event_type, "data": {}}]}
    response = api.post(f"/api/v1/streams/{stream}/events", body, format="json")

    problem = assert_problem(response, 400)
    assert field in problem["errors"]
    assert api.get("/api/v1/events").json()["results"] == []
