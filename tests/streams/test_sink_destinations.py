"""Where a sink may deliver: loopback, private, link-local and metadata destinations are refused by
default when a sink is saved (service, page form, command line) and again before every delivery, also
for rows saved earlier and for names whose DNS changed since; REPLAYDESK_SINK_ALLOW admits internal
receivers; and what a failing receiver said reaches operators and admins only."""

from __future__ import annotations

import importlib
import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from pytest_django.asserts import assertContains, assertNotContains
from rest_framework.test import APIClient

from streams import consumers, sink_config, sink_destinations, sinks
from streams.models import Consumer, ParkedEvent, Sink
from streams.services import append_events
from tests.conftest import bearer_token

pytestmark = pytest.mark.django_db

SECRET = "test-secret-0123456789abcdef"
PUBLIC = ipaddress.ip_address("93.184.216.34")
# What an internal service might answer: a sink must not turn it into something support can read.
INTERNAL_ANSWER = "redis_version:7.2.4 role:master connected_clients:3"

REFUSED_URLS = [
    "http://127.0.0.1:5432/",
    "http://localhost:6379/",
    "http://[::1]:8000/",
    "http://0.0.0.0:8000/",
    "http://[::]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[::ffff:127.0.0.1]:5432/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://10.0.0.5/hook",
    "http://172.16.3.4/hook",
    "http://192.168.1.20/hook",
    "http://100.64.0.1/hook",
    "http://[fd00::1]/hook",
    "http://[fe80::1]/hook",
    "http://224.0.0.1/hook",
    "https://hook:hunter2hunter2@hooks.example.com/replaydesk",
]


class Receiver:
    """An endpoint on loopback that answers every POST with `status`, `body` and `headers`, and keeps
    the Host header of each request that reached it."""

    def __init__(self):
        self.status, self.body, self.headers = 200, b"", {}
        self.hosts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 — the name http.server calls
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hosts.append(self.headers["Host"])
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        serve = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        serve.daemon = True
        serve.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def nothing_admitted(settings):
    """The production default: no allowlist."""
    settings.REPLAYDESK_SINK_ALLOW = []


@pytest.fixture
def dns(monkeypatch):
    """Our resolver, answering from a table the test changes (as DNS can change between save and send)."""
    table: dict[str, list[str]] = {}

    def resolve(host: str, port: int):
        if host not in table:
            raise OSError(f"{host}: Name or service not known")
        return [ipaddress.ip_address(address) for address in table[host]]

    monkeypatch.setattr(sink_destinations, "resolve", resolve)
    return table


@pytest.fixture(autouse=True)
def _small_backoff(monkeypatch):
    monkeypatch.setattr(consumers, "BACKOFF_CAP_SECONDS", 0.05)


def create(url: str, **settings) -> Sink:
    defaults = {"name": "crm_hook", "secret": SECRET, "rate_per_second": 1000, "categories": ["user"]}
    return sink_config.create_sink(url=url, actor="olivia", **{**defaults, **settings})


def deliver_once(name: str = "crm_hook") -> Consumer:
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {}}])
    sinks.run_sink(name, budget_seconds=2.0)
    return Consumer.objects.get(name=name)


def logged_in(client, user):
    client.force_login(user)
    return client


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(user)}")
    return client


# --- at save


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_an_internal_destination_or_a_password_in_the_url_is_refused_and_nothing_is_written(
    nothing_admitted, url
):
    with pytest.raises(sink_config.SinkConfigError) as refused:
        create(url)

    [message] = refused.value.errors["url"]
    assert "REPLAYDESK_SINK_ALLOW" in message or "user name or password" in message
    assert not Consumer.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.5]/",
        "http://metadata.google.internal/",
    ],
)
def test_the_page_form_refuses_an_internal_destination(nothing_admitted, client, operator, url):
    form = {"name": "crm_hook", "url": url, "secret": SECRET, "rate_per_second": "50", "start": "now"}
    form |= {"batch_size": "100", "timeout_seconds": "5", "max_attempts": "8", "breaker_threshold": "5"}
    form |= {"breaker_cooldown_seconds": "30", "categories": "", "types": ""}

    response = logged_in(client, operator).post("/consumers/sinks/new", form)

    assertContains(response, "the destination is not allowed", status_code=400)
    assertContains(response, "Nothing was saved", status_code=400)
    assert not Sink.objects.exists()


def test_moving_a_sink_to_an_internal_destination_is_refused_and_changes_nothing(nothing_admitted, dns):
    dns["hooks.example.com"] = [str(PUBLIC)]
    create("https://hooks.example.com/in")

    with pytest.raises(sink_config.SinkConfigError) as refused:
        sink_config.update_sink(name="crm_hook", url="http://10.0.0.5/in", actor="olivia")

    assert refused.value.errors["url"] == [
        "10.0.0.5: the destination is not allowed (private address); see REPLAYDESK_SINK_ALLOW"
    ]
    assert Sink.objects.get().url == "https://hooks.example.com/in"


