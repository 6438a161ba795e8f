"""Bad input against a real gateway and nats-server: tokens whose claims are not names, JSON nested too deep,
numbers outside the protocol's range, and reports for commands nobody sent. Each gets a typed answer (a
refused handshake or an ERROR frame) and the session stays up when it was up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import jwt
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from hedgebridge.common import auth, streams
from hedgebridge.common.servers import NatsServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    ClosedEvent,
    ErrorMessage,
    Heartbeat,
    Message,
    OpenCommand,
    OpenedEvent,
    OpenOrder,
    Welcome,
    codec,
    encode_frame,
    errors,
    subjects,
    type_name,
    unpack_event,
    utcnow,
)
from hedgebridge.protocol.client import Auth, ClientWelcome, ServerFrame, decode_server_frame
from hedgebridge.protocol.errors import CloseCode

from ..conftest import gateway_config
from ..helpers import RawEa, ea_token, order, wait_for

pytestmark = pytest.mark.integration


def _claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "hedge-1",
        "role": "system",
        "iss": "hedgebridge",
        "aud": "hedgebridge",
        "iat": now,
        "exp": now + 300,
        "jti": f"j-{time.monotonic_ns()}",
        "accounts": ["A1"],
    }
    claims.update(changes)
    return claims


def _url(gateway: Gateway, path: str) -> str:
    return f"ws://127.0.0.1:{gateway.port}{path}"


async def _open(url: str, token: str | None) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await connect(
        url,
        additional_headers=headers,
        subprotocols=[Subprotocol("hedgebridge.v1")],
        ping_interval=None,
        open_timeout=5,
    )


async def _status(url: str, token: str) -> tuple[int, str]:
    try:
        ws = await _open(url, token)
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body.decode(errors="replace").strip()
    await ws.close()
    return 101, ""


async def _client_frame(ws: ClientConnection, kind: type[Any], timeout_s: float = 5.0) -> ServerFrame:
    deadline = time.monotonic() + timeout_s
    while True:
        data = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
        frame = decode_server_frame(data)
        wanted = isinstance(frame, kind)
        if wanted:
            return frame


async def _close_of(ws: ClientConnection, timeout_s: float = 5.0) -> tuple[int | None, str]:
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
    return ws.close_code, ws.close_reason or ""


# --- token claims --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("claimed", ["*", ">", "A1.>", "A B", "A1\n"])
async def test_a_scope_that_names_no_account_is_refused_at_the_handshake(
    gateway: Gateway, secret: str, claimed: str
) -> None:
    # before: "*" watched every account (the wildcard feed), ">" ended the first SUBSCRIBE with 1011
    token = jwt.encode(_claims(accounts=["A1", claimed]), secret, algorithm="HS256")
    status, body = await _status(_url(gateway, "/client"), token)
    assert (status, "token claim 'accounts' holds a name that is not valid" in body) == (401, True), body
    ws = await _open(_url(gateway, "/client"), None)  # the same with the AUTH frame
    await ws.send(encode_frame(Auth(token=token)))
    code, reason = await _close_of(ws)
    assert (code, reason.startswith("401 token claim 'accounts'")) == (CloseCode.POLICY_VIOLATION, True), reason


async def test_users_and_subjects_are_names_and_a_good_scope_still_logs_in(gateway: Gateway, secret: str) -> None:
    for changes, reason in (
        ({"users": [""]}, "token claim 'users' holds a name that is not valid"),
        ({"sub": "s" * 129}, "token subject is not a valid user name"),
        ({"role": "ea", "sub": "A1 B"}, "token subject is not a valid account id"),
    ):
        path = "/ea" if changes.get("role") == "ea" else "/client"
        status, body = await _status(_url(gateway, path), jwt.encode(_claims(**changes), secret, algorithm="HS256"))
        assert (status, reason in body) == (401, True), (changes, body)
    ws = await _open(_url(gateway, "/client"), jwt.encode(_claims(users=["*"]), secret, algorithm="HS256"))
    welcome = await _client_frame(ws, ClientWelcome)
    assert isinstance(welcome, ClientWelcome)
    assert (welcome.accounts, welcome.users) == (["A1"], ["*"])  # "*" is a user called "*", nothing more
    await ws.close()


async def test_every_token_id_the_gateway_accepts_can_be_revoked(gateway: Gateway, secret: str, nc: NatsClient) -> None:
    ea = _url(gateway, "/ea")
    for bad in ("a..b", "a b", "*", ".a"):
        token = jwt.encode(_claims(role="ea", sub="A1", jti=bad), secret, algorithm="HS256")
        status, body = await _status(ea, token)
        assert (status, "token id (jti) is not valid" in body) == (401, True), (bad, body)
    for jti in ("dotted.id=1_2-3", "t-" + "x" * 126):
        token = jwt.encode(_claims(role="ea", sub="A1", jti=jti), secret, algorithm="HS256")
        terminal = await RawEa.connect(ea, token)
        assert isinstance(await terminal.recv_type(Welcome), Welcome)
        await streams.revoke(nc.jetstream(), auth.check_token_id(jti))  # what `hedgebridge token revoke` does
        await wait_for(lambda jti=jti: jti in gateway.revocations, "the gateway to see the revocation")  # type: ignore[misc]
        assert await terminal.closed() == CloseCode.POLICY_VIOLATION
        assert await _status(ea, token) == (401, "token revoked")


# --- frames a session must survive ---------------------------------------------------------------------------

DEEP = "[" * 1000 + "]" * 1000  # 2 KB
DEEP_FRAMES = [
    DEEP,
    '{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":1,"extra":' + DEEP + "}",
    '{"type":"PRICE","accountId":"A1","symbol":"EURUSD","bid":' + DEEP + ',"ask":1.1,"time":"2026-01-01"}',
]


async def test_a_terminal_sending_json_nested_a_thousand_levels_gets_errors_and_stays(ea_url: str, secret: str) -> None:
    # before: the first one ended the session with 1011 (a RecursionError in the gateway's log)
    terminal = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await terminal.recv_type(Welcome)
    for frame in DEEP_FRAMES:
        await terminal.send_raw(frame)
        error = await terminal.recv_type(ErrorMessage)
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.message) == (errors.MALFORMED_FRAME, codec.TOO_DEEP)
    await terminal.send(Heartbeat(timestamp=utcnow(), seq=7))
    beat = await terminal.recv_type(Heartbeat)
    assert isinstance(beat, Heartbeat)
    assert (beat.seq, beat.reply) == (7, True)
    await terminal.close()


async def test_a_client_sending_json_nested_a_thousand_levels_gets_errors_and_stays(
    gateway: Gateway, secret: str
) -> None:
    ws = await _open(_url(gateway, "/client"), jwt.encode(_claims(), secret, algorithm="HS256"))
    await _client_frame(ws, ClientWelcome)
    for frame in [*DEEP_FRAMES, '{"type":"REQUEST","requestId":"r1","body":' + DEEP + "}"]:
        await ws.send(frame)
        error = await _client_frame(ws, ErrorMessage)
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.message) == (errors.MALFORMED_FRAME, codec.TOO_DEEP)
    await ws.send(encode_frame(Heartbeat(timestamp=utcnow(), seq=8)).decode())
    beat = await _client_frame(ws, Heartbeat)
    assert isinstance(beat, Heartbeat)
    assert beat.seq == 8
    await ws.close()

    # with the AUTH frame, a deep first frame is refused like any other first frame that is not AUTH
    ws = await _open(_url(gateway, "/client"), None)
    await ws.send(DEEP)
    code, reason = await _close_of(ws)
    assert (code, reason) == (CloseCode.POLICY_VIOLATION, f"the first frame must be AUTH: {codec.TOO_DEEP}"[:120])


# --- integers ------------------------------------------------------------------------------------------------


async def test_integers_outside_the_protocols_range_get_errors_and_the_session_stays(
    ea_url: str, gateway: Gateway, secret: str
) -> None:
    # before: a seq of 2^64 + 5 was accepted and echoed; an errorCode of 2^64 ended the session with 1011
    terminal = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await terminal.recv_type(Welcome)
    for frame, field in (
        ('{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":18446744073709551621}', "seq"),
        (
            '{"type":"OPENED","timestamp":"2026-01-01T00:00:00Z","accountId":"A1","positionId":"p","actionId":"a",'
            '"status":"FAILED","errorCode":18446744073709551616}',
            "errorCode",
        ),
    ):
        await terminal.send_raw(frame)
        error = await terminal.recv_type(ErrorMessage)
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.field) == (errors.INVALID_FIELD, field)
    await terminal.send(Heartbeat(timestamp=utcnow(), seq=2**53 - 1))
    beat = await terminal.recv_type(Heartbeat)
    assert isinstance(beat, Heartbeat)
    assert beat.seq == 2**53 - 1
    await terminal.close()

    ws = await _open(_url(gateway, "/client"), jwt.encode(_claims(), secret, algorithm="HS256"))
    await _client_frame(ws, ClientWelcome)
    await ws.send('{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":99999999999999999999999}')
    refused = await _client_frame(ws, ErrorMessage)
    assert isinstance(refused, ErrorMessage)
    assert (refused.code, refused.field) == (errors.INVALID_FIELD, "seq")
    await ws.send(encode_frame(Heartbeat(timestamp=utcnow(), seq=5)).decode())
    assert isinstance(await _client_frame(ws, Heartbeat), Heartbeat)
    await ws.close()


# --- reports no command explains -----------------------------------------------------------------------------


def _opened(action_id: str | None, position_id: str = "p-x", status: str = "SUCCESS") -> OpenedEvent:
    return OpenedEvent(
        timestamp=utcnow(),
        account_id="A1",
        position_id=position_id,
        action_id=action_id,
        mt_ticket="900" if status == "SUCCESS" else None,
        price=1.1 if status == "SUCCESS" else None,
        volume=0.1,
        status=status,  # type: ignore[arg-type]
    )


def _closed(action_id: str | None, reason: str | None = None) -> ClosedEvent:
    return ClosedEvent(
        timestamp=utcnow(),
        account_id="A1",
        position_id="p-x",
        action_id=action_id,
        mt_ticket="900",
        price=1.2,
        profit=3.0,
        status="SUCCESS",
        reason=reason,
    )


async def _answer(terminal: RawEa, report: OpenedEvent | ClosedEvent) -> ErrorMessage | None:
    """Send ``report`` and a heartbeat: the ERROR the report got before the heartbeat's reply, if any."""
    await terminal.send(report)
    await terminal.send(Heartbeat(timestamp=utcnow(), seq=41))
    error: ErrorMessage | None = None
    while True:
        frame = await terminal.recv()
        if isinstance(frame, ErrorMessage):
            error = frame
        elif isinstance(frame, Heartbeat) and frame.reply and frame.seq == 41:
            return error


