"""A free TCP port on loopback, for servers the tests start (S3, SMTP, an OpenID provider, Redis, …).

Not bind(0): the kernel picks from its ephemeral range for every process, so two pytest-xdist workers
could each be handed the same port before either server had bound it. Each worker draws from its own
block, below the ephemeral range (32768 up on Linux, where outgoing connections take their ports), and
never hands out the same port twice.
"""

import os
import random
import socket

FIRST, BLOCK, BLOCKS = 20_000, 1_200, 10
_handed_out: set[int] = set()


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    start = FIRST + (int(worker) % BLOCKS if worker.isdigit() else 0) * BLOCK
    ports = list(range(start, start + BLOCK))
    random.shuffle(ports)
    for port in ports:
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or lingering after a server that used it
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port left in {start}–{start + BLOCK - 1} for this test worker")
