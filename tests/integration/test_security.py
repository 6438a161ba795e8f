"""Security of the gateway and of the NATS connections, against real servers over real sockets.

The JWT attack matrix on the wire (the HS256 cases the gateway tests cover are not repeated), RS256 with a
key file and ES256 with a JWKS served over HTTP, revocation and expiry during a session (1008), the abuse
limits (frame size, deflate bomb, idle handshakes, message flood, refused handshakes per address, slow reader,
Origin), wss with a CA made here, and NATS with authentication on.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import resource
import ssl
import stat
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import nats
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from nats.aio.client import Client as NatsClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from hedgebridge.cli import stack as up
from hedgebridge.cli import state
from hedgebridge.common import auth, bus, streams
from hedgebridge.common.servers import NatsServer, ValkeyServer, free_port
from hedgebridge.common.service import EXIT_UNAVAILABLE
from hedgebridge.executor.service import Executor
from hedgebridge.gateway import keys as gateway_keys
from hedgebridge.gateway.server import Gateway
from hedgebridge.gateway.terminal_link_ws import SLOW_CONSUMER
from hedgebridge.protocol import Heartbeat, OpenOrder, PriceTick, Welcome, pack, subjects, utcnow
from hedgebridge.protocol.errors import CloseCode
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals, run_terminals

from ..conftest import executor_config, gateway_config
from ..dll.tls import TestCa
from ..helpers import RawEa, ea_token, order, wait_for

pytestmark = pytest.mark.integration

V1 = [Subprotocol("hedgebridge.v1")]
StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_gateway(nats_server: NatsServer, secret: str) -> AsyncIterator[StartGateway]:
    """Gateways with their own settings: ``await start_gateway(message_rate=10)``."""
    started: list[Gateway] = []

    async def start(**overrides: object) -> Gateway:
        values: dict[str, object] = {"id": f"gw-sec-{len(started)}"}
        values.update(overrides)
        gateway = Gateway(gateway_config(nats_server.url, secret, **values))
        await gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in reversed(started):
        await gateway.stop()


def _url(gateway: Gateway, path: str = "/ea", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{gateway.port}{path}"


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "A1",
        "role": "ea",
        "iss": "hedgebridge",
        "aud": "hedgebridge",
        "iat": now,
        "exp": now + 300,
        "jti": f"j-{time.monotonic_ns()}",
    }
    claims.update(changes)
    return claims


async def _status(url: str, token: str | None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """The handshake's HTTP status (101 when accepted) and the refusal's body."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        ws = await connect(url, additional_headers=sent, subprotocols=V1, open_timeout=5)
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body.decode(errors="replace").strip()
    await ws.close()
    return 101, ""


async def _closed_with(ws: Any, timeout_s: float = 10.0) -> tuple[int | None, str]:
    """Read until the gateway closes the connection: (close code, reason)."""
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ConnectionClosed):
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
    assert ws.close_code is not None, "the connection is still open"
    return ws.close_code, ws.close_reason or ""


# --- the JWT attack matrix ----------------------------------------------------------------------------------


async def test_jwt_attack_matrix_on_the_wire(start_gateway: StartGateway, secret: str, nc: NatsClient) -> None:
    gateway = await start_gateway()
    ea, client = _url(gateway), _url(gateway, "/client")
    now = int(time.time())
    cases: list[tuple[str, str, str, int, str]] = [
        ("wrong algorithm", ea, jwt.encode(_claims(), secret * 2, algorithm="HS512"), 401, "algorithm not allowed"),
        ("not yet valid", ea, jwt.encode(_claims(iat=now + 600), secret, algorithm="HS256"), 401, "not yet valid"),
        ("nbf ahead", ea, jwt.encode(_claims(nbf=now + 600), secret, algorithm="HS256"), 401, "not yet valid"),
        ("wrong audience", ea, jwt.encode(_claims(aud="other"), secret, algorithm="HS256"), 401, "audience"),
        ("wrong issuer", ea, jwt.encode(_claims(iss="other"), secret, algorithm="HS256"), 401, "issuer"),
        ("no jti", ea, jwt.encode({**_claims(), "jti": None}, secret, algorithm="HS256"), 401, "'jti'"),
        ("ea on /client", client, ea_token(secret, "A1"), 403, "not 'system' or 'admin'"),
        (
            "system without scope",
            client,
            jwt.encode(_claims(role="system", sub="s"), secret, algorithm="HS256"),
            403,
            "must name the accounts",
        ),
        ("system on /ea", ea, auth.mint_token(secret, role="system", subject="s", accounts=["A1"]), 401, "not 'ea'"),
    ]
    for name, url, token, status, reason in cases:
        got, body = await _status(url, token)
        assert (got, reason in body) == (status, True), f"{name}: {got} {body}"
    # a revoked token is refused at the handshake once the gateway has seen the revocation
    revoked = ea_token(secret, "A1")
    jti = auth.verify_token(revoked, secret).token_id
    assert (await _status(ea, revoked))[0] == 101
    await streams.revoke(nc.jetstream(), jti)
    await wait_for(lambda: jti in gateway.revocations, "the gateway to see the revocation")
    assert await _status(ea, revoked) == (401, "token revoked")