async def _trades(nc: NatsClient, seen: list[Message]) -> None:
    async def collect(msg: Msg) -> None:
        seen.append(unpack_event(msg.data))

    for kind in ("OPENED", "CLOSED"):
        await nc.subscribe(subjects.event("A1", kind), cb=collect)
    await nc.flush()


async def test_a_report_for_a_command_never_sent_is_an_error_and_no_trade(
    ea_url: str, secret: str, nc: NatsClient, executor: Executor
) -> None:
    # before: each of these was published, and watchers of `trades` saw a fill nobody ordered
    seen: list[Message] = []
    await _trades(nc, seen)
    terminal = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await terminal.recv_type(Welcome)
    for report in (_opened("never-sent"), _opened(None), _opened("never-sent-2", status="FAILED"), _closed("nope")):
        error = await _answer(terminal, report)
        assert error is not None, report
        assert (error.code, error.ref_type) == (errors.UNSOLICITED_REPORT, type_name(report))
        assert error.ref_id == (report.action_id or report.position_id)
    # an order of this account sent as an OPEN does not explain a CLOSED with its actionId
    filler = asyncio.create_task(_fill_next_open(terminal))
    result = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id="real-1"))
    await filler
    assert result.status == "FILLED"
    error = await _answer(terminal, _closed("real-1"))
    assert error is not None
    assert error.code == errors.UNSOLICITED_REPORT
    # a close the terminal saw without a command, with its reason, is an outside trade: published as such
    assert await _answer(terminal, _closed(None, reason="stop_loss")) is None
    await wait_for(lambda: any(isinstance(m, ClosedEvent) and m.reason == "stop_loss" for m in seen), "the close")
    assert [(type_name(m), getattr(m, "action_id", None)) for m in seen] == [("OPENED", "real-1"), ("CLOSED", None)]
    await terminal.close()


