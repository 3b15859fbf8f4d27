"""Limits: request body size, batch and event size, API request rates per user, failed logins. Each is
refused with a problem (or, for the login page, a page) that says which limit, and writes nothing."""

import json
import uuid

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from core import limits
from streams.models import Event, Stream
from streams.services import append_events
from tests.conftest import PASSWORD, bearer_token, person
from tests.streams.test_api_append import URL, assert_problem, body, post, post_raw

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_windows():
    limits.reset()
    yield
    limits.reset()


@pytest.fixture
def rates(settings):
    """Low rates for a test; the defaults are far above what the suite sends."""

    def set_rates(**scopes: str) -> None:
        settings.REPLAYDESK_RATES = {**settings.REPLAYDESK_RATES, **scopes}

    return set_rates


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(user)}")
    return client


def nothing_written() -> bool:
    return not Event.objects.exists() and not Stream.objects.exists()


# -- request bodies -------------------------------------------------------------------------------------


def batch_of(size: int) -> str:
    return json.dumps({"events": [{"type": "Noted", "data": {"text": "x" * size}}]})


def test_a_body_over_the_limit_is_413_naming_the_limit_and_writes_nothing(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    raw = batch_of(3000)

    response = post_raw(api, "note-1", raw)

    problem = assert_problem(response, 413)
    assert problem["type"] == "urn:replaydesk:problem:payload-too-large"
    assert f"is {len(raw)} bytes" in problem["detail"] and "at most 2000 bytes" in problem["detail"]
    assert problem["max_bytes"] == 2000
    assert nothing_written()


def test_a_body_at_the_limit_is_accepted(api, settings):
    raw = batch_of(1900)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(raw.encode())

    assert post_raw(api, "note-1", raw).status_code == 201


def test_a_login_form_over_the_limit_is_refused_before_anyone_is_logged_in(client, operator, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = client.post(reverse("login"), {"username": "olivia", "password": PASSWORD, "pad": "x" * 2000})

    assert response.status_code == 413 and response["Content-Type"] == "application/problem+json"
    assert "_auth_user_id" not in client.session
    assert not Event.objects.exists()  # no login, no failed login in the audit trail


# -- batches and events (streams.validation) ------------------------------------------------------------


def test_a_batch_of_1001_events_is_400_and_writes_nothing(api):
    response = post(api, "user-1", body(*["Noted"] * 1001))

    problem = assert_problem(response, 400, "events")
    assert "at most 1000 events" in problem["errors"]["events"][0]
    assert nothing_written()


def test_a_batch_of_1000_events_is_appended(api):
    response = post(api, "user-1", body(*["Noted"] * 1000))

    assert response.status_code == 201 and response.json()["version"] == 1000


def test_an_event_over_1_mib_is_400_and_writes_nothing_of_its_batch(api):
    events = [
        {"type": "Small", "data": {}},
        {"type": "Noted", "data": {"text": "x" * (1024 * 1024)}},
    ]

    response = post(api, "user-1", {"events": events})

    problem = assert_problem(response, 400, "events[1]")
    assert "at most 1 MiB" in problem["errors"]["events[1]"][0]
    assert nothing_written()


# -- API rates ------------------------------------------------------------------------------------------


def test_appends_over_the_rate_are_429_with_retry_after_and_write_nothing(api, rates):
    rates(append="3/min")
    for n in range(3):
        assert post(api, "user-1", body("Noted")).status_code == 201, n
    refused = body("Noted")

    response = post(api, "user-1", refused)

    problem = assert_problem(response, 429)
    assert problem["type"] == "urn:replaydesk:problem:throttled"
    assert "at most 3 per minute append requests for each user" in problem["detail"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Event.objects.count() == 3
    assert not Event.objects.filter(event_id=refused["events"][0]["id"]).exists()


def test_each_token_has_its_own_budget_and_reads_are_a_separate_one(api, rates):
    rates(append="1/min")
    other = token_client(person("otto", "operator"))
    assert post(api, "user-1", body("Noted")).status_code == 201
    assert post(api, "user-1", body("Noted")).status_code == 429

    assert post(other, "user-2", body("Noted")).status_code == 201
    assert api.get(URL.format("user-1")).status_code == 200


def test_reads_over_the_rate_are_429(api, rates):
    rates(read="2/min")
    assert [api.get("/api/v1/streams").status_code for _ in range(3)] == [200, 200, 429]


def test_other_writes_have_their_own_budget(api, rates):
    rates(write="1/min")
    assert api.post("/api/v1/consumers/nobody/pause", {}, format="json").status_code == 404

    response = api.post("/api/v1/consumers/nobody/pause", {}, format="json")

    assert "write requests" in assert_problem(response, 429)["detail"]
    assert post(api, "user-1", body("Noted")).status_code == 201  # appends are not "other writes"


def test_a_subscriptions_readers_have_a_budget_of_their_own(api, rates):
    rates(write="1/min", subscribe="3/min")
    created = api.post("/api/v1/subscriptions", {"name": "billing", "categories": ["invoice"]}, format="json")
    assert created.status_code == 201  # the one write of the minute
    [position] = append_events(stream="invoice-1", events=[{"type": "Issued", "data": {}}]).positions
    url = "/api/v1/subscriptions/billing"

    fetched = api.post(f"{url}/fetch", {"reader": "r1"}, format="json")
    lease = fetched.json()["lease"]
    acked = api.post(f"{url}/ack", {"lease": lease, "position": position}, format="json")
    again = api.post(f"{url}/fetch", {"reader": "r1", "lease": lease, "wait": 0}, format="json")
    assert [fetched.status_code, acked.status_code, again.status_code] == [200, 200, 200]

    refused = api.post(f"{url}/fetch", {"reader": "r1", "lease": lease, "wait": 0}, format="json")
    assert "at most 3 per minute subscribe requests" in assert_problem(refused, 429)["detail"]
    assert "write requests" in assert_problem(api.post("/api/v1/consumers/billing/pause"), 429)["detail"]


def test_a_browser_session_is_limited_like_a_token(browser_client, rates):
    rates(read="1/min")
    assert browser_client.get("/api/v1/streams").status_code == 200
    assert browser_client.get("/api/v1/streams").status_code == 429


def test_a_refused_login_spends_nothing_of_the_budget(anonymous_api, api, rates):
    rates(read="1/min")
    assert anonymous_api.get("/api/v1/streams").status_code == 401
    assert anonymous_api.get("/api/v1/streams").status_code == 401  # not 429: nobody to count it for
    assert api.get("/api/v1/streams").status_code == 200


def test_the_schema_documents_429_everywhere_and_413_where_a_body_is_sent(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert all("429" in op["responses"] for op in operations)
    assert all("413" in op["responses"] for op in operations if "requestBody" in op)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("600/min", limits.Rate(600, 60)),
        ("10/15min", limits.Rate(10, 900)),
        ("5000/h", limits.Rate(5000, 3600)),
    ],
)
def test_rates_are_written_as_count_per_period(text, rate):
    assert limits.Rate.parse(text) == rate


def test_a_rate_can_be_off_and_a_mistyped_one_says_how_to_write_it():
    assert limits.Rate.parse("off") is None
    with pytest.raises(ValueError, match="600/min"):
        limits.Rate.parse("600 a minute")


# -- failed logins --------------------------------------------------------------------------------------

WHERE = {"REMOTE_ADDR": "198.51.100.20"}


def log_in(client, username: str, password: str, **where):
    return client.post(reverse("login"), {"username": username, "password": password}, **(where or WHERE))


def test_after_too_many_failures_the_right_password_is_refused_with_429(client, operator, rates):
    rates(login_user="3/15min")
    for _ in range(3):
        assert log_in(client, "olivia", "wrong").status_code == 200

    response = log_in(client, "olivia", PASSWORD)

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 900
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # The blocked attempt was never checked: three failures audited, no login.
    assert Event.objects.filter(type="UserLoginFailed").count() == 3
    assert not Event.objects.filter(type="UserLoggedIn").exists()


def test_one_address_trying_many_usernames_is_stopped(client, operator, rates):
    rates(login_ip="3/15min")
    for name in ("a", "b", "c"):
        assert log_in(client, name, "wrong").status_code == 200

    assert log_in(client, "olivia", PASSWORD).status_code == 429
    assert log_in(client, "olivia", PASSWORD, REMOTE_ADDR="198.51.100.21").status_code == 302


def test_a_successful_login_forgets_the_usernames_failures(client, operator, rates):
    rates(login_user="3/15min")
    log_in(client, "olivia", "wrong")
    log_in(client, "olivia", "wrong")
    assert log_in(client, "olivia", PASSWORD).status_code == 302
    client.logout()

    log_in(client, "olivia", "wrong")
    log_in(client, "olivia", "wrong")

    assert log_in(client, "olivia", PASSWORD).status_code == 302


def test_the_username_limit_counts_each_username_apart(client, db, rates):
    rates(login_user="1/15min", login_ip="off")
    log_in(client, f"user-{uuid.uuid4()}", "wrong")

    assert log_in(client, f"user-{uuid.uuid4()}", "wrong").status_code == 200


def test_the_django_admin_login_counts_against_the_same_limits(client, admin_user, rates):
    rates(login_user="3/15min")
    admin_login = "/admin/login/?next=/admin/"
    log_in(client, "ada", "wrong")
    for _ in range(2):
        response = client.post(admin_login, {"username": "ada", "password": "wrong"}, **WHERE)
        assert response.status_code == 200

    refused = client.post(admin_login, {"username": "ada", "password": PASSWORD}, **WHERE)

    assert refused.status_code == 429 and "Too many failed logins" in refused.content.decode()
    assert 1 <= int(refused["Retry-After"]) <= 900
    assert "_auth_user_id" not in client.session
    assert log_in(client, "ada", PASSWORD).status_code == 429, "and the console's page says the same"


def test_a_django_admin_login_forgets_the_usernames_failures(client, admin_user, rates):
    rates(login_user="3/15min")
    admin_login = "/admin/login/?next=/admin/"
    client.post(admin_login, {"username": "ada", "password": "wrong"}, **WHERE)
    client.post(admin_login, {"username": "ada", "password": "wrong"}, **WHERE)

    assert client.post(admin_login, {"username": "ada", "password": PASSWORD}, **WHERE).status_code == 302
    client.logout()
    client.post(admin_login, {"username": "ada", "password": "wrong"}, **WHERE)
    client.post(admin_login, {"username": "ada", "password": "wrong"}, **WHERE)

    assert log_in(client, "ada", PASSWORD).status_code == 302


def test_failures_from_one_address_do_not_lock_the_username_out_elsewhere(client, operator, rates):
    rates(login_user_ip="3/15min", login_user="100/15min", login_ip="off")
    for _ in range(3):
        assert log_in(client, "olivia", "wrong").status_code == 200

    assert log_in(client, "olivia", PASSWORD).status_code == 429
    assert log_in(client, "olivia", PASSWORD, REMOTE_ADDR="198.51.100.77").status_code == 302


def test_failures_spread_over_many_addresses_lock_the_username_out(client, operator, rates):
    rates(login_user_ip="3/15min", login_user="5/15min", login_ip="off")
    for n in range(5):
        assert log_in(client, "olivia", "wrong", REMOTE_ADDR=f"198.51.100.{100 + n}").status_code == 200

    assert log_in(client, "olivia", PASSWORD, REMOTE_ADDR="198.51.100.200").status_code == 429


@pytest.mark.parametrize("spelling", ["olivia ", " olivia", "ｏｌｉｖｉａ"])
def test_a_username_spelled_as_the_login_form_reads_it_counts_against_the_same_limit(
    client, operator, rates, spelling
):
    rates(login_user="3/15min", login_user_ip="off", login_ip="off")
    for _ in range(3):
        assert log_in(client, "olivia", "wrong").status_code == 200

    assert log_in(client, spelling, "wrong").status_code == 429
    assert log_in(client, spelling, PASSWORD).status_code == 429
