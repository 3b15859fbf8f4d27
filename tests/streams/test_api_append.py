"""POST /api/v1/streams/{stream}/events: the append contract over HTTP."""

import json
import uuid

import pytest

from streams.models import Event, Stream

URL = "/api/v1/streams/{}/events"


def post(api, stream, body, **headers):
    return api.post(URL.format(stream), body, format="json", **headers)


def post_raw(api, stream, raw: bytes | str, content_type="application/json"):
    return api.generic("POST", URL.format(stream), raw, content_type=content_type)


def body(*types, expected_version=None):
    payload = {
        "events": [{"id": str(uuid.uuid4()), "type": t, "data": {"n": i}} for i, t in enumerate(types)]
    }
    if expected_version is not None:
        payload["expected_version"] = expected_version
    return payload


def assert_problem(response, status, field=None):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert problem["type"].startswith("urn:replaydesk:problem:")
    if field is not None:
        assert field in problem["errors"], problem
    return problem


def nothing_written():
    return not Event.objects.exists() and not Stream.objects.exists()


def test_append_returns_201_with_version_positions_and_etag(api):
    response = post(api, "user-1", body("UserCreated", "UserNameSet", expected_version="no_stream"))
    assert response.status_code == 201
    result = response.json()
    assert result["stream"] == "user-1"
    assert (result["version"], result["first_sequence"]) == (2, 1)
    assert len(result["positions"]) == 2
    assert response["ETag"] == '"2"'
    assert list(Event.objects.order_by("position").values_list("position", flat=True)) == result["positions"]


def test_the_callers_username_is_the_actor_unless_metadata_names_one(api, operator):
    payload = body("UserCreated", "UserNameSet")
    payload["events"][1]["metadata"] = {"actor": "support-bot", "correlation_id": str(uuid.uuid4())}
    post(api, "user-1", payload)
    assert list(Event.objects.order_by("sequence").values_list("actor", flat=True)) == [
        "olivia",
        "support-bot",
    ]


def test_wrong_expected_version_is_409_with_the_current_version(api):
    post(api, "user-1", body("UserCreated"))
    response = post(api, "user-1", body("UserNameSet", expected_version=5))
    problem = assert_problem(response, 409)
    assert problem["current_version"] == 1
    assert response["ETag"] == '"1"'
    assert Event.objects.count() == 1


def test_if_match_is_an_alternative_to_expected_version(api):
    post(api, "user-1", body("UserCreated"))
    assert post(api, "user-1", body("UserNameSet"), HTTP_IF_MATCH='"1"').status_code == 201
    assert_problem(post(api, "user-1", body("UserNameSet"), HTTP_IF_MATCH='"1"'), 409)
    assert post(api, "user-1", body("UserNameSet"), HTTP_IF_MATCH="*").status_code == 201
    assert_problem(post(api, "user-404", body("UserNameSet"), HTTP_IF_MATCH="*"), 409)
    assert Stream.objects.get(name="user-1").version == 3


def test_if_match_that_contradicts_expected_version_is_422(api):
    response = post(api, "user-1", body("UserCreated", expected_version=0), HTTP_IF_MATCH='"3"')
    assert_problem(response, 422, "If-Match")
    assert nothing_written()


@pytest.mark.parametrize("header", ['W/"3"', '"3", "4"', '"x"', '"3', "3.0"])
def test_malformed_if_match_is_400(api, header):
    assert_problem(post(api, "user-1", body("UserCreated"), HTTP_IF_MATCH=header), 400, "If-Match")
    assert nothing_written()


def test_an_if_match_without_its_quotes_is_read_as_the_same_version(api):
    post(api, "user-1", body("UserCreated"))

    assert post(api, "user-1", body("UserNameSet"), HTTP_IF_MATCH="1").status_code == 201
    assert_problem(post(api, "user-1", body("UserNameSet"), HTTP_IF_MATCH="1"), 409)


def test_a_retried_append_returns_the_original_result_and_adds_nothing(api):
    payload = body("UserCreated", "UserNameSet", expected_version="no_stream")
    first = post(api, "user-1", payload)
    retry = post(api, "user-1", payload)
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry["Idempotent-Replayed"] == "true"
    assert Event.objects.count() == 2


def test_a_retry_with_only_some_ids_recorded_is_422_and_writes_nothing(api):
    payload = body("UserCreated", "UserNameSet")
    post(api, "user-1", {"events": payload["events"][:1]})
    assert_problem(post(api, "user-1", payload), 422, "events[1].id")
    assert Event.objects.count() == 1


def test_malformed_json_is_400_and_writes_nothing(api):
    problem = assert_problem(post_raw(api, "user-1", '{"events": [{"type": '), 400)
    assert "JSON" in problem["detail"]
    assert nothing_written()


def test_nan_is_not_json(api):
    raw = '{"events": [{"type": "E", "data": {"x": NaN}}]}'
    assert_problem(post_raw(api, "user-1", raw), 400)
    assert nothing_written()