def test_a_name_that_resolves_to_a_private_address_is_refused_naming_it(nothing_admitted, dns):
    dns["hooks.example.com"] = [str(PUBLIC), "10.1.2.3"]

    with pytest.raises(sink_config.SinkConfigError) as refused:
        create("https://hooks.example.com/in")

    assert "hooks.example.com resolves to 10.1.2.3" in refused.value.errors["url"][0]


def test_the_command_line_refuses_an_internal_destination(nothing_admitted):
    with pytest.raises(CommandError, match="loopback address"):
        call_command("sink", "add", "crm_hook", "--url", "http://127.0.0.1:6379/", "--secret", SECRET)
    assert not Sink.objects.exists()


# --- the allowlist


def test_the_allowlist_admits_a_network_a_host_and_a_host_port_and_nothing_beside(settings, dns):
    settings.REPLAYDESK_SINK_ALLOW = ["10.20.0.0/16", "hooks.corp", "127.0.0.1:8000"]
    dns["hooks.corp"] = ["10.99.0.1"]
    dns["other.corp"] = ["10.99.0.1"]

    assert sink_destinations.refusal("http://10.20.3.4/in") is None
    assert sink_destinations.refusal("http://hooks.corp/in") is None
    assert sink_destinations.refusal("http://127.0.0.1:8000/demo/search-index/events") is None
    assert "private address" in sink_destinations.refusal("http://10.21.0.1/in")
    assert "other.corp resolves to 10.99.0.1" in sink_destinations.refusal("http://other.corp/in")
    assert "loopback address" in sink_destinations.refusal("http://127.0.0.1:5432/")
    assert "private address" in sink_destinations.refusal("http://[::ffff:10.21.0.1]/in")
    assert sink_destinations.refusal("http://[::ffff:10.20.0.9]/in") is None


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "hooks corp", "127.0.0.1:http", "[::1]:0"])
def test_an_allowlist_entry_that_cannot_be_read_is_named(settings, entry):
    settings.REPLAYDESK_SINK_ALLOW = [entry]

    with pytest.raises(ImproperlyConfigured, match="REPLAYDESK_SINK_ALLOW"):
        sink_destinations.allowlist()


# --- at send


def test_a_name_checked_at_save_that_resolves_to_loopback_at_send_gets_nothing_delivered(
    nothing_admitted, dns, receiver
):
    dns["hooks.example.com"] = [str(PUBLIC)]
    create(f"http://hooks.example.com:{receiver.port}/hooks")
    dns["hooks.example.com"] = ["127.0.0.1"]  # DNS rebinding: the name now points at this machine

    failed = deliver_once()

    assert receiver.hosts == []
    assert failed.last_error.endswith(
        "the destination is not allowed (loopback address); see REPLAYDESK_SINK_ALLOW"
    )
    assert "127.0.0.1" not in failed.last_error
    assert failed.last_error_detail == "hooks.example.com resolves to 127.0.0.1"
    assert failed.attempts == 1 and failed.retry_at is not None  # retried, then parked, as failures are


def test_a_row_saved_before_the_check_is_refused_at_send(nothing_admitted, dns, receiver):
    dns["hooks.example.com"] = [str(PUBLIC)]
    sink = create("https://hooks.example.com/in")
    Sink.objects.filter(pk=sink.pk).update(url=receiver.url)

    failed = deliver_once()

    assert receiver.hosts == []
    assert "not allowed (loopback address)" in failed.last_error


def test_a_row_with_a_password_in_its_url_is_refused_at_send(receiver):
    sink = create(receiver.url)
    Sink.objects.filter(pk=sink.pk).update(url=f"http://hook:hunter2@127.0.0.1:{receiver.port}/hooks")

    failed = deliver_once()

    assert receiver.hosts == []
    assert "holds a user name or password" in failed.last_error and "hunter2" not in failed.last_error


def test_an_admitted_name_is_sent_to_the_address_checked_with_its_own_host_header(settings, dns, receiver):
    settings.REPLAYDESK_SINK_ALLOW = ["127.0.0.0/8"]
    dns["hooks.example.com"] = ["127.0.0.1"]
    create(f"http://hooks.example.com:{receiver.port}/hooks")

    delivered = deliver_once()

    assert receiver.hosts == [f"hooks.example.com:{receiver.port}"]
    assert delivered.last_error == "" and delivered.position > 0


