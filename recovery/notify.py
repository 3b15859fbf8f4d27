"""Approvers told when a job waits for them.

When a job starts waiting for approval, a Celery task (recovery.tasks.notify_approvers, after the
request commits) sends:
- an email (Django's mail settings: EMAIL_HOST, …) to every active account whose role may approve and
  that has an address, except the requester's own account: nobody is told about their own request;
- a message to REPLAYDESK_APPROVAL_WEBHOOK_URL when set (Slack-compatible JSON: `text`, and `blocks`
  saying who asked, what, why and where to review), under the rules every sink's URL is held to
  (streams/sink_destinations.py: no loopback, private or metadata address unless REPLAYDESK_SINK_ALLOW
  admits it; no redirects followed).

What they carry: the job's kind and target, who asked, their reason, and a link to the review page
(REPLAYDESK_PUBLIC_URL + /approvals/<id>/). Not its parameters: those may name an actor or event ids,
which the review page shows to the approver behind the login (and the masking rules of their role).
What was sent, and what failed, is written to the job's log.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q

from core.roles import GRANTS, Can
from recovery import services
from recovery.models import Job
from streams import sink_destinations

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 10.0
USER_AGENT = "Replaydesk-approvals/1"


@dataclass(frozen=True)
class Notice:
    subject: str
    text: str
    link: str


@dataclass
class Sent:
    emailed: list[str] = field(default_factory=list)
    webhook: str = ""
    errors: list[str] = field(default_factory=list)


def approvers(job: Job) -> list:
    """Active accounts with an address whose role may approve, the requester's own account left out."""
    roles = [role for role, grants in GRANTS.items() if Can.APPROVE in grants]
    found = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name__in=roles) | Q(is_superuser=True))
        .exclude(email="")
        .distinct()
        .order_by("username")
    )
    if job.requested_by_user_id is not None:
        found = found.exclude(pk=job.requested_by_user_id)
    return [user for user in found if user.get_username() != job.requested_by]


def notice(job: Job) -> Notice:
    base = settings.REPLAYDESK_PUBLIC_URL.rstrip("/")
    link = f"{base}/approvals/{job.pk}/" if base else ""
    subject = f"Approval needed: {job.kind} of {job.target} (job {job.pk})"
    lines = [
        f"{job.requested_by} asks for a {job.kind} of {job.target} (job {job.pk}), which needs a second "
        "person's approval before it runs.",
        "",
        f"Why: {job.reason}",
        "",
        f"Review exactly what will run, then approve or reject it: {link}"
        if link
        else "Review it in the console, under Approvals.",
    ]
    return Notice(subject, "\n".join(lines), link)


def notify_waiting(job_id: int) -> Sent:
    """Tell the approvers of a job that waits for approval (nothing when it no longer waits)."""
    job = Job.objects.filter(pk=job_id, state=Job.State.PENDING_APPROVAL).first()
    sent = Sent()
    if job is None:
        return sent
    message = notice(job)
    if settings.REPLAYDESK_APPROVAL_EMAIL:
        _email(job, message, sent)
    if settings.REPLAYDESK_APPROVAL_WEBHOOK_URL:
        _webhook(job, message, sent)
    if sent.emailed:
        services.log(job, f"approvers told by email: {', '.join(sent.emailed)}")
    if sent.webhook:
        services.log(job, f"approval webhook: {sent.webhook}")
    for error in sent.errors:
        services.log(job, error, level="warning")
    return sent


def _email(job: Job, message: Notice, sent: Sent) -> None:
    people = approvers(job)
    if not people:
        return
    try:
        with get_connection() as connection:
            for person in people:
                EmailMessage(message.subject, message.text, to=[person.email], connection=connection).send()
                sent.emailed.append(person.get_username())
    except Exception as exc:  # smtplib's errors, a refused connection: said in the job's log, not raised
        sent.errors.append(f"approvers could not be emailed: {type(exc).__name__}: {exc}"[:500])


def _webhook(job: Job, message: Notice, sent: Sent) -> None:
    url = settings.REPLAYDESK_APPROVAL_WEBHOOK_URL
    try:
        where = sink_destinations.destination(url)
    except sink_destinations.DestinationRefused as refused:
        sent.errors.append(f"the approval webhook was not called: {refused.reason}")
        return
    body = json.dumps(slack_payload(job, message), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Host": where.host_header, "User-Agent": USER_AGENT}
    extensions = {"sni_hostname": where.sni_hostname} if where.sni_hostname else {}
    try:
        with httpx.Client(follow_redirects=False, timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
            response = client.post(where.url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        sent.errors.append(f"the approval webhook failed: {type(exc).__name__}")
        return
    if 200 <= response.status_code < 300:
        sent.webhook = f"HTTP {response.status_code}"
    else:
        sent.errors.append(f"the approval webhook answered HTTP {response.status_code}")


def slack_payload(job: Job, message: Notice) -> dict:
    """`text` for any receiver (and Slack's notification), `blocks` for Slack's own layout."""
    review = f"Review job {job.pk} in the console"
    if message.link:
        review = f"<{message.link}|Review job {job.pk}>"
    return {
        "text": f"{message.subject}: asked by {job.requested_by}. {message.link}".strip(),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Asked by*\n{job.requested_by}"},
                    {"type": "mrkdwn", "text": f"*What*\n{job.kind} of {job.target}"},
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{job.reason[:2000]}"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": review}},
        ],
    }
