"""The gateway against a real nats-server, with raw EA clients over real sockets."""

from __future__ import annotations

import base64
import json
import time

import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    AccountUpdate,
    CloseMetadata,
    DeliveryAck,
    ErrorMessage,
    Heartbeat,
    OpenCommand,
    PriceTick,
    TerminalStatus,
    Welcome,
    errors,
    pack,
    subjects,
    unpack,
    unpack_event,
    utcnow,
)
from hedgebridge.protocol.errors import CloseCode
from hedgebridge.protocol.messages import CloseCommand

from ..conftest import gateway_config
from ..helpers import RawEa, collect, deliver, ea_token, wait_for
from ..helpers import open_command as _open

pytestmark = pytest.mark.integration


def _account_update(account: str) -> AccountUpdate:
    return AccountUpdate(
        timestamp=utcnow(), account_id=account, balance=1000.0, equity=1000.0, margin=0.0, free_margin=1000.0
    )


async def _refused(url: str, headers: dict[str, str], protocols: list[str] | None = None) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        await connect(url, additional_headers=headers, subprotocols=protocols or ["hedgebridge.v1"], open_timeout=5)  # type: ignore[arg-type]
    return info.value


def _alg_none_token(account: str) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": account, "role": "ea", "iss": "hedgebridge", "aud": "hedgebridge", "iat": now, "exp": now + 60}
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}."


async def test_handshake_refusals(ea_url: str, secret: str) -> None:
    cases = {
        "missing Authorization header": {},
        "token invalid": {"Authorization": "Bearer not-a-jwt"},
        "token signature invalid": {"Authorization": f"Bearer {ea_token(auth.new_secret(), 'A1')}"},
        "token expired": {"Authorization": f"Bearer {ea_token(secret, 'A1', ttl_s=10, now=time.time() - 3600)}"},
        "token algorithm not allowed": {"Authorization": f"Bearer {_alg_none_token('A1')}"},
        "token role is not 'ea'": {"Authorization": f"Bearer {auth.mint_token(secret, role='admin', subject='A1')}"},
        "Authorization must be 'Bearer <token>'": {"Authorization": f"Basic {ea_token(secret, 'A1')}"},
    }
    for reason, headers in cases.items():
        refused = await _refused(ea_url, headers)
        assert refused.response.status_code == 401, reason
        assert reason in refused.response.body.decode(), reason
        assert refused.response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_handshake_needs_known_path_and_protocol_version(ea_url: str, secret: str) -> None:
    headers = {"Authorization": f"Bearer {ea_token(secret, 'A1')}"}
    refused = await _refused(ea_url.replace("/ea", "/other"), headers)
    assert refused.response.status_code == 404
    refused = await _refused(ea_url, headers, ["hedgebridge.v99"])
    assert refused.response.status_code == 400
    assert "hedgebridge.v1" in refused.response.body.decode()


async def test_welcome_and_heartbeat(ea_url: str, secret: str) -> None:
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    welcome = await ea.recv()
    assert isinstance(welcome, Welcome)
    assert welcome.account_id == "A1"
    assert welcome.protocol_version == 1
    assert welcome.heartbeat_interval_ms == 200
    assert ea.ws.subprotocol == "hedgebridge.v1"
    await ea.send(Heartbeat(timestamp=utcnow(), seq=41, account_id="A1"))
    reply = await ea.recv()
    assert isinstance(reply, Heartbeat)
    assert (reply.seq, reply.reply) == (41, True)
    await ea.close()


async def test_events_are_published_and_bad_frames_answered(ea_url: str, secret: str, nc: NatsClient) -> None:
    published = await collect(nc, subjects.ALL_EVENTS, lambda msg: msg)
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await ea.recv_type(Welcome)

    bad_frames: list[tuple[str | bytes, str, str | None]] = [
        ("{not json", errors.MALFORMED_FRAME, None),
        ("[1, 2]", errors.MALFORMED_FRAME, None),
        ('{"type": "TELEPORT", "accountId": "A1"}', errors.UNKNOWN_TYPE, "type"),
        ('{"type": "PRICE", "accountId": "A1", "bid": 1.0, "ask": 1.1, "time": "2026-01-01T00:00:00Z"}',
         errors.MISSING_FIELD, "symbol"),
        ('{"type": "PRICE", "accountId": "A1", "symbol": "EURUSD", "bid": "x", "ask": 1.1, "time": "2026-01-01"}',
         errors.INVALID_FIELD, "bid"),
    ]  # fmt: skip
    for frame, code, field in bad_frames:
        await ea.send_raw(frame)
        error = await ea.recv_type(ErrorMessage)
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.field) == (code, field), frame

    await ea.send(_open("A1"))  # a command, in the wrong direction
    error = await ea.recv_type(ErrorMessage)
    assert isinstance(error, ErrorMessage)
    assert error.code == errors.UNEXPECTED_TYPE
    assert error.ref_type == "OPEN"

    # a spoofed account is refused and never published
    await ea.send(_account_update("B2"))
    error = await ea.recv_type(ErrorMessage)
    assert isinstance(error, ErrorMessage)
    assert (error.code, error.field, error.ref_type) == (errors.ACCOUNT_MISMATCH, "accountId", "ACCOUNT_UPDATE")

    # the connection is still up and valid events flow to NATS
    tick = PriceTick(account_id="A1", symbol="EURUSD", bid=1.1, ask=1.2, time=utcnow())
    await ea.send(tick)
    await ea.send(_account_update("A1"))
    await wait_for(lambda: len(published) >= 2, "two events on NATS")
    assert [m.subject for m in published] == ["hb.ea.A1.evt.price", "hb.ea.A1.evt.account_update"]
    assert unpack_event(published[0].data) == tick
    assert all(subjects.account_of(m.subject) == "A1" for m in published)
    await ea.close()


