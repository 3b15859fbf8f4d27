"""A free TCP port on loopback, for servers the tests start (S3, SMTP, an OpenID provider, Redis, …)."""

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
