"""The real client address behind trusted proxies (pure code, no I/O).

The gateway's limits and logs apply to the address of the client, which is the TCP peer unless that peer is
a proxy the operator trusts (``HEDGEBRIDGE_GATEWAY_TRUSTED_PROXIES``, CIDRs). A trusted proxy says whom it
forwards for in one of two ways, each configured explicitly:

- ``X-Forwarded-For``: every proxy appends the address it received the request from. The hops are read
  from the right; the first one that is not a trusted proxy is the client (the ones to its left were written
  by the client itself and are ignored). A hop that is not an address ends the walk at the trusted proxy on
  its right. Headers from an untrusted peer are ignored.
- The PROXY protocol (HAProxy's, v1 text or v2 binary): a header before the first byte of HTTP carrying the
  original source address. ``parse_proxy_header`` reads it; a trusted peer must send it, an untrusted
  peer's header is read past and ignored. ``LOCAL`` (v2) and ``UNKNOWN`` (v1), used by balancers for their
  own health checks, carry no client: the peer is the address.

``client_address`` walks one chain: the X-Forwarded-For hops, then the PROXY header's source, then the TCP
peer (right-most), so a PROXY balancer in front of an HTTP proxy works too.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

PROXY_MODES = ("off", "v1", "v2", "any")  # HEDGEBRIDGE_GATEWAY_PROXY_PROTOCOL
V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CRLF included (the specification's bound)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER = 16  # signature, version/command, family/transport, length
V2_MAX = V2_HEADER + 65535


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); ValueError names the one that is not."""
    networks: list[Network] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {item!r}") from None
    return tuple(networks)


def parse_address(text: str) -> Address | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:80``), IPv4-mapped
    IPv6 as IPv4; None when it is not one (``unknown``, an obfuscated name, garbage)."""
    value = text.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_hops(header_values: Iterable[str]) -> list[str]:
    """The hops of every ``X-Forwarded-For`` header, in order (several headers are one list)."""
    return [hop.strip() for value in header_values for hop in value.split(",") if hop.strip()]


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        return cls(parse_networks(text))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client_address(self, peer: str, forwarded_for: Sequence[str] = (), proxied: str | None = None) -> str:
        """The address the limits apply to: the right-most hop of (X-Forwarded-For…, PROXY source, peer) that
        is not a trusted proxy; headers count only to the left of trusted hops."""
        chain = [*forwarded_for, *([proxied] if proxied else []), peer]
        nearest = parse_address(peer)
        if nearest is None:  # not an IP peer (a Unix socket): as the socket names it
            return peer
        for hop in reversed(chain[:-1]):
            if not self.trusts(nearest):
                break
            address = parse_address(hop)
            if address is None:  # a trusted proxy passed on something that is not an address: stop at it
                break
            nearest = address
        return str(nearest)


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A complete PROXY header: its length in bytes and the client's address (None: LOCAL or UNKNOWN)."""

    consumed: int
    source: str | None


@dataclass(frozen=True, slots=True)
class NeedMore:
    """The bytes so far may be the start of a header: wait for more."""


@dataclass(frozen=True, slots=True)
class NotProxy:
    """The bytes do not start with a PROXY header (of the versions looked for)."""


@dataclass(frozen=True, slots=True)
class BadHeader:
    """A PROXY header that cannot be read; the connection is dropped."""

    reason: str


Parsed = ProxyHeader | NeedMore | NotProxy | BadHeader


def versions_of(mode: str) -> tuple[int, ...]:
    return {"v1": (1,), "v2": (2,), "any": (1, 2)}.get(mode, ())


def parse_proxy_header(data: bytes, versions: Sequence[int] = (1, 2)) -> Parsed:
    """Read a PROXY header of one of ``versions`` at the start of ``data``."""
    if 2 in versions and _may_start(data, V2_SIGNATURE):
        return _parse_v2(data) if len(data) >= len(V2_SIGNATURE) else NeedMore()
    if 1 in versions and _may_start(data, V1_PREFIX):
        return _parse_v1(data) if len(data) >= len(V1_PREFIX) else NeedMore()
    return NotProxy()


def _may_start(data: bytes, prefix: bytes) -> bool:
    n = min(len(data), len(prefix))
    return data[:n] == prefix[:n]


def _parse_v1(data: bytes) -> Parsed:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        return NeedMore() if len(data) < V1_MAX else BadHeader("PROXY v1 line longer than 107 bytes")
    try:
        fields = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        return BadHeader("PROXY v1 line is not ASCII")
    consumed = end + 2
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(consumed, None)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        return BadHeader("PROXY v1 line is not 'PROXY TCP4|TCP6 src dst sport dport'")
    _, family, source, destination, source_port, destination_port = fields
    try:
        addresses = ipaddress.ip_address(source), ipaddress.ip_address(destination)
        ports = int(source_port), int(destination_port)
    except ValueError:
        return BadHeader("PROXY v1 addresses or ports are not valid")
    wanted = 4 if family == "TCP4" else 6
    if any(a.version != wanted for a in addresses) or not all(0 <= p <= 65535 for p in ports):
        return BadHeader(f"PROXY v1 {family} addresses or ports are not valid")
    return ProxyHeader(consumed, str(addresses[0]))


def _parse_v2(data: bytes) -> Parsed:
    if len(data) < V2_HEADER:
        return NeedMore()
    version_command, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if version_command >> 4 != 2:
        return BadHeader("PROXY v2 header with another version")
    command = version_command & 0x0F
    if command not in (0, 1):
        return BadHeader("PROXY v2 command is neither LOCAL nor PROXY")
    consumed = V2_HEADER + length
    if len(data) < consumed:
        return NeedMore()
    body = data[V2_HEADER:consumed]
    if command == 0:  # LOCAL: the proxy's own connection (a health check)
        return ProxyHeader(consumed, None)
    address_family = family >> 4
    if address_family == 1 and len(body) >= 12:  # AF_INET: src, dst (4 bytes each), ports
        return ProxyHeader(consumed, str(ipaddress.IPv4Address(body[:4])))
    if address_family == 2 and len(body) >= 36:  # AF_INET6: src, dst (16 bytes each), ports
        source = ipaddress.IPv6Address(body[:16])
        return ProxyHeader(consumed, str(source.ipv4_mapped or source))
    if address_family in (0, 3):  # AF_UNSPEC, AF_UNIX: no IP client to name
        return ProxyHeader(consumed, None)
    return BadHeader("PROXY v2 address block is too short for its family")
