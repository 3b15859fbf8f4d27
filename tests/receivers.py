"""A downstream system on loopback for the tests that deliver to one: it checks each delivery's
signature, takes in each event id once (its effect), counts every arrival over the wire, and can answer
a while after taking the events in, so that a sender killed while waiting has had its effect and will
send the same events again."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streams.sinks import SIGNATURE_HEADER


class Receiver:
    def __init__(self, secret: str, *, answer_after: float = 0.0):
        self.secret = secret.encode()
        self.answer_after = answer_after
        self.lock = threading.Lock()
        self.kept: dict[str, dict] = {}  # each event taken in, by id, in the order it first arrived
        self.effects: Counter = Counter()  # what each event did to this system (1 = applied once)
        self.received: Counter = Counter()  # how often each id came over the wire
        self.batch_sizes: list[int] = []  # events in each POST, in the order they came
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/events"

    @property
    def positions(self) -> dict[str, int]:
        """Each event id taken in, with its position, in the order they arrived."""
        with self.lock:
            return {event_id: event["position"] for event_id, event in self.kept.items()}

    def signed(self, body: bytes, signature: str) -> bool:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def take(self, events: list[dict]) -> None:
        with self.lock:
            self.batch_sizes.append(len(events))
            for event in events:
                self.received[event["id"]] += 1
                if event["id"] not in self.kept:
                    self.kept[event["id"]] = event
                    self.effects[event["id"]] += 1

    def lose_after(self, position: int) -> int:
        """The receiver is restored from an old backup: what came after `position` is gone."""
        with self.lock:
            lost = [i for i, event in self.kept.items() if event["position"] > position]
            for event_id in lost:
                del self.kept[event_id]
                del self.effects[event_id]
            return len(lost)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 — the name http.server calls
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if not receiver.signed(body, self.headers.get(SIGNATURE_HEADER, "")):
                self._answer(401)
                return
            receiver.take(json.loads(body)["events"])
            time.sleep(receiver.answer_after)
            self._answer(200)

        def _answer(self, status: int) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender died waiting

        def log_message(self, *args):
            pass

    return Handler
