"""Approvers are told when a job waits for them: by email through a real SMTP server on loopback
(aiosmtpd), and by a Slack-compatible webhook to a real HTTP receiver, held to the sinks' rules on
where the server may send; never the requester about their own job, never the job's parameters."""

from __future__ import annotations

import json
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from core import redis as core_redis
from recovery import notify, services
from recovery.models import Job, JobLogLine
from streams.consumers import run_projection
from tests.conftest import person
from tests.ports import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]

PARAMS = {"projection": "users_directory", "exclude": {"actor": "alice.private"}}


class Inbox:
    """An SMTP server's handler: every message it accepted, by recipient."""

    def __init__(self):
        self.messages: list[tuple[list[str], object]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.REPLAYDESK_APPROVAL_EMAIL = True
    settings.REPLAYDESK_PUBLIC_URL = "https://replaydesk.example.com"
    yield inbox
    controller.stop()


@pytest.fixture
def receiver(settings):
    """An HTTP receiver on loopback that keeps what is posted to it."""
    posted: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posted.append({"body": json.loads(body), "content_type": self.headers["Content-Type"]})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    settings.REPLAYDESK_APPROVAL_WEBHOOK_URL = f"http://127.0.0.1:{port}/hooks/approvals"
    settings.REPLAYDESK_SINK_ALLOW = [f"127.0.0.1:{port}"]
    yield posted
    server.shutdown()


@pytest.fixture
def people(four_eyes):
    run_projection("users_directory")
    return {
        "olivia": person("olivia-ops", "operator"),
        "amy": person("amy", "approver"),
        "ben": person("ben", "approver"),
        "root": person("root-admin", "admin"),
        "sam": person("sam", "support"),
    }


def waiting_job(by: str = "olivia-ops"):
    return services.request_job(kind="replay", params=PARAMS, requested_by=by, reason="names broke at 14:00")


def test_who_may_approve_is_emailed_with_who_asked_what_why_and_the_review_link(smtp, people):
    job = waiting_job()

    sent = notify.notify_waiting(job.pk)

    assert sorted(sent.emailed) == ["amy", "ben", "root-admin"]  # not the operator, not support
    assert sorted(to[0] for to, _ in smtp.messages) == [
        "amy@example.com",
        "ben@example.com",
        "root-admin@example.com",
    ]
    _, mail = smtp.messages[0]
    assert mail["Subject"] == f"Approval needed: replay of users_directory (job {job.pk})"
    text = mail.get_payload()
    assert "olivia-ops asks for a replay of users_directory" in text
    assert "Why: names broke at 14:00" in text
    assert f"https://replaydesk.example.com/approvals/{job.pk}/" in text
    assert "alice.private" not in text  # the parameters stay behind the login
    logged = list(JobLogLine.objects.filter(job=job).values_list("message", flat=True))
    assert "approvers told by email: amy, ben, root-admin" in logged


def test_an_approver_who_asks_is_not_told_about_their_own_job(smtp, people):
    job = waiting_job(by="amy")

    notify.notify_waiting(job.pk)

    assert sorted(to[0] for to, _ in smtp.messages) == ["ben@example.com", "root-admin@example.com"]


def test_the_webhook_gets_slack_compatible_json(receiver, people, settings):
    settings.REPLAYDESK_PUBLIC_URL = "https://replaydesk.example.com"
    job = waiting_job()

    sent = notify.notify_waiting(job.pk)

    assert sent.webhook == "HTTP 200"
    [post] = receiver
    assert post["content_type"] == "application/json"
    body = post["body"]
    link = f"https://replaydesk.example.com/approvals/{job.pk}/"
    assert (
        body["text"]
        == f"Approval needed: replay of users_directory (job {job.pk}): asked by olivia-ops. {link}"
    )
    blocks = json.dumps(body["blocks"])
    assert "*Asked by*\\nolivia-ops" in blocks
    assert "*Why*\\nnames broke at 14:00" in blocks
    assert f"<{link}|Review job {job.pk}>" in blocks
    assert "alice.private" not in json.dumps(body)


def test_a_webhook_to_a_loopback_address_not_allowed_is_not_called(receiver, people, settings):
    settings.REPLAYDESK_SINK_ALLOW = []
    job = waiting_job()

    sent = notify.notify_waiting(job.pk)

    assert receiver == []
    assert sent.webhook == ""
    [error] = sent.errors
    assert error.startswith("the approval webhook was not called: ")
    assert "loopback" in error
    logged = JobLogLine.objects.filter(job=job, level="warning").values_list("message", flat=True)
    assert list(logged) == [error]


def test_nothing_is_sent_for_a_job_that_no_longer_waits(smtp, receiver, people):
    job = waiting_job()
    Job.objects.filter(pk=job.pk).update(state=Job.State.REJECTED)  # decided before the task ran

    sent = notify.notify_waiting(job.pk)

    assert (sent.emailed, sent.webhook, smtp.messages, receiver) == ([], "", [], [])


def test_a_request_that_waits_queues_the_notice_for_a_worker(people):
    redis = core_redis.client()
    redis.delete("default")

    job = waiting_job()

    queued = [json.loads(raw) for raw in redis.lrange("default", 0, -1)]
    tasks = [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in queued]
    assert ("recovery.tasks.notify_approvers", f"({job.pk},)") in tasks
