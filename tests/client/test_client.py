"""replaydesk-client against a real `replaydesk up` (tests/client/conftest.py): appends and their safe
retries, the errors an application handles, reads that follow `next`, and waiting for a projection."""

from __future__ import annotations

import uuid

import httpx
import pytest
from replaydesk_client import (
    Client,
    InvalidInput,
    NewEvent,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unprocessable,
    Unreachable,
    WaitTimedOut,
    WrongExpectedVersion,
)

from tests.ports import free_port

pytestmark = pytest.mark.timeout(240)


class Wire(httpx.HTTPTransport):
    """The network between the client and the server: it keeps what is sent and the status of each answer,
    and can lose the answer to the first append that succeeded on its way back, as a connection dropped
    after the server committed would."""

    def __init__(self, *, lose_first_success: bool = False):
        super().__init__()
        self.sent: list[httpx.Request] = []
        self.answers: list[int] = []
        self.lose_first_success = lose_first_success

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = super().handle_request(request)
        self.answers.append(response.status_code)
        if self.lose_first_success and request.method == "POST" and response.is_success:
            self.lose_first_success = False
            response.close()
            raise httpx.ReadError("the connection dropped before the answer arrived", request=request)
        return response


@pytest.fixture
def client(server):
    with Client(server.url, server.token) as client:
        yield client


def refused_once(wire: Wire) -> list[int]:
    """The answers apart from the rate limit's (appends are limited to a few a second here, and the
    client waits and tries again after a 429, as told)."""
    return [status for status in wire.answers if status != 429]


def fresh(category: str = "order") -> str:
    return f"{category}-{uuid.uuid4().hex[:12]}"


def placed(n: int) -> list[NewEvent]:
    return [NewEvent(type="OrderLinePlaced", data={"line": i}) for i in range(1, n + 1)]


def test_an_append_whose_answer_was_lost_is_retried_and_recorded_once(server):
    stream = fresh()
    wire = Wire(lose_first_success=True)
    with Client(server.url, server.token, transport=wire) as client:
        result = client.append(stream, placed(2), expected_version="no_stream")
        events = list(client.read_stream(stream))

    appends = [request.content for request in wire.sent if request.method == "POST"]
    assert len(appends) >= 2 and len(set(appends)) == 1  # tried again, with the same ids
    assert result.replayed
    assert (result.version, result.first_sequence) == (2, 1)
    assert [event.id for event in events] == list(result.event_ids)
    assert [event.position for event in events] == list(result.positions)
    assert result.position == events[-1].position
    assert events[0].appended_by == "user:admin"
    assert events[0].recorded_at.tzinfo is not None


def test_the_same_batch_sent_again_gets_the_original_result(client):
    stream = fresh()
    batch = [NewEvent(type="OrderPlaced", data={"total": 42}, id=uuid.uuid4())]

    first = client.append(stream, batch, expected_version="no_stream")
    again = client.append(stream, batch, expected_version="no_stream")

    assert not first.replayed and again.replayed
    assert again.event_ids == first.event_ids
    assert (again.version, again.positions) == (first.version, first.positions)
    assert len(list(client.read_stream(stream))) == 1


def test_a_wrong_expected_version_says_the_current_one_and_is_not_retried(server):
    stream = fresh()
    wire = Wire()
    with Client(server.url, server.token, transport=wire) as client:
        client.append(stream, placed(3))
        with pytest.raises(WrongExpectedVersion) as refused:
            client.append(stream, placed(1), expected_version=1)
        # Decide again from the current version, as an application would.
        result = client.append(stream, placed(1), expected_version=refused.value.current_version)

    assert refused.value.current_version == 3
    assert refused.value.status == 409
    assert refused.value.type == "urn:replaydesk:problem:wrong-expected-version"
    assert result.version == 4
    assert refused_once(wire) == [201, 409, 201]


def test_invalid_input_names_the_field_writes_nothing_and_is_not_retried(server):
    stream = fresh()
    wire = Wire()
    with Client(server.url, server.token, transport=wire) as client:
        with pytest.raises(InvalidInput) as refused:
            client.append(stream, [{"type": "1bad", "data": {}}, {"type": "Fine", "data": {}}])
        with pytest.raises(NotFound):
            list(client.read_stream(stream))

    assert refused.value.status == 400
    assert list(refused.value.errors) == ["events[0].type"]
    assert "letter" in refused.value.errors["events[0].type"][0]
    assert refused_once(wire) == [400, 404]  # the append once, then the read


def test_ids_reused_for_other_events_are_unprocessable(client):
    stream = fresh()
    event_id = uuid.uuid4()
    client.append(stream, [NewEvent(type="OrderPlaced", data={"total": 42}, id=event_id)])

    with pytest.raises(Unprocessable) as refused:
        client.append(stream, [NewEvent(type="OrderPlaced", data={"total": 99}, id=event_id)])

    assert refused.value.status == 422
    assert refused.value.errors
    assert [event.data for event in client.read_stream(stream)] == [{"total": 42}]