async def _fill_next_open(terminal: RawEa) -> None:
    command = await terminal.recv_type(OpenCommand)
    assert isinstance(command, OpenCommand)
    await terminal.send(_opened(command.action_id, position_id=command.position_id))


async def test_a_real_report_sent_again_to_another_gateway_is_recognised_and_kept_once(
    ea_url: str, secret: str, nc: NatsClient, executor: Executor, nats_server: NatsServer
) -> None:
    seen: list[Message] = []
    await _trades(nc, seen)
    terminal = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await terminal.recv_type(Welcome)
    filler = asyncio.create_task(_fill_next_open(terminal))
    result = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id="again-1"))
    await filler
    assert result.status == "FILLED"
    await terminal.close()
    # the terminal could not prove the report arrived: it sends it again, here to a gateway that never saw the
    # command (it is found in the order records)
    other = Gateway(gateway_config(nats_server.url, secret, id="gw-other"))
    await other.start()
    try:
        again = await RawEa.connect(f"ws://127.0.0.1:{other.port}/ea", ea_token(secret, "A1"))
        await again.recv_type(Welcome)
        assert await _answer(again, _opened("again-1", position_id=result.position_id or "")) is None
        await wait_for(lambda: len(seen) == 2, "the repeated report on NATS")
        stored = await nc.jetstream().stream_info(subjects.EVENTS_STREAM, subjects_filter="hb.ea.A1.evt.opened")
        assert stored.state.subjects == {"hb.ea.A1.evt.opened": 1}  # the event stream keeps it once
        await again.close()
    finally:
        await other.stop()