def _rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pems(key)


def _ec_pair() -> tuple[bytes, bytes]:
    return _pems(ec.generate_private_key(ec.SECP256R1()))


def _pems(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


async def test_rs256_with_a_public_key_file(start_gateway: StartGateway, tmp_path: Path, secret: str) -> None:
    private, public = _rsa_pair()
    key_file = tmp_path / "jwt.pub.pem"
    key_file.write_bytes(public)
    gateway = await start_gateway(jwt_algorithm="RS256", jwt_public_key_file=str(key_file), jwt_secret="")
    url = _url(gateway)
    ws = await RawEa.connect(url, jwt.encode(_claims(), private, algorithm="RS256"))
    assert isinstance(await ws.recv_type(Welcome), Welcome)
    await ws.close()
    other, _ = _rsa_pair()
    assert await _status(url, jwt.encode(_claims(), other, algorithm="RS256")) == (401, "token signature invalid")
    # the HS256 token of the default setup, and HS256 "signed" with the public key itself: refused
    assert await _status(url, ea_token(secret, "A1")) == (401, "token algorithm not allowed")
    forged = _hs256_by_hand(_claims(), public)  # PyJWT itself refuses to sign with a public key as the secret
    assert await _status(url, forged) == (401, "token algorithm not allowed")


def _hs256_by_hand(claims: dict[str, object], key: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


class _JwksServer:
    """A tiny HTTP server for a JWKS document, on a free loopback port, in a thread."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"

    def add(self, public_pem: bytes, kid: str) -> None:
        key = serialization.load_pem_public_key(public_pem)
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))  # type: ignore[arg-type]
        jwk.update(kid=kid, use="sig", alg="ES256")
        self.document = {"keys": [*self.document["keys"], jwk]}


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


async def test_es256_with_a_jwks_url_and_key_rotation(
    start_gateway: StartGateway, jwks_server: _JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gateway_keys, "UNKNOWN_KID_REFRESH_S", 0.2)
    private_1, public_1 = _ec_pair()
    jwks_server.add(public_1, "k1")
    gateway = await start_gateway(jwt_algorithm="ES256", jwt_jwks_url=jwks_server.url, jwt_secret="")
    url = _url(gateway)
    ws = await RawEa.connect(url, jwt.encode(_claims(), private_1, algorithm="ES256", headers={"kid": "k1"}))
    assert isinstance(await ws.recv_type(Welcome), Welcome)
    await ws.close()
    # rotation: a token signed with a key published after the gateway started is accepted once the gateway
    # has fetched the JWKS again (a token naming an unknown kid triggers that)
    private_2, public_2 = _ec_pair()
    rotated = jwt.encode(_claims(), private_2, algorithm="ES256", headers={"kid": "k2"})
    assert await _status(url, rotated) == (401, "token key id unknown")
    jwks_server.add(public_2, "k2")

    async def accepted() -> bool:
        return (await _status(url, rotated))[0] == 101

    await wait_for(accepted, "the rotated key to be fetched")
    assert gateway.key_provider.fetches >= 2
    wrong_kid = jwt.encode(_claims(), private_2, algorithm="ES256", headers={"kid": "k1"})
    assert await _status(url, wrong_kid) == (401, "token signature invalid")


async def test_gateway_does_not_start_without_its_jwks(nats_server: NatsServer, secret: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"  # nothing listens there
    gateway = Gateway(gateway_config(nats_server.url, secret, jwt_algorithm="ES256", jwt_jwks_url=url))
    with pytest.raises(gateway_keys.KeysUnavailable, match="cannot load the JWT verification keys"):
        await gateway.start()


# --- sessions end when their token does ---------------------------------------------------------------------


async def test_token_expiring_mid_session_closes_ea_and_client_with_1008(
    start_gateway: StartGateway, secret: str
) -> None:
    gateway = await start_gateway(heartbeat_timeout_ms=30_000)
    ea = await RawEa.connect(_url(gateway), ea_token(secret, "A1", ttl_s=2))
    await ea.recv_type(Welcome)
    client_token = auth.mint_token(secret, role="admin", subject="ops", ttl_s=2)
    client = await connect(
        _url(gateway, "/client"),
        additional_headers={"Authorization": f"Bearer {client_token}"},
        subprotocols=V1,
    )
    assert await _closed_with(ea.ws) == (CloseCode.POLICY_VIOLATION, "token expired")
    assert await _closed_with(client) == (CloseCode.POLICY_VIOLATION, "token expired")


async def test_revocation_closes_live_sessions_within_moments(
    start_gateway: StartGateway, secret: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    # sessions that stay silent while the CLI starts (seconds on a loaded machine) are not dropped for it
    gateway = await start_gateway(heartbeat_timeout_ms=120_000)
    token = ea_token(secret, "A1")
    other = await RawEa.connect(_url(gateway), ea_token(secret, "A2"))
    ea = await RawEa.connect(_url(gateway), token)
    await ea.recv_type(Welcome)
    beat = other.keep_alive()
    client_token = auth.mint_token(secret, role="system", subject="s1", accounts=["A1"])
    client = await connect(_url(gateway, "/client"), subprotocols=V1)
    await client.send(json.dumps({"type": "AUTH", "token": client_token}))
    assert json.loads(await client.recv())["type"] == "CLIENT_WELCOME"
    # the CLI writes the revocation; the gateway watching the bucket closes both sessions
    for jti in (auth.verify_token(token, secret).token_id, auth.verify_token(client_token, secret).token_id):
        cli = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "hedgebridge.cli", "token", "revoke", jti, "--nats-url", nats_server.url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HEDGEBRIDGE_HOME": str(tmp_path / "home")},
        )
        out, err = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, err.decode()
        assert f"revoked {jti}" in out.decode()
    assert await _closed_with(ea.ws) == (CloseCode.POLICY_VIOLATION, "token revoked")
    assert await _closed_with(client) == (CloseCode.POLICY_VIOLATION, "token revoked")
    assert "A2" in gateway.sessions  # others stay
    beat.cancel()
    await other.close()


# --- abuse limits -------------------------------------------------------------------------------------------


async def test_a_10_mib_frame_closes_1009(start_gateway: StartGateway, secret: str) -> None:
    gateway = await start_gateway(max_frame_bytes=1_048_576)
    ea = await RawEa.connect(_url(gateway), ea_token(secret, "A1"))
    await ea.recv_type(Welcome)
    with contextlib.suppress(ConnectionClosed):
        await ea.send_raw("x" * (10 * 1024 * 1024))
    code, _ = await _closed_with(ea.ws)
    assert code == CloseCode.MESSAGE_TOO_BIG


async def _raw_handshake(
    port: int, token: str, extra: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        (
            f"GET /ea HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: hedgebridge.v1\r\nAuthorization: Bearer {token}\r\n{extra}\r\n"
        ).encode()
    )
    await writer.drain()
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    return reader, writer, head


def _client_frame(payload: bytes, opcode: int = 1, rsv1: bool = False) -> bytes:
    """One masked client frame (RFC 6455)."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


async def _read_close(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> int | None:
    """Skip server frames until a close frame; its code (None when the connection just ends)."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                first, second = await reader.readexactly(2)
            except asyncio.IncompleteReadError:
                return None
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await reader.readexactly(8))
            payload = await reader.readexactly(length)
            if first & 0x0F == 0x8:
                return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else None


def _bomb() -> bytes:
    """256 MiB of zeros deflated to a few hundred KiB: a frame within max_frame_bytes (made before connecting, so
    that a slow machine's seconds of compressing do not run into the heartbeat timeout)."""
    squeezer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    return b"".join(squeezer.compress(chunk) for _ in range(256)) + squeezer.flush(zlib.Z_SYNC_FLUSH)[:-4]


async def test_deflate_is_off_so_a_decompression_bomb_cannot_inflate(start_gateway: StartGateway, secret: str) -> None:
    bomb = _bomb()
    gateway = await start_gateway(max_frame_bytes=1_048_576)
    reader, writer, head = await _raw_handshake(
        gateway.port, ea_token(secret, "A1"), "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    )
    assert head.startswith("HTTP/1.1 101")
    assert "sec-websocket-extensions" not in head.lower()  # the offer is declined
    assert len(bomb) < 1_048_576
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    writer.write(_client_frame(bomb, rsv1=True))
    await writer.drain()
    assert await _read_close(reader) == 1002  # protocol error: compressed frames were not negotiated
    writer.close()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB"
    ea = await RawEa.connect(_url(gateway), ea_token(secret, "A2"))  # still serving
    assert isinstance(await ea.recv_type(Welcome), Welcome)
    await ea.close()


async def test_with_deflate_on_a_bomb_is_cut_at_the_frame_size_limit(start_gateway: StartGateway, secret: str) -> None:
    # the throughput profile turns permessage-deflate on: max_frame_bytes then bounds the inflated size
    bomb = _bomb()
    gateway = await start_gateway(max_frame_bytes=1_048_576, compression=True)
    reader, writer, head = await _raw_handshake(
        gateway.port, ea_token(secret, "A1"), "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    )
    assert head.startswith("HTTP/1.1 101")
    assert "permessage-deflate" in head.lower()  # negotiated
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    writer.write(_client_frame(bomb, rsv1=True))
    await writer.drain()
    assert await _read_close(reader) == CloseCode.MESSAGE_TOO_BIG
    writer.close()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 64, f"peak memory grew by {grown_mib:.0f} MiB"


async def test_idle_handshakes_are_dropped_at_the_timeout_and_others_served(
    start_gateway: StartGateway, secret: str
) -> None:
    gateway = await start_gateway(handshake_timeout_ms=1500, ip_connect_rate=0)
    idle = [await asyncio.open_connection("127.0.0.1", gateway.port) for _ in range(1000)]
    ea = await RawEa.connect(_url(gateway), ea_token(secret, "A1"))
    assert isinstance(await ea.recv_type(Welcome), Welcome)
    await ea.send(Heartbeat(timestamp=utcnow(), seq=7))
    reply = await ea.recv_type(Heartbeat)
    assert isinstance(reply, Heartbeat)
    assert reply.seq == 7
    ended = await asyncio.wait_for(asyncio.gather(*(reader.read() for reader, _ in idle)), 20)
    assert ended == [b""] * 1000  # every idle connection was closed by the gateway, without an answer
    for _, writer in idle:
        writer.close()
    await ea.close()


async def test_a_flooding_connection_is_closed_and_others_are_not(start_gateway: StartGateway, secret: str) -> None:
    gateway = await start_gateway(message_rate=50, message_burst=100)
    calm = await RawEa.connect(_url(gateway), ea_token(secret, "A2"))
    await calm.recv_type(Welcome)
    flood = await RawEa.connect(_url(gateway), ea_token(secret, "A1"))
    await flood.recv_type(Welcome)
    frame = json.dumps({"type": "HEARTBEAT", "timestamp": utcnow().isoformat(), "seq": 1})
    with contextlib.suppress(ConnectionClosed):
        for _ in range(1000):
            await flood.send_raw(frame)
    assert await _closed_with(flood.ws) == (CloseCode.POLICY_VIOLATION, "rate limit")
    await calm.send(Heartbeat(timestamp=utcnow(), seq=3))
    reply = await calm.recv_type(Heartbeat)
    assert isinstance(reply, Heartbeat)
    assert reply.seq == 3
    assert "A2" in gateway.sessions
    await calm.close()


async def test_too_many_refused_handshakes_from_one_address_get_429(start_gateway: StartGateway, secret: str) -> None:
    gateway = await start_gateway(ip_connect_rate=0.01, ip_connect_burst=3)
    statuses = [(await _status(_url(gateway), None))[0] for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    # valid tokens do not spend the address's budget, and are not held back once it is spent
    statuses = [(await _status(_url(gateway), ea_token(secret, f"A{i}")))[0] for i in range(5)]
    assert statuses == [101] * 5


async def test_origin_allow_list_on_client(start_gateway: StartGateway, secret: str) -> None:
    gateway = await start_gateway(allowed_origins="https://desk.example.com")
    url = _url(gateway, "/client")
    token = auth.mint_token(secret, role="admin", subject="ops")
    assert await _status(url, token, {"Origin": "https://evil.example.net"}) == (403, "origin not allowed")
    assert (await _status(url, token, {"Origin": "https://desk.example.com"}))[0] == 101
    assert (await _status(url, token))[0] == 101  # no Origin: not a browser


async def test_a_terminal_that_does_not_read_is_closed_and_its_buffer_stays_bounded(
    start_gateway: StartGateway, secret: str, nc: NatsClient
) -> None:
    gateway = await start_gateway(send_timeout_ms=300, heartbeat_timeout_ms=60_000, message_rate=0)
    slow = await connect(
        _url(gateway),
        additional_headers={"Authorization": f"Bearer {ea_token(secret, 'A1')}"},
        subprotocols=V1,
        max_queue=1,
        ping_interval=None,
    )
    await wait_for(lambda: "A1" in gateway.sessions, "the terminal session")
    session = gateway.sessions["A1"]
    transport = session.connection.transport
    highest = 0
    reason = "x" * 200
    sent = 0
    while not session.close_reason and sent < 200_000:
        for _ in range(200):
            await nc.publish(subjects.GATEWAY_SYNC, reason.encode())
        sent += 200
        await nc.flush()
        highest = max(highest, transport.get_write_buffer_size())
    assert session.close_reason == SLOW_CONSUMER
    assert highest <= 64 * 1024, f"the gateway buffered {highest} bytes for one terminal"
    await wait_for(lambda: "A1" not in gateway.sessions, "the slow terminal to be dropped", timeout_s=20)
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(10):
            while True:
                await slow.recv()
    assert slow.close_code in (CloseCode.POLICY_VIOLATION, 1006)  # 1006 when it was aborted before reading


# --- TLS ----------------------------------------------------------------------------------------------------


async def test_wss_with_a_test_ca(start_gateway: StartGateway, secret: str, tmp_path: Path) -> None:
    ca = TestCa(tmp_path / "ca", "hedgebridge-test-ca")
    ca.server_context(["localhost"], ["127.0.0.1"])
    gateway = await start_gateway(
        tls_cert=str(tmp_path / "ca" / "localhost-127.0.0.1.crt"),
        tls_key=str(tmp_path / "ca" / "localhost-127.0.0.1.key"),
    )
    trusting = ssl.create_default_context(cafile=str(ca.pem))
    ws = await connect(
        _url(gateway, scheme="wss"),
        ssl=trusting,
        additional_headers={"Authorization": f"Bearer {ea_token(secret, 'A1')}"},
        subprotocols=V1,
    )
    assert json.loads(await ws.recv())["type"] == "WELCOME"
    await ws.close()
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust the CA
        await connect(_url(gateway, scheme="wss"), ssl=ssl.create_default_context(), subprotocols=V1)
    with pytest.raises((InvalidStatus, ConnectionError, OSError, EOFError, Exception)):  # plain ws on the TLS port
        await connect(_url(gateway), subprotocols=V1, open_timeout=3)


# --- NATS with authentication -------------------------------------------------------------------------------


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-auth", user="hedgebridge", password="s3cret-pass-for-test")
    server.start()
    yield server
    server.stop()


async def test_services_log_in_to_nats_and_an_order_fills(
    secured_nats: NatsServer, cache_server: ValkeyServer, secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    security = bus.NatsSecurity(user="hedgebridge", password="s3cret-pass-for-test")
    with pytest.raises(bus.NatsUnreachable, match="refused the credentials"):
        await bus.connect(secured_nats.url, "no-login", startup_timeout_s=10, security=bus.NatsSecurity())
    # the executor logs in with credentials in its URL, the gateway with HEDGEBRIDGE_NATS_USER / _PASSWORD
    in_url = secured_nats.url.replace("nats://", "nats://hedgebridge:s3cret-pass-for-test@")
    executor = Executor(executor_config(in_url, f"{cache_server.url}/0"))
    await executor.start()
    monkeypatch.setenv("HEDGEBRIDGE_NATS_USER", "hedgebridge")
    monkeypatch.setenv("HEDGEBRIDGE_NATS_PASSWORD", "s3cret-pass-for-test")
    gateway = Gateway(gateway_config(secured_nats.url, secret, id="gw-auth"))
    await gateway.start()
    stop = asyncio.Event()
    terminals = make_terminals(
        f"ws://127.0.0.1:{gateway.port}/ea", ["A1"], lambda a: ea_token(secret, a), SimConfig(fill_latency_ms=1), seed=1
    )
    running = asyncio.create_task(run_terminals(terminals, stop))
    nc = await bus.connect(secured_nats.url, "test-client", security=security)
    try:
        await wait_for(lambda: terminals[0].connected.is_set(), "the terminal to connect")
        result = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1))
        assert result.status == "FILLED", result
    finally:
        stop.set()
        await running
        await nc.close()
        await executor.stop()
        await gateway.stop()


def test_a_wrong_nats_password_exits_69_at_once_without_logging_it(secured_nats: NatsServer) -> None:
    env = {
        **os.environ,
        "HEDGEBRIDGE_NATS_URL": secured_nats.url,
        "HEDGEBRIDGE_NATS_USER": "hedgebridge",
        "HEDGEBRIDGE_NATS_PASSWORD": "wrong-password-value",
        "HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S": "60",
    }
    result = subprocess.run(
        [sys.executable, "-m", "hedgebridge.monitor"], capture_output=True, text=True, timeout=50, env=env
    )
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "refused the credentials" in result.stderr
    assert "wrong-password-value" not in result.stdout + result.stderr
    # a password in the URL is redacted too
    env["HEDGEBRIDGE_NATS_URL"] = secured_nats.url.replace("nats://", "nats://hedgebridge:url-password-value@")
    del env["HEDGEBRIDGE_NATS_USER"], env["HEDGEBRIDGE_NATS_PASSWORD"]
    result = subprocess.run(
        [sys.executable, "-m", "hedgebridge.monitor"], capture_output=True, text=True, timeout=50, env=env
    )
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    assert "url-password-value" not in result.stdout + result.stderr
    assert "hedgebridge:***@" in result.stderr


async def test_nats_client_with_wrong_password_is_refused(secured_nats: NatsServer) -> None:
    with pytest.raises(bus.NatsUnreachable, match="refused the credentials") as info:
        await bus.connect(
            secured_nats.url,
            "bad",
            startup_timeout_s=30,
            security=bus.NatsSecurity(user="hedgebridge", password="nope"),
        )
    assert "nope" not in str(info.value)
    good = await nats.connect(secured_nats.url, user="hedgebridge", password="s3cret-pass-for-test")
    await good.close()


async def test_nats_login_with_an_nkey(tmp_path: Path) -> None:
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    server = NatsServer(tmp_path / "nats-nkey", nkey=public)
    server.start()
    try:
        security = bus.security_from_env({"HEDGEBRIDGE_NATS_NKEY_SEED_FILE": str(seed_file)})
        nc = await bus.connect(server.url, "nkey-client", startup_timeout_s=10, security=security)
        await nc.publish("hb.test", b"x")
        await nc.flush()
        await nc.close()
        with pytest.raises(bus.NatsUnreachable, match="refused the credentials"):
            await bus.connect(server.url, "anonymous", startup_timeout_s=10, security=bus.NatsSecurity())
    finally:
        server.stop()


async def test_up_starts_nats_with_a_generated_login(tmp_path: Path) -> None:
    home = tmp_path / "home"
    args = argparse.Namespace(nats_url=None, redis_url=None, nats_port=0, redis_port=0)
    stack = up.Stack(args, home)
    try:
        nats_url, _ = stack.start_servers()
        password_file = state.nats_password_path(home)
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert password == stack.nats_password
        assert len(password) >= 32
        assert password not in nats_url
        assert password not in (home / "nats" / "nats-server.log").read_text()
        with pytest.raises(bus.NatsUnreachable, match="refused the credentials"):
            await bus.connect(nats_url, "anonymous", startup_timeout_s=10, security=bus.NatsSecurity())
        # commands that find NATS through the state file log in with the stack's password
        state.write_state(
            home,
            state.StackState(
                nats_url=nats_url, redis_url="", gateway_url="", supervisor_pid=os.getpid(), nats_auth=True
            ),
        )
        resolved = state.resolve_nats_url(None, home)
        assert password in resolved
        assert password not in bus.redact(resolved)
        nc = await bus.connect(resolved, "cli-like", startup_timeout_s=10, security=bus.NatsSecurity())
        await nc.close()
    finally:
        stack.stop()


def test_ping_http_probes_a_services_healthz(nats_server: NatsServer, cache_server: ValkeyServer) -> None:
    port = free_port()
    executor = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", health_port=port))

    def ping(probe_port: int) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "hedgebridge.cli", "ping", "executor", "--http", "--port", str(probe_port)]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    async def run() -> None:
        await executor.start()
        try:
            healthy = await asyncio.to_thread(ping, port)
            assert healthy.returncode == 0, healthy.stderr
        finally:
            await executor.stop()

    asyncio.run(run())
    stopped = ping(port)
    assert stopped.returncode == 1
    assert "does not answer" in stopped.stderr


async def test_a_client_that_never_reads_is_cut_off_and_freed(
    start_gateway: StartGateway, secret: str, nc: NatsClient
) -> None:
    gateway = await start_gateway(client_queue_max=4, heartbeat_timeout_ms=60_000, message_rate=0)
    token = auth.mint_token(secret, role="admin", subject="ops")
    slow = await connect(
        _url(gateway, "/client"),
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=V1,
        max_queue=1,  # stops reading the socket: the gateway's writes pile up in the kernel, then in its queue
        ping_interval=None,
    )
    assert json.loads(await slow.recv())["type"] == "CLIENT_WELCOME"
    await slow.send(json.dumps({"type": "SUBSCRIBE", "requestId": "s", "topics": ["prices"]}))
    assert json.loads(await slow.recv())["type"] == "SUBSCRIBED"
    tick = pack(PriceTick(account_id="A1", symbol="EURUSD", bid=1.1, ask=1.1001, time=utcnow()))
    sent = 0
    while gateway.clients.slow_consumers == 0:
        assert sent < 200_000, "the client was never found slow"
        for _ in range(500):
            await nc.publish(subjects.event("A1", "PRICE"), tick)
        sent += 500
        await nc.flush()
    # it never reads its close frame: the gateway gives up on the closing handshake and frees the session
    await wait_for(lambda: not gateway.clients.sessions, "the slow client's session to be freed", timeout_s=20)


async def test_nats_over_tls_with_a_private_ca(
    tmp_path: Path, cache_server: ValkeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = TestCa(tmp_path / "ca", "hedgebridge-nats-ca")
    ca.server_context(["localhost"], ["127.0.0.1"])
    cert, key = tmp_path / "ca" / "localhost-127.0.0.1.crt", tmp_path / "ca" / "localhost-127.0.0.1.key"
    server = NatsServer(tmp_path / "nats-tls", tls_cert=str(cert), tls_key=str(key))
    server.start()
    try:
        url = server.url.replace("nats://", "tls://")
        trusting = bus.security_from_env({"HEDGEBRIDGE_NATS_TLS_CA_FILE": str(ca.pem)})
        nc = await bus.connect(url, "tls-client", startup_timeout_s=10, security=trusting)
        assert nc.connected_url is not None
        assert nc.connected_url.scheme == "tls"
        await nc.close()
        # a client that does not trust the CA never gets a connection
        with pytest.raises(bus.NatsUnreachable):
            await bus.connect(url, "untrusting", startup_timeout_s=2, security=bus.NatsSecurity())
        # a service picks the CA up from its environment
        monkeypatch.setenv("HEDGEBRIDGE_NATS_TLS_CA_FILE", str(ca.pem))
        executor = Executor(executor_config(url, f"{cache_server.url}/0"))
        await executor.start()
        await executor.stop()
    finally:
        server.stop()