async def test_oversized_frame_closes_with_1009(ea_url: str, secret: str) -> None:
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await ea.recv_type(Welcome)
    await ea.send_raw("x" * (65 * 1024))
    assert await ea.closed() == CloseCode.MESSAGE_TOO_BIG


async def test_commands_reach_the_socket_with_delivery_ack(ea_url: str, secret: str, nc: NatsClient) -> None:
    with pytest.raises(NoRespondersError):
        await nc.request(subjects.command("A1"), pack(_open("A1")), timeout=1)
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await ea.recv_type(Welcome)
    command = _open("A1")
    ack = await deliver(nc, "A1", command)
    assert ack.delivered
    assert await ea.recv_type(OpenCommand) == command
    close = CloseCommand(
        timestamp=utcnow(),
        account_id="A1",
        position_id="p-1",
        metadata=CloseMetadata(exit_reason="manual", user_id="u1"),
    )
    ack = await deliver(nc, "A1", close)
    assert ack.delivered
    assert await ea.recv_type(CloseCommand) == close
    # a command naming another account on this account's subject is refused, not sent
    ack = await deliver(nc, "A1", _open("B2"))
    assert not ack.delivered
    await ea.close()


async def test_newer_connection_replaces_older(ea_url: str, secret: str, nc: NatsClient) -> None:
    first = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await first.recv_type(Welcome)
    second = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await second.recv_type(Welcome)
    assert await first.closed() == CloseCode.SESSION_REPLACED
    assert "newer connection" in (first.ws.close_reason or "")
    ack = await deliver(nc, "A1", _open("A1"))
    assert ack.delivered
    assert isinstance(await second.recv_type(OpenCommand), OpenCommand)
    await second.close()


async def test_silent_terminal_is_dropped_and_the_drop_published(ea_url: str, secret: str, nc: NatsClient) -> None:
    statuses = await collect(nc, subjects.status("A1"), lambda msg: unpack(msg.data, TerminalStatus))
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    welcome = await ea.recv_type(Welcome)
    assert isinstance(welcome, Welcome)
    assert await ea.closed() == CloseCode.HEARTBEAT_TIMEOUT
    await wait_for(
        lambda: any(s.status == "DISCONNECTED" for s in statuses), lambda: f"the disconnect status (got {statuses})"
    )
    drop = next(s for s in statuses if s.status == "DISCONNECTED")
    assert (drop.session_id, drop.reason, drop.gateway_id) == (welcome.session_id, "heartbeat timeout", "gw-test-1")


async def test_commands_reach_a_terminal_on_any_replica(
    gateway: Gateway, nats_server: NatsServer, secret: str, nc: NatsClient
) -> None:
    other = Gateway(gateway_config(nats_server.url, secret, id="gw-test-2"))
    await other.start()
    try:
        on_first = await RawEa.connect(f"ws://127.0.0.1:{gateway.port}/ea", ea_token(secret, "A1"))
        await on_first.recv_type(Welcome)
        on_second = await RawEa.connect(f"ws://127.0.0.1:{other.port}/ea", ea_token(secret, "B2"))
        await on_second.recv_type(Welcome)
        for account, ea in (("A1", on_first), ("B2", on_second)):
            ack = await deliver(nc, account, _open(account))
            assert ack.delivered
            command = await ea.recv_type(OpenCommand)
            assert isinstance(command, OpenCommand)
            assert command.account_id == account
        # A1 moves to the second replica: the first closes its old connection
        moved = await RawEa.connect(f"ws://127.0.0.1:{other.port}/ea", ea_token(secret, "A1"))
        await moved.recv_type(Welcome)
        assert await on_first.closed() == CloseCode.SESSION_REPLACED
        await wait_for(lambda: "A1" not in gateway.sessions, "the first replica to let A1 go")
        ack = await deliver(nc, "A1", _open("A1", "p-2"))
        assert ack.delivered
        command = await moved.recv_type(OpenCommand)
        assert isinstance(command, OpenCommand)
        assert command.position_id == "p-2"
        await moved.close()
        await on_second.close()
    finally:
        await other.stop()


async def test_shutdown_tells_terminals_to_go_elsewhere(nats_server: NatsServer, secret: str) -> None:
    gw = Gateway(gateway_config(nats_server.url, secret))
    await gw.start()
    ea = await RawEa.connect(f"ws://127.0.0.1:{gw.port}/ea", ea_token(secret, "A1"))
    await ea.recv_type(Welcome)
    await gw.stop()
    assert await ea.closed() == CloseCode.GOING_AWAY


async def test_gateway_survives_a_nats_restart(
    gateway: Gateway, nats_server: NatsServer, secret: str, ea_url: str
) -> None:
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await ea.recv_type(Welcome)
    nats_server.stop()
    nats_server.start()
    import nats as nats_client

    client = await nats_client.connect(nats_server.url)
    try:

        async def delivered() -> bool:
            await ea.send(Heartbeat(timestamp=utcnow(), seq=1))  # keep the terminal alive meanwhile
            try:
                reply = await client.request(subjects.command("A1"), pack(_open("A1")), timeout=0.5)
            except Exception:  # no responders or a timeout while the gateway resubscribes
                return False
            return unpack(reply.data, DeliveryAck).delivered

        await wait_for(delivered, "the gateway to resubscribe after NATS came back", timeout_s=15, interval_s=0.1)
    finally:
        await client.close()
        await ea.close()
