"""The demo's search index is a receiver on this machine: `replaydesk up --demo` and `replaydesk demo
--search-index-url` admit its address, and only it, as a sink destination (console/cli.py)."""

from __future__ import annotations

import io
import os

import pytest
from django.core.management import CommandError, call_command

from console import cli
from streams import sink_destinations
from streams.models import Sink


@pytest.mark.parametrize(
    ("argv", "receiver"),
    [
        (["up", "--demo"], "127.0.0.1:8000"),
        (["up", "--demo", "--port", "8123"], "127.0.0.1:8123"),
        (["up", "--host=0.0.0.0", "--port=9000", "--demo"], "127.0.0.1:9000"),
        (["up", "--demo", "--host", "::"], "[::1]:8000"),
        (["demo", "--search-index-url", "http://localhost:8765"], "localhost:8765"),
        (["demo", "--search-index-url", "http://[::1]:8765/"], "[::1]:8765"),
        (["demo"], None),
        (["up", "--demo", "--port", "eighty"], None),
    ],
)
def test_the_demos_receiver_is_where_its_search_index_is_served(argv, receiver):
    assert cli.demo_receiver(argv) == receiver


def test_up_with_the_demo_admits_its_own_address_and_keeps_the_given_allowlist(monkeypatch):
    monkeypatch.setenv("REPLAYDESK_SINK_ALLOW", "hooks.corp")

    cli.admit_demo_receiver(["up", "--demo", "--port", "8123"])

    assert os.environ["REPLAYDESK_SINK_ALLOW"] == "hooks.corp,127.0.0.1:8123"


def test_the_admitted_address_lets_the_demo_sink_through_and_no_other_port(settings):
    settings.REPLAYDESK_SINK_ALLOW = [cli.demo_receiver(["up", "--demo", "--port", "8123"])]

    assert sink_destinations.refusal("http://127.0.0.1:8123/demo/search-index/events") is None
    assert "loopback address" in sink_destinations.refusal("http://127.0.0.1:5432/")


@pytest.mark.django_db
def test_the_demo_command_says_why_its_sink_was_not_made(settings):
    settings.REPLAYDESK_SINK_ALLOW = []

    internal = "http://10.0.0.5:8000"
    with pytest.raises(CommandError, match="not allowed .private address.; see REPLAYDESK_SINK_ALLOW"):
        call_command("demo", "--users", "2", "--search-index-url", internal, stdout=io.StringIO())

    assert not Sink.objects.exists()