def test_read_stream_follows_next_across_small_pages_both_ways(server):
    stream = fresh()
    wire = Wire()
    with Client(server.url, server.token, transport=wire) as client:
        client.append(stream, placed(7))
        forward = [event.sequence for event in client.read_stream(stream, page_size=2)]
        reads = [request.url.params.get("cursor") for request in wire.sent if request.method == "GET"]
        backward = [e.sequence for e in client.read_stream(stream, direction="backward", page_size=3)]
        middle = [e.data["line"] for e in client.read_stream(stream, from_sequence=3, page_size=2)]

    assert forward == [1, 2, 3, 4, 5, 6, 7]
    assert reads == [None, "3", "5", "7"]
    assert backward == [7, 6, 5, 4, 3, 2, 1]
    assert middle == [3, 4, 5, 6, 7]


def test_read_all_follows_next_with_filters_and_goes_on_after_a_position(client):
    category = f"cart{uuid.uuid4().hex[:8]}"
    first = client.append(f"{category}-1", placed(3))
    client.append(fresh(), placed(2))  # another category, not in the reads below
    second = client.append(f"{category}-2", [*placed(2), NewEvent(type="CartClosed", data={})])

    everything = list(client.read_all(category=category, page_size=2))
    later = list(client.read_all(category=category, after_position=first.position, page_size=2))
    closed = list(client.read_all(category=category, type=["CartClosed"]))
    by_data = list(client.read_all(category=category, data={"line": "2"}))

    assert [event.position for event in everything] == [*first.positions, *second.positions]
    assert [event.position for event in later] == list(second.positions)
    assert [event.type for event in closed] == ["CartClosed"]
    assert [event.stream for event in by_data] == [f"{category}-1", f"{category}-2"]


def test_past_the_rate_limit_an_append_is_refused_with_retry_after_and_nothing_written(server, client):
    stream = fresh()
    client.append(stream, placed(1))
    written = 1
    # Told to come back in a second, a client that waits half a second at most raises at once.
    with Client(server.url, server.token, max_wait=0.5) as impatient:
        with pytest.raises(RateLimited) as refused:
            for _ in range(200):
                impatient.append(stream, placed(1))
                written += 1
        events = list(impatient.read_stream(stream))

    assert refused.value.status == 429
    assert refused.value.retry_after == 1
    assert len(events) == written


def test_a_burst_past_the_rate_limit_lands_whole_when_the_client_waits_as_told(client):
    stream = fresh()

    results = [client.append(stream, placed(1)) for _ in range(12)]

    assert [result.version for result in results] == list(range(1, 13))
    assert len(list(client.read_stream(stream))) == 12


def user_created() -> tuple[str, NewEvent]:
    user_id = uuid.uuid4().hex[:12]
    event = NewEvent(
        type="UserCreated",
        data={"user_id": user_id, "username": user_id, "name": "Ada", "email": f"{user_id}@example.com"},
    )
    return user_id, event


def test_wait_for_returns_once_the_projection_has_applied_the_append(client):
    user_id, event = user_created()
    result = client.append(f"user-{user_id}", [event])

    checkpoint = client.wait_for("users_directory", result.position)

    assert checkpoint >= result.position
    assert client.get(f"/api/v1/demo/users/{user_id}")["email"] == f"{user_id}@example.com"


@pytest.fixture
def paused_users_directory(server):
    operator = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"})
    operator.post("/api/v1/consumers/users_directory/pause").raise_for_status()
    try:
        yield
    finally:
        operator.post("/api/v1/consumers/users_directory/resume").raise_for_status()
        operator.close()


def test_waiting_for_a_paused_projection_times_out_and_says_so(client, paused_users_directory):
    user_id, event = user_created()
    result = client.append(f"user-{user_id}", [event])

    with pytest.raises(WaitTimedOut) as waited:
        client.wait_for("users_directory", result.position, timeout=0.5)

    assert waited.value.health == "paused"
    assert waited.value.checkpoint < result.position
    assert waited.value.position == result.position


def test_a_projection_read_not_applied_in_time_is_unavailable_with_retry_after(
    server, client, paused_users_directory
):
    user_id, event = user_created()
    result = client.append(f"user-{user_id}", [event])

    with Client(server.url, server.token, retries=0) as impatient:
        with pytest.raises(Unavailable) as refused:
            impatient.get(f"/api/v1/demo/users/{user_id}", {"min_position": result.position})

    assert refused.value.status == 503
    assert refused.value.retry_after == 1
    assert refused.value.problem["checkpoint"] < result.position


def test_a_position_no_event_has_is_unprocessable_at_once(client):
    with pytest.raises(Unprocessable) as refused:
        client.get("/api/v1/demo/users/nobody", {"min_position": 10**15})

    assert list(refused.value.errors) == ["min_position"]


def test_an_unknown_consumer_is_not_found(client):
    with pytest.raises(NotFound):
        client.wait_for("no_such_consumer", 1, timeout=1)


def test_a_wrong_token_is_unauthorized(server):
    with Client(server.url, "rd_00000000_wrong") as stranger, pytest.raises(Unauthorized):
        stranger.append(fresh(), placed(1))


def test_no_server_is_unreachable_after_the_retries():
    wire, nowhere = Wire(), f"http://127.0.0.1:{free_port()}"
    with Client(nowhere, "rd_x_y", retries=2, backoff=0.01, transport=wire) as client:
        with pytest.raises(Unreachable):
            client.append(fresh(), placed(1))

    assert len(wire.sent) == 3
    assert len({request.content for request in wire.sent}) == 1