def test_a_body_that_is_not_json_is_415(api):
    assert_problem(post_raw(api, "user-1", "events=1", content_type="text/plain"), 415)
    assert nothing_written()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "body"),
        ("events", "body"),
        ({}, "events"),
        ({"events": []}, "events"),
        ({"events": {"type": "E"}}, "events"),
        ({"events": ["E"]}, "events[0]"),
        ({"events": [{"type": "E", "data": {}}], "expected": 1}, "expected"),
        ({"events": [{"type": "E", "data": {}, "stream": "x"}]}, "events[0]"),
        ({"events": [{"type": "E", "data": {}}], "expected_version": "latest"}, "expected_version"),
        ({"events": [{"type": "E", "data": {}}], "expected_version": -1}, "expected_version"),
        ({"events": [{"type": "E", "data": {}}], "expected_version": True}, "expected_version"),
        ({"events": [{"type": "E", "data": {}}], "expected_version": 1.5}, "expected_version"),
        ({"events": [{"type": 7, "data": {}}]}, "events[0].type"),
        ({"events": [{"type": "7up", "data": {}}]}, "events[0].type"),
        ({"events": [{"data": {}}]}, "events[0].type"),
        ({"events": [{"type": "E"}]}, "events[0].data"),
        ({"events": [{"type": "E", "data": [1, 2]}]}, "events[0].data"),
        ({"events": [{"type": "E", "data": "x"}]}, "events[0].data"),
        ({"events": [{"type": "E", "data": {}, "metadata": "x"}]}, "events[0].metadata"),
        ({"events": [{"id": "not-a-uuid", "type": "E", "data": {}}]}, "events[0].id"),
        ({"events": [{"id": 42, "type": "E", "data": {}}]}, "events[0].id"),
    ],
)
def test_bad_bodies_are_400_naming_the_field_and_write_nothing(api, payload, field):
    assert_problem(post(api, "user-1", payload), 400, field)
    assert nothing_written()


@pytest.mark.parametrize("stream", ["user%201", "x" * 201, "%C3%BC-1", "user%00", "user%3F1"])
def test_bad_stream_names_are_400(api, stream):
    assert_problem(post(api, stream, body("UserCreated")), 400, "stream")
    assert nothing_written()


def test_an_oversize_batch_is_400_and_writes_nothing(api):
    payload = {"events": [{"type": "E", "data": {}}] * 1001}
    problem = assert_problem(post(api, "user-1", payload), 400, "events")
    assert "1000" in problem["errors"]["events"][0]
    assert nothing_written()


def test_an_oversize_event_is_400_and_writes_nothing(api):
    payload = {"events": [{"type": "E", "data": {}}, {"type": "E", "data": {"blob": "x" * (1024 * 1024)}}]}
    problem = assert_problem(post(api, "user-1", payload), 400, "events[1]")
    assert "1 MiB" in problem["errors"]["events[1]"][0]
    assert nothing_written()


def test_a_body_over_the_server_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    raw = json.dumps({"events": [{"type": "E", "data": {"blob": "x" * 2000}}]})
    assert_problem(post_raw(api, "user-1", raw), 413)
    assert nothing_written()


def test_every_field_error_is_reported_in_one_response(api):
    payload = {"events": [{"type": "E", "data": {}}, {"type": "", "data": 1}], "expected_version": "nope"}
    problem = assert_problem(post(api, "user-1", payload), 400)
    assert set(problem["errors"]) == {"expected_version", "events[1].type", "events[1].data"}


def test_appending_needs_authentication(anonymous_api, db):
    response = post(anonymous_api, "user-1", body("UserCreated"))
    assert_problem(response, 401)
    assert response["WWW-Authenticate"] == "Bearer"
    assert nothing_written()


def test_a_wrong_token_is_401(anonymous_api, db):
    anonymous_api.credentials(HTTP_AUTHORIZATION="Bearer " + "0" * 40)
    assert_problem(post(anonymous_api, "user-1", body("UserCreated")), 401)
    # Nothing but, at most, the audit trail's note of the rejected token.
    assert not Event.objects.exclude(stream__category="console").exists()


def test_a_browser_session_can_append_with_its_csrf_token(operator):
    from rest_framework.test import APIClient

    from tests.conftest import PASSWORD

    browser = APIClient(enforce_csrf_checks=True)
    browser.get("/login/")
    token = browser.cookies["csrftoken"].value
    assert browser.login(username="olivia", password=PASSWORD)
    assert_problem(post(browser, "user-1", body("UserCreated")), 403)
    assert post(browser, "user-1", body("UserCreated"), HTTP_X_CSRFTOKEN=token).status_code == 201


def test_an_unknown_api_path_is_a_problem_404(api):
    response = api.get("/api/v1/nothing-here")
    assert_problem(response, 404)
    response = api.post("/api/v1/streams/user/1/events", body("E"), format="json")
    assert_problem(response, 404)


def test_the_console_category_is_the_consoles_own_and_refused_to_applications(api):
    response = api.post(
        "/api/v1/streams/console-job.1/events",
        {"events": [{"type": "JobApproved", "data": {}}]},
        format="json",
    )
    assert response.status_code == 403
    assert response.json()["detail"] == "the console category is the console's own audit trail"
    assert not Event.objects.filter(stream__category="console", type="JobApproved").exists()
