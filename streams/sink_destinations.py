"""Where a sink may deliver: a sink's URL is typed by an operator and fetched by the server, so without a
check it would reach what only the server can (its own loopback, the private network, a cloud's
metadata service) and report what it found. docs/architecture.md, "Consumer kinds", Sink destinations.

By default a URL whose host is, or resolves to, a loopback, private, unique-local, link-local, shared
(carrier-grade NAT), multicast, reserved or unspecified address is refused, and so are names that only
an internal resolver answers (`*.internal`, such as metadata.google.internal; `*.localhost`; `metadata`).
IPv4 addresses inside IPv6 ones (`::ffff:a.b.c.d`, NAT64, 6to4) are judged as the IPv4 address.
`REPLAYDESK_SINK_ALLOW` admits internal receivers: comma-separated host names, IP addresses and CIDR
networks, each optionally with `:port` (`[v6]:port` for IPv6), e.g. `hooks.corp,10.20.0.0/16,127.0.0.1:8000`.
A URL may not hold a user name or password either.

The check runs when a sink is saved (`refusal`) and again before every delivery (`destination`), which
resolves the host once, checks every address and gives the address to connect to, so a name that
resolves elsewhere between the check and the connection (DNS rebinding) cannot take a delivery there.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "REPLAYDESK_SINK_ALLOW"
_NAME_RE = re.compile(r"^[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_])?$")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# Answered only by a private resolver (a cloud's metadata service among them), so a check where they
# do not resolve must not let them pass to where they do.
_INTERNAL_SUFFIXES = (".internal", ".localhost")
_INTERNAL_NAMES = {"metadata"}


class DestinationRefused(Exception):
    """A sink may not deliver to this URL. `reason` is short and names no address (every role reads a
    sink's last error); `detail` says which name resolved to which address, for operators."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(reason)


@dataclass(frozen=True)
class Destination:
    """Where to send a delivery: the checked address in `url`, with the URL's own host kept for the
    Host header and for TLS (server name and certificate check)."""

    url: httpx.URL
    host_header: str
    sni_hostname: str | None


@dataclass(frozen=True)
class Rule:
    """One entry of the allowlist: a host name or a network, on any port or one."""

    host: str | None = None
    network: Network | None = None
    port: int | None = None

    def admits_host(self, host: str, port: int) -> bool:
        return self.host is not None and self.host == host and self.port in (None, port)

    def admits_address(self, address: Address, port: int) -> bool:
        return (
            self.network is not None
            and self.port in (None, port)
            and any(candidate in self.network for candidate in {address, _embedded(address)})
        )


def refusal(url: str) -> str | None:
    """Why a sink may not be saved with this URL (an http(s) URL already), or None. A host that does not
    resolve here is let through: the check before each delivery decides with what it resolves to then."""
    try:
        _check(url, resolve_failure_ok=True)
    except DestinationRefused as refused:
        return f"{refused.detail}: {refused.reason}" if refused.detail else refused.reason
    return None


def destination(url: str) -> Destination:
    """The checked address to deliver to for this URL; DestinationRefused when it may not be used."""
    return _check(url, resolve_failure_ok=False)


def allowlist(setting: str = SETTING) -> tuple[Rule, ...]:
    """REPLAYDESK_SINK_ALLOW (or another allowlist setting of the same form), parsed;
    ImproperlyConfigured names an entry it cannot read."""
    return _parse(tuple(getattr(settings, setting)), setting)


def resolve(host: str, port: int) -> list[Address]:
    """Every address the host resolves to, in the resolver's order (one lookup; tests replace this to
    play a DNS change)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def kind_refused(address: Address) -> str | None:
    """What kind of address this is when a sink may not reach it by default; None for a public one."""
    address = _embedded(address)
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.version == 4 and address in _SHARED:
        return "shared (carrier-grade NAT)"
    if address.version == 6 and address in _UNIQUE_LOCAL:
        return "unique-local"
    if address.is_private:
        return "private"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


# --- the check


def _check(url: str, *, resolve_failure_ok: bool) -> Destination:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise DestinationRefused("the URL cannot be read", str(exc)) from None
    if parsed.userinfo:
        raise DestinationRefused(
            "the URL holds a user name or password, which sinks do not send: give the URL without it "
            "(receivers check the X-Replaydesk-Signature header)"
        )
    host = parsed.raw_host.decode("ascii").rstrip(".").lower()
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = checked_addresses(
        host, port, rules=allowlist(), setting=SETTING, resolve_failure_ok=resolve_failure_ok
    )
    return _destination(parsed, host, addresses)


def checked_addresses(
    host: str, port: int, *, rules: tuple[Rule, ...], setting: str, resolve_failure_ok: bool
) -> list[Address]:
    """The addresses of `host` the server may connect to on `port`: each one it resolves to is checked
    (DestinationRefused names the first that may not be reached, and `setting`, the allowlist that
    would admit it). Empty when it does not resolve and `resolve_failure_ok`."""
    literal = _literal(host)
    if literal is None and any(rule.admits_host(host, port) for rule in rules):
        return _addresses(host, port, resolve_failure_ok)
    if literal is None and (host in _INTERNAL_NAMES or host.endswith(_INTERNAL_SUFFIXES)):
        raise DestinationRefused(
            f"the destination is not allowed (a name only an internal resolver answers); see {setting}",
            host,
        )
    addresses = [literal] if literal is not None else _addresses(host, port, resolve_failure_ok)
    for address in addresses:
        kind = kind_refused(address)
        if kind and not any(rule.admits_address(address, port) for rule in rules):
            raise DestinationRefused(
                f"the destination is not allowed ({kind} address); see {setting}",
                str(address) if literal is not None else f"{host} resolves to {address}",
            )
    return addresses


def _addresses(host: str, port: int, resolve_failure_ok: bool) -> list[Address]:
    try:
        return resolve(host, port)
    except (OSError, UnicodeError) as exc:
        if resolve_failure_ok:
            return []
        raise DestinationRefused("the receiver's host name did not resolve", f"{host}: {exc}") from None


def _destination(parsed: httpx.URL, host: str, addresses: list[Address]) -> Destination:
    host_header = parsed.netloc.decode("ascii")
    if not addresses:  # saving a name that does not resolve here: nothing connects to it
        return Destination(url=parsed, host_header=host_header, sni_hostname=None)
    # The resolver's first choice; every address it gave was checked.
    named = _literal(host) is None
    return Destination(
        url=parsed.copy_with(host=str(addresses[0])),
        host_header=host_header,
        sni_hostname=host if named and parsed.scheme == "https" else None,
    )


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded(address: Address) -> Address:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), else the address itself."""
    if address.version == 4:
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour or address


# --- the allowlist


@functools.lru_cache(maxsize=8)
def _parse(entries: tuple[str, ...], setting: str) -> tuple[Rule, ...]:
    return tuple(_rule(entry, setting) for entry in entries)


def _rule(entry: str, setting: str) -> Rule:
    target, port = entry.strip(), None
    if target.startswith("["):
        target, _, rest = target[1:].partition("]")
        port = _port(entry, rest.removeprefix(":"), setting) if rest else None
    elif target.count(":") == 1:
        target, _, given = target.partition(":")
        port = _port(entry, given, setting)
    try:
        return Rule(network=ipaddress.ip_network(target, strict=False), port=port)
    except ValueError:
        pass
    name = target.rstrip(".").lower()
    if not _NAME_RE.match(name):
        raise ImproperlyConfigured(
            f"{setting}: {entry!r} is neither a host name, an IP address nor a CIDR network "
            "(e.g. hooks.corp, 10.20.0.0/16, 127.0.0.1:8000, [::1]:8000)"
        )
    return Rule(host=name, port=port)


def _port(entry: str, given: str, setting: str) -> int:
    if not given.isdigit() or not 0 < int(given) < 65536:
        raise ImproperlyConfigured(f"{setting}: {entry!r} has no port 1–65535 after its ':'")
    return int(given)
