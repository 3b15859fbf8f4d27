"""A process that runs `Client.subscribe` in its main thread, as a service does, for the signal tests of
test_subscribe.py: `python subscriber_process.py URL SUBSCRIPTION --hold|--no-hold`, the token in
REPLAYDESK_TOKEN. It prints `handled POSITION` after each event; with --hold it prints `handling
POSITION` first and holds the handler until the loop is told to stop (by a signal)."""

from __future__ import annotations

import logging
import os
import sys
import threading

from replaydesk_client import Client, Event


def main(url: str, subscription: str, hold: str) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    stop = threading.Event()

    def handle(event: Event) -> None:
        if hold == "--hold":
            print("handling", event.position, flush=True)
            stop.wait(60)
        print("handled", event.position, flush=True)

    with Client(url, os.environ["REPLAYDESK_TOKEN"]) as client:
        client.subscribe(subscription, handle, reader="signals", wait=5, stop=stop)


if __name__ == "__main__":
    main(*sys.argv[1:])
