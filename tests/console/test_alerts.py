"""deploy/: the Prometheus alert rules pass promtool, and every metric, label and label value that an
alert or a Grafana panel uses is one that /metrics exports, read off a real scrape of a console with a
consumer, a subscription, a source, jobs in every open state, a failed job, a waiting approval and a
drill."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from recovery import services
from recovery.models import Job
from streams import subscriptions
from streams.consumers import run_projection
from streams.services import append_events
from tests.streams.source_helpers import (
    add_table_source,
    copy_all,
    source_db,  # noqa: F401 - a source's scratch database
)

pytestmark = pytest.mark.django_db

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "replaydesk-rules.yml"
DASHBOARD = DEPLOY / "grafana" / "replaydesk-dashboard.json"
# Labels Prometheus puts on every series of a scrape target.
TARGET_LABELS = {"instance", "job"}
# Words of PromQL and of Go's templates that the label patterns below also match.
NOT_LABELS = {
    "by",
    "on",
    "without",
    "ignoring",
    "group_left",
    "group_right",
    "unless",
    "and",
    "or",
    "end",
    "else",
}


@pytest.fixture(autouse=True)
def _no_projection_schemas(fresh_projection_schemas):
    """Projection schemas live outside Django's tables: each test starts without any."""


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: CI must check the alert rules (apt-get install prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    return found


def test_promtool_accepts_the_alert_rules():
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 14 rules found" in checked.stdout


def test_every_alert_has_a_severity_a_summary_a_description_and_a_link_to_its_page():
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]

    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert {"summary", "description", "console"} <= set(rule["annotations"]), rule["alert"]
        assert re.search(r"console_url.*\}\}/[a-z]", rule["annotations"]["console"]), rule["alert"]


def test_the_dashboard_is_grafana_json_on_a_chosen_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())

    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.fixture
def busy_console(source_db, operator, four_eyes):  # noqa: F811
    """Something behind every metric: a projection, a subscription, a followed source, jobs queued,
    running (with progress), waiting for approval and failed, and a finished drill."""
    append_events(stream="user-1", events=[{"type": "UserCreated", "data": {"user_id": "1"}}])
    run_projection("users_directory")
    subscriptions.create_subscription(name="billing", actor="olivia", categories=["invoice"], partitions=2)
    source_db.append("order-1", 1)
    add_table_source(source_db)
    copy_all()

    def job(kind: str, params: dict, state: str, **fields) -> Job:
        found = services.request_job(kind=kind, params=params, requested_by="someone", reason="a test")
        Job.objects.filter(pk=found.pk).update(state=state, **fields)
        return found

    job("replay", {"projection": "users_directory"}, Job.State.PENDING_APPROVAL)
    job("replay", {"projection": "users_directory"}, Job.State.FAILED, finished_at=timezone.now())
    job("snapshot", {"projection": "users_directory"}, Job.State.RUNNING, done=5, total=10)
    job("drill", {}, Job.State.SUCCEEDED, finished_at=timezone.now())


def exported(client) -> dict[str, dict[str, set[str]]]:
    """Each metric with a sample in a scrape: its labels, and the values each label takes."""
    response = client.get("/metrics")
    assert response.status_code == 200
    found: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        if not family.samples:
            continue
        labels = found.setdefault(family.name, defaultdict(set))
        for sample in family.samples:
            for label, value in sample.labels.items():
                labels[label].add(value)
    return found


def expressions() -> list[tuple[str, str, list[str]]]:
    """(where, PromQL, the texts that name labels of its result: annotations, legends)."""
    found = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"], list(rule["annotations"].values())))
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            found.append((f"panel {panel['title']!r}", target["expr"], [target["legendFormat"]]))
    return found


SELECTOR = re.compile(r"\b(replaydesk_\w+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|on|without|ignoring|group_left|group_right)\s*\(([^)]*)\)")
USED_LABEL = re.compile(r"\$labels\.(\w+)|\{\{\s*(\w+)\s*\}\}")


def test_every_metric_label_and_value_the_alerts_and_panels_use_is_exported(client, operator, busy_console):
    client.force_login(operator)
    metrics = exported(client)
    problems = []

    for where, expr, texts in expressions():
        names = {name for name, _ in SELECTOR.findall(expr)}
        assert names, f"{where}: no Replaydesk metric in {expr!r}"
        for name, matchers in SELECTOR.findall(expr):
            if name not in metrics:
                problems.append(f"{where}: {name} is not exported (or has no sample here)")
                continue
            for label, op, value in MATCHER.findall(matchers):
                if label not in metrics[name]:
                    problems.append(f"{where}: {name} has no label {label}")
                    continue
                wanted = value.split("|") if op in ("=~", "!~") else [value]
                missing = [v for v in wanted if v not in metrics[name][label]]
                if missing:
                    problems.append(f"{where}: {name}{{{label}}} never takes {missing}")
        available = TARGET_LABELS.union(*(metrics.get(name, {}).keys() for name in names))
        grouped = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")} - {""}
        used = {a or b for text in texts for a, b in USED_LABEL.findall(text)}
        for label in sorted((grouped | used) - available - NOT_LABELS):
            problems.append(f"{where}: uses the label {label}, which none of {sorted(names)} has")

    assert not problems, "\n".join(problems)


def test_the_link_of_each_alert_is_where_the_scrape_reached_the_console(client, operator, busy_console):
    client.force_login(operator)

    metrics = exported(client)

    assert metrics["replaydesk_console_info"]["console_url"] == {"http://testserver"}
    assert metrics["replaydesk_job_progress_ratio"]["kind"] == {"snapshot"}
    assert metrics["replaydesk_consumer_info"]["kind"] >= {"projection", "subscription"}
