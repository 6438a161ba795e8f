"""The client address behind trusted proxies as pure decisions: X-Forwarded-For read from the right, the
PROXY protocol's v1 and v2 headers, untrusted peers' headers ignored, and the settings' checks."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest

from hedgebridge.common import auth
from hedgebridge.common.config import ConfigError
from hedgebridge.gateway.config import from_env
from hedgebridge.gateway.proxies import (
    V2_SIGNATURE,
    BadHeader,
    NeedMore,
    NotProxy,
    ProxyHeader,
    TrustedProxies,
    forwarded_hops,
    parse_address,
    parse_proxy_header,
)

BALANCER = "10.0.0.5"
TRUSTED = TrustedProxies.parse("10.0.0.0/24, 192.168.1.1, fd00::/8")


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def v2_tcp4(source: str, destination: str = "10.0.0.9", ports: tuple[int, int] = (40000, 8765)) -> bytes:
    body = socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", *ports)
    return v2(1, 0x11, body)


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_sends() -> None:
    none = TrustedProxies.parse("")
    assert not none
    assert none.client_address("203.0.113.9", ["1.1.1.1"], "2.2.2.2") == "203.0.113.9"


def test_x_forwarded_for_is_read_from_the_right_up_to_the_first_untrusted_hop() -> None:
    hops = forwarded_hops(["6.6.6.6, 198.51.100.20", "192.168.1.1"])
    assert hops == ["6.6.6.6", "198.51.100.20", "192.168.1.1"]
    # the client wrote 6.6.6.6 itself; the trusted 192.168.1.1 received the request from 198.51.100.20
    assert TRUSTED.client_address(BALANCER, hops) == "198.51.100.20"
    assert TRUSTED.client_address(BALANCER, ["198.51.100.20"]) == "198.51.100.20"
    assert TRUSTED.client_address(BALANCER, []) == BALANCER  # a trusted proxy's own request
    assert TRUSTED.client_address(BALANCER, ["10.0.0.7", "10.0.0.6"]) == "10.0.0.7"  # all trusted: the left-most
    # forms proxies write: ports, brackets, quotes, IPv4-mapped IPv6
    assert TRUSTED.client_address(BALANCER, ["198.51.100.20:5555"]) == "198.51.100.20"
    assert TRUSTED.client_address(BALANCER, ['"[2001:db8::1]:443"']) == "2001:db8::1"
    assert TRUSTED.client_address("::ffff:10.0.0.5", ["198.51.100.20"]) == "198.51.100.20"
    # something that is not an address stops the walk at the trusted proxy that passed it on
    assert TRUSTED.client_address(BALANCER, ["198.51.100.20", "unknown"]) == BALANCER


def test_an_untrusted_peers_headers_are_ignored() -> None:
    assert TRUSTED.client_address("203.0.113.9", ["1.1.1.1"]) == "203.0.113.9"
    assert TRUSTED.client_address("203.0.113.9", [], "1.1.1.1") == "203.0.113.9"
    assert TRUSTED.client_address("10.0.1.5", ["1.1.1.1"]) == "10.0.1.5"  # outside 10.0.0.0/24


def test_the_proxy_protocol_source_is_one_more_hop_of_the_chain() -> None:
    assert TRUSTED.client_address(BALANCER, [], "198.51.100.20") == "198.51.100.20"
    # a PROXY balancer in front of a trusted HTTP proxy: that proxy's X-Forwarded-For counts
    assert TRUSTED.client_address(BALANCER, ["198.51.100.20"], "192.168.1.1") == "198.51.100.20"
    # a PROXY source that is not trusted: its X-Forwarded-For does not
    assert TRUSTED.client_address(BALANCER, ["1.1.1.1"], "198.51.100.20") == "198.51.100.20"


def test_proxy_protocol_v1() -> None:
    line = b"PROXY TCP4 198.51.100.20 10.0.0.9 40000 8765\r\n"
    assert parse_proxy_header(line + b"GET /ea HTTP/1.1\r\n") == ProxyHeader(len(line), "198.51.100.20")
    six = b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 8765\r\n"
    assert parse_proxy_header(six) == ProxyHeader(len(six), "2001:db8::1")
    assert parse_proxy_header(b"PROXY UNKNOWN\r\n") == ProxyHeader(15, None)
    assert parse_proxy_header(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == ProxyHeader(35, None)
    for partial in (b"P", b"PROX", b"PROXY TCP4 198.51.100.20"):
        assert parse_proxy_header(partial) == NeedMore()
    for bad in (
        b"PROXY TCP4 198.51.100.20 10.0.0.9 40000\r\n",
        b"PROXY TCP4 2001:db8::1 10.0.0.9 1 2\r\n",
        b"PROXY TCP4 198.51.100.20 10.0.0.9 1 70000\r\n",
        b"PROXY UDP4 198.51.100.20 10.0.0.9 1 2\r\n",
        b"PROXY " + b"x" * 200,
    ):
        assert isinstance(parse_proxy_header(bad), BadHeader), bad
    assert parse_proxy_header(b"GET /ea HTTP/1.1\r\n") == NotProxy()
    assert parse_proxy_header(b"POST / HTTP/1.1\r\n") == NotProxy()
    assert parse_proxy_header(line, versions=(2,)) == NotProxy()  # only the configured version is looked for


def test_proxy_protocol_v2() -> None:
    header = v2_tcp4("198.51.100.20")
    assert parse_proxy_header(header + b"GET /") == ProxyHeader(len(header), "198.51.100.20")
    source6 = ipaddress.IPv6Address("2001:db8::7")
    body6 = source6.packed + ipaddress.IPv6Address("2001:db8::9").packed + struct.pack("!HH", 1, 2)
    assert parse_proxy_header(v2(1, 0x21, body6)) == ProxyHeader(16 + 36, "2001:db8::7")
    mapped = ipaddress.IPv6Address("::ffff:198.51.100.20").packed + bytes(16) + bytes(4)
    assert parse_proxy_header(v2(1, 0x21, mapped)) == ProxyHeader(16 + 36, "198.51.100.20")
    assert parse_proxy_header(v2(0, 0x00, b"")) == ProxyHeader(16, None)  # LOCAL: the balancer's health check
    assert parse_proxy_header(v2(1, 0x00, b"")) == ProxyHeader(16, None)  # AF_UNSPEC
    with_tlvs = v2(1, 0x11, v2_tcp4("198.51.100.21")[16:] + b"\x04\x00\x01x")  # TLVs after the addresses
    assert parse_proxy_header(with_tlvs) == ProxyHeader(len(with_tlvs), "198.51.100.21")
    for cut in (1, 11, 12, 15, len(header) - 1):
        assert parse_proxy_header(header[:cut]) == NeedMore(), cut
    assert isinstance(parse_proxy_header(V2_SIGNATURE + b"\x11\x11\x00\x00"), BadHeader)  # version 1 in a v2 header
    assert isinstance(parse_proxy_header(V2_SIGNATURE + b"\x25\x11\x00\x00"), BadHeader)  # command 5
    assert isinstance(parse_proxy_header(v2(1, 0x11, b"\x01\x02")), BadHeader)  # too short for AF_INET
    assert parse_proxy_header(header, versions=(1,)) == NotProxy()


def test_addresses_as_proxies_write_them() -> None:
    assert str(parse_address("1.2.3.4")) == "1.2.3.4"
    assert str(parse_address("1.2.3.4:80")) == "1.2.3.4"
    assert str(parse_address("[::1]:80")) == "::1"
    assert str(parse_address("::ffff:1.2.3.4")) == "1.2.3.4"
    assert parse_address("unknown") is None
    assert parse_address("_hidden") is None


def _env(**values: str) -> dict[str, str]:
    env = {"HEDGEBRIDGE_JWT_SECRET": auth.new_secret()}
    env.update({f"HEDGEBRIDGE_GATEWAY_{k.upper()}": v for k, v in values.items()})
    return env


def test_proxy_settings_are_checked() -> None:
    config = from_env(_env(trusted_proxies="10.0.0.0/8, 2001:db8::/32", proxy_protocol="v2"))
    assert config.proxies.trusts(ipaddress.ip_address("10.1.2.3"))
    assert not config.proxies.trusts(ipaddress.ip_address("11.1.2.3"))
    for values, message in (
        ({"trusted_proxies": "10.0.0.0/8, balancer"}, "TRUSTED_PROXIES: not an address or CIDR: 'balancer'"),
        ({"proxy_protocol": "v3", "trusted_proxies": "10.0.0.1"}, "PROXY_PROTOCOL must be one of"),
        ({"proxy_protocol": "v1"}, "PROXY_PROTOCOL needs HEDGEBRIDGE_GATEWAY_TRUSTED_PROXIES"),
        (
            {"proxy_protocol": "any", "trusted_proxies": "10.0.0.1", "tls_cert": "c.pem", "tls_key": "k.pem"},
            "with TLS on the same listener is not supported yet",
        ),
    ):
        with pytest.raises(ConfigError, match=message):
            from_env(_env(**values))