def test_a_redirect_is_not_followed(receiver):
    receiver.status, receiver.headers = 302, {"Location": "http://169.254.169.254/latest/meta-data/"}
    create(receiver.url)

    failed = deliver_once()

    assert len(receiver.hosts) == 1
    assert "HTTP 302 from the receiver: redirects are not followed" in failed.last_error
    assert "169.254.169.254" in failed.last_error_detail


# --- who reads what a receiver said


@pytest.fixture
def failing_sink(receiver):
    """A sink whose receiver refuses with an internal service's answer: the event is parked."""
    receiver.status, receiver.body = 400, INTERNAL_ANSWER.encode()
    create(receiver.url, breaker_threshold=5)
    deliver_once()
    return Consumer.objects.get(name="crm_hook")


def test_a_failing_receivers_answer_is_kept_apart_from_the_error(failing_sink):
    parked = ParkedEvent.objects.get()

    assert failing_sink.last_error.endswith("HTTP 400 from the receiver")
    assert INTERNAL_ANSWER not in failing_sink.last_error and INTERNAL_ANSWER not in parked.error
    assert failing_sink.last_error_detail == parked.error_detail == INTERNAL_ANSWER


def test_support_sees_the_status_but_not_the_answer_on_the_page(client, support_agent, failing_sink):
    response = logged_in(client, support_agent).get("/consumers/crm_hook/")

    assertContains(response, "HTTP 400 from the receiver")
    assertNotContains(response, INTERNAL_ANSWER)
    assertNotContains(response, "redis_version")


@pytest.mark.parametrize("role", ["operator", "admin_user"])
def test_operators_and_admins_see_the_answer_on_the_page(request, client, failing_sink, role):
    response = logged_in(client, request.getfixturevalue(role)).get("/consumers/crm_hook/")

    assertContains(response, "HTTP 400 from the receiver")
    assertContains(response, INTERNAL_ANSWER, count=2)  # the last error's and the parked event's


def test_support_reads_no_answer_through_the_api(support_agent, failing_sink):
    client = api_as(support_agent)
    for path in ("/api/v1/consumers", "/api/v1/consumers/crm_hook", "/api/v1/consumers/crm_hook/parked"):
        response = client.get(path)
        assert response.status_code == 200 and "redis_version" not in response.content.decode()

    assert client.get("/api/v1/consumers/crm_hook").json()["last_error_detail"] is None
    [parked] = client.get("/api/v1/consumers/crm_hook/parked").json()["results"]
    assert parked["error"].endswith("HTTP 400 from the receiver") and parked["error_detail"] is None


def test_an_operator_reads_the_answer_through_the_api(operator, failing_sink):
    client = api_as(operator)

    assert client.get("/api/v1/consumers/crm_hook").json()["last_error_detail"] == INTERNAL_ANSWER
    [listed] = [c for c in client.get("/api/v1/consumers").json()["results"] if c["name"] == "crm_hook"]
    assert listed["last_error_detail"] == INTERNAL_ANSWER
    [parked] = client.get("/api/v1/consumers/crm_hook/parked").json()["results"]
    assert parked["error_detail"] == INTERNAL_ANSWER


def test_a_connection_error_says_no_more_than_that_to_everyone(receiver):
    create(receiver.url)
    receiver.server.shutdown()
    receiver.server.server_close()  # nothing listens on the port any more

    failed = deliver_once()

    assert failed.last_error.endswith(": could not connect to the receiver")
    assert "refused" in failed.last_error_detail.lower()


def test_errors_recorded_before_the_split_keep_only_their_short_part_for_everyone(failing_sink):
    # As the old code wrote them: the receiver's answer and a connection's text inside the error.
    old_error = f"user-1@1: HTTP 400 from the receiver: {INTERNAL_ANSWER}"
    old_stop = (
        f"3 events refused in a row by http://hooks/; the last: {old_error}. Check the sink's URL and "
        "secret, then resume it."
    )
    Consumer.objects.filter(pk=failing_sink.pk).update(last_error=old_stop, last_error_detail="")
    ParkedEvent.objects.update(
        error="user-1@1: could not reach http://10.0.0.5:6379/: ConnectError: [Errno 111]", error_detail=""
    )

    importlib.import_module("streams.migrations.0007_sink_error_detail").split_errors(django_apps, None)

    failing_sink.refresh_from_db()
    parked = ParkedEvent.objects.get()
    assert failing_sink.last_error == (
        "3 events refused in a row by http://hooks/; the last: user-1@1: HTTP 400 from the receiver. "
        "Check the sink's URL and secret, then resume it."
    )
    assert failing_sink.last_error_detail == old_stop
    assert parked.error == "user-1@1: could not connect to the receiver"
    assert "Errno 111" in parked.error_detail
