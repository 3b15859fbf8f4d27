"""How Replaydesk reaches a source: its DSN kept encrypted (or named by an environment variable), and
checked like a sink's URL before every connection, so that a DSN an admin typed cannot make the server
reach what it should not (its own loopback, the private network, a cloud's metadata service) unless
REPLAYDESK_SOURCE_ALLOW admits it. A DSN through a local socket counts as loopback.

The connection goes to the checked address (libpq's `hostaddr`), with the DSN's host name kept for
TLS, so a name that resolves elsewhere after the check cannot take it there. It is read-only
(`default_transaction_read_only`): following never writes to a source. Only a write-back writes, with
the DSN of a role that may, which an admin gives the source for it (`write_dsn`).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re

import psycopg
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from streams.sink_destinations import DestinationRefused, allowlist, checked_addresses
from streams.source_kinds import SourceError

SETTING = "REPLAYDESK_SOURCE_ALLOW"
CONNECT_TIMEOUT_SECONDS = 10
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,99}$")
_LOOPBACK = ipaddress.ip_address("127.0.0.1")


# --- keeping the DSN


def encrypt(dsn: str) -> str:
    return _fernet().encrypt(dsn.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SourceError(
            "the source's DSN cannot be decrypted: REPLAYDESK_SOURCE_KEY (or SECRET_KEY) changed since it "
            "was added; add the source again with its DSN"
        ) from None


def dsn_of(*, dsn_encrypted: str, dsn_env: str) -> str:
    if dsn_env:
        found = os.environ.get(dsn_env, "")
        if not found:
            raise SourceError(f"the environment variable {dsn_env} that holds the source's DSN is not set")
        return found
    return decrypt(dsn_encrypted)


@functools.cache
def _fernet_for(key: str, secret_key: str) -> Fernet:
    if key:
        return Fernet(key.encode())
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"replaydesk source dsn").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _fernet() -> Fernet:
    return _fernet_for(settings.REPLAYDESK_SOURCE_KEY, settings.SECRET_KEY)


# --- connecting


def checked_conninfo(dsn: str) -> str:
    """The DSN with each host's checked address as `hostaddr`; SourceError when it cannot be read or
    may not be reached. Says which host, never the DSN (it may hold a password)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise SourceError("the DSN cannot be read: give a postgresql:// URL or key=value pairs") from None
    if params.get("hostaddr"):
        raise SourceError(
            "give the source's host as host=, not hostaddr= (Replaydesk resolves and checks it)"
        )
    hosts = [host for host in str(params.get("host") or "").split(",") if host]
    ports = [port for port in str(params.get("port") or "").split(",") if port] or ["5432"]
    if not hosts:
        raise SourceError("the DSN names no host: give host= (a local socket is used only when named)")
    rules = allowlist(SETTING)
    addresses = []
    for index, host in enumerate(hosts):
        port = int(ports[index] if index < len(ports) else ports[-1])
        addresses.append(_checked(host, port, rules))
    if all(address == "" for address in addresses):
        return make_conninfo(dsn, connect_timeout=params.get("connect_timeout") or CONNECT_TIMEOUT_SECONDS)
    return make_conninfo(
        dsn,
        hostaddr=",".join(addresses),
        connect_timeout=params.get("connect_timeout") or CONNECT_TIMEOUT_SECONDS,
    )


def _checked(host: str, port: int, rules) -> str:
    """The address to connect to for `host` ("" for a local socket's directory)."""
    if host.startswith("/") or host.startswith("@"):
        if not any(rule.admits_address(_LOOPBACK, port) for rule in rules):
            raise SourceError(
                f"the source may not be reached: {host} is a local socket, which counts as loopback; "
                f"see {SETTING}"
            )
        return ""
    try:
        found = checked_addresses(host.lower(), port, rules=rules, setting=SETTING, resolve_failure_ok=False)
    except DestinationRefused as refused:
        detail = f" ({refused.detail})" if refused.detail else ""
        raise SourceError(f"the source may not be reached{detail}: {refused.reason}") from None
    return str(found[0])


def connect(dsn: str, *, writes: bool = False) -> psycopg.Connection:
    """A connection to the source, autocommit (each read takes its own transaction): read-only, unless
    it is a write-back's (`writes`)."""
    conninfo = checked_conninfo(dsn)
    try:
        connection = psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        raise SourceError(f"cannot connect to the source: {_first_line(exc)}") from None
    if not writes:
        connection.execute("SET default_transaction_read_only = on")
    return connection


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
