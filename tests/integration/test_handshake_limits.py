"""The handshake limits and trusted proxies against a real gateway over real sockets.

A flood of credential-less handshakes from one address is contained to that address's budget while valid
terminals from the same address keep getting in; 1,000 valid terminals from one address are all accepted with
the default settings; behind trusted proxies each client address has its own budget (X-Forwarded-For, the
PROXY protocol v1 and v2), and the same headers from an untrusted peer change nothing.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from hedgebridge.common.servers import NatsServer
from hedgebridge.gateway.proxies import V2_SIGNATURE
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import Welcome, decode_frame, subprotocol

from ..conftest import gateway_config
from ..helpers import ea_token

pytestmark = pytest.mark.integration

StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(nats_server: NatsServer, secret: str) -> AsyncIterator[StartGateway]:
    """Gateways with the default limits unless told otherwise; terminals are not dropped for silence."""
    started: list[Gateway] = []

    async def start(**overrides: object) -> Gateway:
        values: dict[str, object] = {
            "id": f"gw-limits-{len(started)}",
            "heartbeat_interval_ms": 1000,
            "heartbeat_timeout_ms": 120_000,
        }
        values.update(overrides)
        gateway = Gateway(gateway_config(nats_server.url, secret, **values))
        await gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        await gateway.stop()


def _request(port: int, token: str | None = None, forwarded_for: str | None = None) -> bytes:
    lines = [
        "GET /ea HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: hedgebridge.v1",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if forwarded_for is not None:
        lines.append(f"X-Forwarded-For: {forwarded_for}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _status(port: int, request: bytes, prefix: bytes = b"") -> int | None:
    """The HTTP status the gateway answers a raw request with (None: the connection was dropped)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(prefix + request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
        return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None
    except ConnectionError:
        return None
    finally:
        writer.close()


def _v1(source: str) -> bytes:
    return f"PROXY TCP4 {source} 127.0.0.1 40000 8765\r\n".encode()


def _v2(source: str) -> bytes:
    body = socket.inet_aton(source) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, 8765)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


async def _welcomed(gateway: Gateway, account: str, request: bytes, client: str) -> None:
    """Send a raw handshake, read the 101 and the first frame (WELCOME), and check that the gateway's session
    (and so its TERMINAL_STATUS) names ``client`` as the terminal's address."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert (await asyncio.wait_for(reader.readexactly(2), 30))[0] == 0x81  # a text frame: WELCOME
        assert gateway.sessions[account].remote == client
    finally:
        writer.close()


async def test_a_credentialless_flood_is_contained_and_valid_terminals_still_get_in(
    start_gateway: StartGateway, secret: str
) -> None:
    gateway = await start_gateway()  # default: 10/s, burst 100 per address
    flood = _request(gateway.port)
    started = time.monotonic()
    statuses: Counter[int | None] = Counter()
    for _ in range(10):  # 600 handshakes without a token, 60 at a time
        statuses.update(await asyncio.gather(*(_status(gateway.port, flood) for _ in range(60))))
    elapsed = time.monotonic() - started
    assert set(statuses) <= {401, 429}, statuses
    # at most the burst plus what the rate refilled while the flood ran was looked at; the rest was refused 429
    assert statuses[401] <= 100 + 10 * elapsed + 1, (statuses, elapsed)
    assert statuses[401] >= 100
    assert statuses[429] == 600 - statuses[401]
    assert statuses[429] > 0
    # a bad token from the flooded address is refused too (429 while its budget is spent), never let in
    assert await _status(gateway.port, _request(gateway.port, "not-a-token")) in (401, 429)
    # valid terminals from the same address are not held back by the flood
    for i in range(5):
        assert await _status(gateway.port, _request(gateway.port, ea_token(secret, f"F{i}"))) == 101


async def _terminal(url: str, token: str, gate: asyncio.Semaphore) -> ClientConnection | int:
    """A terminal's connection once WELCOME came, or the HTTP status that refused it."""
    async with gate:
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                subprotocols=[subprotocol()],  # type: ignore[list-item]
                ping_interval=None,
                compression=None,
                open_timeout=60,
            )
        except InvalidStatus as exc:
            return exc.response.status_code
        first = decode_frame(await asyncio.wait_for(ws.recv(), 60))
        assert isinstance(first, Welcome)
        return ws


