"""The drill's downstream: a small search index behind a webhook, the way a real receiver would be built.

It checks each delivery's HMAC signature, keeps every event id it has taken in and gives each event its
effect once (a redelivery is counted, then ignored), and can be backed up and restored from that backup
like any other system, which is how a drill makes it lose data.
"""

from __future__ import annotations

import copy
import hmac
import json
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.sinks import SIGNATURE_HEADER, signature


class Downstream:
    def __init__(self, *, secret: str, apply: Callable[[dict[str, dict[str, Any]], dict[str, Any]], None]):
        """apply: one event's effect on the documents (the drill's data set says what it is)."""
        self.secret = secret
        self._effect = apply
        self.lock = threading.Lock()
        self.documents: dict[str, dict[str, Any]] = {}
        # Event id → times it took effect; and deliveries of events already in effect, ignored.
        self.effects: Counter[str] = Counter()
        self.ignored = 0
        self._backup: tuple[dict, Counter] | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, body: bytes, signed: str) -> int:
        """A delivery: 202, or 401 for a bad signature, or 400 for a body that is not a batch."""
        if not hmac.compare_digest(signature(self.secret, body), signed):
            return 401
        try:
            events = json.loads(body)["events"]
        except (ValueError, KeyError, TypeError):
            return 400
        with self.lock:
            for event in events:
                if event["id"] in self.effects:
                    self.ignored += 1
                    continue
                self.effects[event["id"]] += 1
                self._apply(event)
        return 202

    def _apply(self, event: dict[str, Any]) -> None:
        self._effect(self.documents, event)

    def back_up(self) -> None:
        with self.lock:
            self._backup = (copy.deepcopy(self.documents), Counter(self.effects))

    def restore_backup(self) -> int:
        """Back to the backup, as a restore of this system would be; the number of effects lost."""
        with self.lock:
            assert self._backup is not None, "no backup to restore"
            documents, effects = self._backup
            lost = len(set(self.effects) - set(effects))
            self.documents, self.effects = copy.deepcopy(documents), Counter(effects)
            return lost

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(downstream: Downstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 — the name http.server calls
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = downstream.take(body, self.headers.get(SIGNATURE_HEADER, ""))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the drill reports what matters

    return Handler