async def test_a_thousand_valid_terminals_from_one_address_are_all_accepted(
    start_gateway: StartGateway, secret: str
) -> None:
    gateway = await start_gateway()  # the default limits
    url = f"ws://127.0.0.1:{gateway.port}/ea"
    tokens = [ea_token(secret, f"T{i:04d}") for i in range(1000)]
    gate = asyncio.Semaphore(100)
    outcomes = await asyncio.gather(*(_terminal(url, token, gate) for token in tokens))
    connections = [o for o in outcomes if not isinstance(o, int)]
    try:
        refused = Counter(o for o in outcomes if isinstance(o, int))
        assert not refused, f"refused: {dict(refused)}"
        assert len(connections) == 1000
        assert len(gateway.sessions) == 1000
    finally:
        await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


async def test_x_forwarded_for_from_a_trusted_proxy_gives_each_client_its_own_budget(
    start_gateway: StartGateway, secret: str
) -> None:
    gateway = await start_gateway(trusted_proxies="127.0.0.1/32", ip_connect_rate=0.001, ip_connect_burst=2)
    port = gateway.port
    client_a = _request(port, forwarded_for="6.6.6.6, 198.51.100.1")  # 6.6.6.6 was written by the client itself
    assert [await _status(port, client_a) for _ in range(3)] == [401, 401, 429]
    # another client behind the same proxy has a budget of its own, whatever it writes on the left
    client_b = _request(port, forwarded_for="198.51.100.1, 198.51.100.2")
    assert [await _status(port, client_b) for _ in range(3)] == [401, 401, 429]
    # the proxy's own requests (no header) are the proxy's
    assert [await _status(port, _request(port)) for _ in range(3)] == [401, 401, 429]
    await _welcomed(gateway, "X1", _request(port, ea_token(secret, "X1"), "198.51.100.1"), "198.51.100.1")


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(trusted_proxies="10.0.0.0/8", ip_connect_rate=0.001, ip_connect_burst=2)
    port = gateway.port
    claims = [f"198.51.100.{i}" for i in range(1, 4)]  # each request claims another client: one budget all the same
    assert [await _status(port, _request(port, forwarded_for=c)) for c in claims] == [401, 401, 429]


async def test_the_proxy_protocol_v1_and_v2_from_a_trusted_proxy(start_gateway: StartGateway, secret: str) -> None:
    gateway = await start_gateway(
        trusted_proxies="127.0.0.1/32", proxy_protocol="any", ip_connect_rate=0.001, ip_connect_burst=2
    )
    port, anonymous = gateway.port, _request(gateway.port)
    assert [await _status(port, anonymous, _v1("198.51.100.1")) for _ in range(3)] == [401, 401, 429]
    assert [await _status(port, anonymous, _v2("198.51.100.2")) for _ in range(3)] == [401, 401, 429]
    assert await _status(port, anonymous, _v2("198.51.100.3")) == 401  # a third client: its own budget
    assert await _status(port, anonymous, _v1("198.51.100.1")) == 429  # the first one's is still spent
    # a trusted peer must send the header: without it the connection is dropped unanswered
    assert await _status(port, anonymous) is None
    # a terminal through the balancer gets in, with its WebSocket working past the header, known by its address
    await _welcomed(gateway, "P1", _v2("198.51.100.9") + _request(port, ea_token(secret, "P1")), "198.51.100.9")


async def test_the_proxy_protocol_from_an_untrusted_peer_is_ignored(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(
        trusted_proxies="10.0.0.0/8", proxy_protocol="v1", ip_connect_rate=0.001, ip_connect_burst=2
    )
    port, anonymous = gateway.port, _request(gateway.port)
    # its headers are read past (the request is served) but name no client: one budget, the peer's
    answers = [await _status(port, anonymous, _v1("198.51.100.1")), await _status(port, anonymous, _v2("198.51.100.2"))]
    assert answers == [401, 401]
    assert await _status(port, anonymous) == 429  # and no header is needed from it
