"""The WebSocket client library (Linux build, ASan + UBSan) against the real gateway, through its C API.

Each test drives the library in a child process (tests/dll/driver.py) with the sanitizer runtime preloaded;
a sanitizer report or a crash fails the test when the process ends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    CloseMetadata,
    ErrorMessage,
    Heartbeat,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    TerminalStatus,
    Welcome,
    encode_frame,
    subjects,
    unpack,
    unpack_event,
    utcnow,
)
from hedgebridge.protocol.messages import CloseCommand

from ..conftest import gateway_config
from ..helpers import RawEa, collect, deliver, ea_token, wait_for
from .client import (
    WS_ERR_CLOSED_BY_SERVER,
    WS_ERR_HANDSHAKE_REFUSED,
    WS_ERR_INVALID_ARGUMENT,
    WS_ERR_MESSAGE_TOO_LARGE,
    WS_ERR_NONE,
    WS_ERR_NOT_CONNECTED,
    WS_ERR_TLS,
    WS_ERR_UNAUTHORIZED,
    WS_STATE_IDLE,
    WS_STATE_OPEN,
    DllClient,
    header_functions,
)
from .conftest import MakeCa, StartProxy

# the first test also builds the sanitizer library (minutes on a small machine)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ACCOUNT = "DLL-001"


def _heartbeat(seq: int) -> str:
    return encode_frame(Heartbeat(timestamp=utcnow(), seq=seq)).decode()


async def _connected(dll: DllClient, url: str, token: str, *, wide: bool = False) -> Welcome:
    """Connect, wait for WELCOME and return it."""
    assert await dll.connect(url, token, wide=wide) == 1
    welcome = await dll.next_frame(Welcome, timeout_s=10, wide=wide)
    assert isinstance(welcome, Welcome)
    assert await dll.is_connected() == 1
    return welcome


async def test_connects_with_a_token_and_exchanges_heartbeats(dll: DllClient, ea_url: str, secret: str) -> None:
    welcome = await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    assert welcome.account_id == ACCOUNT
    assert welcome.protocol_version == 1
    assert await dll.state() == WS_STATE_OPEN

    assert await dll.send(_heartbeat(7)) == 1
    reply = await dll.next_frame(Heartbeat)
    assert isinstance(reply, Heartbeat)
    assert (reply.seq, reply.reply) == (7, True)


async def test_command_from_nats_arrives_and_the_event_goes_back(
    dll: DllClient, ea_url: str, secret: str, nc: NatsClient
) -> None:
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    command = OpenCommand(
        timestamp=utcnow(),
        account_id=ACCOUNT,
        position_id="p-dll-1",
        action_id="a-dll-1",
        symbol="EURUSD",
        side="BUY",
        volume=0.1,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u-1"),
    )
    ack = await deliver(nc, ACCOUNT, command)
    assert ack.delivered, ack.reason

    received = await dll.next_frame(OpenCommand)
    assert received == command

    events = await collect(nc, subjects.event(ACCOUNT, "OPENED"), lambda msg: msg)
    opened = OpenedEvent(
        timestamp=utcnow(),
        account_id=ACCOUNT,
        position_id="p-dll-1",
        action_id="a-dll-1",
        mt_ticket="50000001",
        price=1.08506,
        volume=0.1,
        status="SUCCESS",
    )
    assert await dll.send(encode_frame(opened).decode()) == 1
    await wait_for(lambda: len(events) == 1, "the OPENED event on NATS")
    assert unpack_event(events[0].data) == opened


async def test_reconnects_when_the_gateway_restarts_on_the_same_port(
    dll: DllClient, gateway: Gateway, nats_server: NatsServer, secret: str
) -> None:
    assert await dll.set_option("reconnect_min_ms", "50") == 1
    assert await dll.set_option("reconnect_max_ms", "200") == 1
    port = gateway.port
    first = await _connected(dll, f"ws://127.0.0.1:{port}/ea", ea_token(secret, ACCOUNT))

    await gateway.stop()
    await dll.until_equal(dll.is_connected, 0)
    assert await dll.close_code() == 1001  # going away
    assert await dll.last_error() == WS_ERR_CLOSED_BY_SERVER

    second_gateway = Gateway(gateway_config(nats_server.url, secret, id="gw-test-2", port=port))
    await second_gateway.start()
    try:
        second = await dll.next_frame(Welcome, timeout_s=15)
        assert isinstance(second, Welcome)
        assert second.session_id != first.session_id
        assert await dll.is_connected() == 1
        assert await dll.send(_heartbeat(2)) == 1
        reply = await dll.next_frame(Heartbeat)
        assert isinstance(reply, Heartbeat)
        assert reply.seq == 2
    finally:
        await dll.disconnect()
        await second_gateway.stop()


async def test_refused_token_is_reported_as_401(dll: DllClient, ea_url: str, secret: str) -> None:
    wrong = ea_token(auth.new_secret(), ACCOUNT)  # signed with another key
    assert await dll.connect(ea_url, wrong) == 1
    await dll.until_equal(dll.last_error, WS_ERR_UNAUTHORIZED)
    assert await dll.is_connected() == 0
    message = await dll.error_message()
    assert "401" in message["text"]

    # a token for a role other than "ea" is refused the same way
    assert await dll.connect(ea_url, auth.mint_token(secret, role="admin", subject="ops")) == 1
    await dll.until_equal(dll.last_error, WS_ERR_UNAUTHORIZED)


async def test_wrong_path_is_a_refused_handshake(dll: DllClient, gateway: Gateway, secret: str) -> None:
    assert await dll.connect(f"ws://127.0.0.1:{gateway.port}/nope", ea_token(secret, ACCOUNT)) == 1
    await dll.until_equal(dll.last_error, WS_ERR_HANDSHAKE_REFUSED)
    assert "404" in (await dll.error_message())["text"]


async def test_a_busy_gateways_retry_after_is_waited_out(dll: DllClient, nats_server: NatsServer, secret: str) -> None:
    """A gateway whose handshake budget is spent (one every 2 s) answers 503 with Retry-After: the library
    reports the status and the Retry-After, waits at least that long (plus up to as long again) and then
    gets in."""
    busy = Gateway(gateway_config(nats_server.url, secret, id="gw-busy", connect_rate=0.5, connect_burst=1))
    await busy.start()
    url = f"ws://127.0.0.1:{busy.port}/ea"
    first = await RawEa.connect(url, ea_token(secret, "DLL-BUSY"))  # takes the one handshake of the budget
    try:
        assert await dll.set_option("reconnect_min_ms", "20") == 1
        assert await dll.set_option("reconnect_max_ms", "100") == 1
        assert await dll.connect(url, ea_token(secret, ACCOUNT)) == 1
        refused = (await dll.watch_refusals(1))[0]
        assert refused.http_status == 503, refused
        assert refused.retry_after_ms in (1000, 2000), refused  # whole seconds, rounded up from the refill
        assert refused.retry_after_ms <= refused.delay_ms <= 2 * refused.retry_after_ms, refused
        assert await dll.last_error() == WS_ERR_HANDSHAKE_REFUSED
        assert "HTTP 503, Retry-After" in (await dll.error_message())["text"]
        welcome = await dll.next_frame(Welcome, timeout_s=20)
        assert isinstance(welcome, Welcome)
        assert welcome.account_id == ACCOUNT
    finally:
        await dll.disconnect()
        await first.ws.close()
        await busy.stop()


async def test_oversized_message_is_closed_with_1009_and_the_library_reconnects(
    dll: DllClient, ea_url: str, secret: str
) -> None:
    assert await dll.set_option("reconnect_min_ms", "50") == 1
    first = await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    assert first.max_frame_bytes == 64 * 1024
    big = json.dumps({"type": "HEARTBEAT", "timestamp": utcnow().isoformat(), "pad": "x" * (100 * 1024)})
    assert await dll.send(big) == 1
    await dll.until_equal(dll.close_code, 1009)
    second = await dll.next_frame(Welcome, timeout_s=10)
    assert isinstance(second, Welcome)
    assert second.session_id != first.session_id


async def test_own_size_limit_and_not_connected(dll: DllClient, ea_url: str, secret: str) -> None:
    assert await dll.send(_heartbeat(1)) == 0
    assert await dll.last_error() == WS_ERR_NOT_CONNECTED
    assert await dll.set_option("max_message_bytes", "2048") == 1
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    assert await dll.send("x" * 4096) == 0
    assert await dll.last_error() == WS_ERR_MESSAGE_TOO_LARGE
    assert await dll.is_connected() == 1


async def test_small_buffer_reports_the_needed_size_and_keeps_the_message(
    dll: DllClient, ea_url: str, secret: str
) -> None:
    assert await dll.connect(ea_url, ea_token(secret, ACCOUNT)) == 1

    async def waiting() -> bool:
        return await dll.peek() > 0

    await dll.until(waiting, "a received frame")
    needed = await dll.peek()  # NULL buffer: ask for the size
    assert needed > 20

    for size in (1, 10, needed - 1):  # needed - 1 would fit the text but not its NUL
        answer = await dll.receive(size=size)
        assert answer["result"] == -needed, answer
        assert answer["untouched"], answer
        assert answer["guard_ok"], answer
        assert await dll.last_error() == WS_ERR_NONE  # the result alone says the buffer was too small

    answer = await dll.receive(size=needed)
    assert answer["result"] == needed - 1
    assert answer["guard_ok"]
    welcome = json.loads(answer["text"])
    assert welcome["type"] == "WELCOME"
    assert (await dll.receive())["result"] == 0  # popped exactly once


async def test_wide_functions_round_trip_non_ascii_text(
    dll: DllClient, ea_url: str, secret: str, nc: NatsClient
) -> None:
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT), wide=True)
    reason = "手動決済 日本語 🚀 — ok"
    command = CloseCommand(
        timestamp=utcnow(),
        account_id=ACCOUNT,
        position_id="p-2",
        action_id="a-2",
        mt_ticket="50000002",
        metadata=CloseMetadata(exit_reason=reason, user_id="ユーザー😀"),
    )
    assert (await deliver(nc, ACCOUNT, command)).delivered

    # the wide buffer counts UTF-16 code units: each emoji takes two
    text = None

    async def wide_frame() -> bool:
        nonlocal text
        answer = await dll.receive(size=4096, wide=True)
        assert answer["guard_ok"], answer
        text = answer["text"] if answer["result"] > 0 and "CLOSE" in answer["text"] else text
        return text is not None

    await dll.until(wide_frame, "the CLOSE command")
    assert text is not None
    received = json.loads(text)
    assert received["metadata"] == {"exitReason": reason, "userId": "ユーザー😀"}

    events = await collect(nc, subjects.event(ACCOUNT, "OPENED"), lambda msg: msg)
    # the report answers an OPEN the gateway sent (a report for no command is refused as unsolicited)
    open_command = OpenCommand(
        timestamp=utcnow(),
        account_id=ACCOUNT,
        position_id="p-3",
        action_id="a-3",
        symbol="EURUSD",
        side="BUY",
        volume=0.1,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u-1"),
    )
    assert (await deliver(nc, ACCOUNT, open_command)).delivered
    failure = "注文拒否 💥 (市場休場)"
    opened = {
        "type": "OPENED",
        "timestamp": utcnow().isoformat(),
        "accountId": ACCOUNT,
        "positionId": "p-3",
        "actionId": "a-3",
        "status": "FAILED",
        "errorMessage": failure,
        "errorCode": 10018,
    }
    assert await dll.send(json.dumps(opened, ensure_ascii=False), wide=True) == 1
    await wait_for(lambda: len(events) == 1, "the OPENED event on NATS")
    event = unpack_event(events[0].data)
    assert isinstance(event, OpenedEvent)
    assert event.error_message == failure


async def test_lone_surrogate_becomes_the_replacement_character(dll: DllClient, ea_url: str, secret: str) -> None:
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT), wide=True)
    # an unknown type is answered with an ERROR frame naming it: the gateway echoes what the library sent
    assert await dll.send('{"type":"X\ud800Y"}', wide=True) == 1
    error = await dll.next_frame(ErrorMessage, wide=True)
    assert isinstance(error, ErrorMessage)
    assert error.ref_type == "X\ufffdY"


async def test_small_wide_buffer_counts_utf16_units(dll: DllClient, ea_url: str, secret: str) -> None:
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    assert await dll.send('{"type":"\U0001f680"}') == 1  # answered with an ERROR frame naming the type

    async def waiting() -> bool:
        return await dll.peek(wide=True) > 0

    await dll.until(waiting, "a received frame")
    needed_units = await dll.peek(wide=True)
    needed_bytes = await dll.peek()
    answer = await dll.receive(size=needed_units - 1, wide=True)
    assert answer["result"] == -needed_units
    assert answer["untouched"]
    assert answer["guard_ok"]
    answer = await dll.receive(size=needed_units, wide=True)
    assert answer["result"] == needed_units - 1
    assert answer["guard_ok"]
    text = answer["text"]
    assert "\U0001f680" in text
    # each emoji: 4 bytes of UTF-8, 2 UTF-16 units
    assert needed_units - 1 == len(text.encode("utf-16-le")) // 2 < len(text.encode()) == needed_bytes - 1


async def test_disconnect_closes_with_1000_and_is_idempotent(
    dll: DllClient, ea_url: str, secret: str, nc: NatsClient
) -> None:
    statuses: list[TerminalStatus] = []

    async def on_status(msg: Msg) -> None:
        statuses.append(unpack(msg.data, TerminalStatus))

    await nc.subscribe(subjects.status(ACCOUNT), cb=on_status)
    await nc.flush()
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    await dll.disconnect()
    assert await dll.is_connected() == 0
    assert await dll.state() == WS_STATE_IDLE
    await wait_for(lambda: any(s.status == "DISCONNECTED" for s in statuses), "the DISCONNECTED status")
    disconnected = next(s for s in statuses if s.status == "DISCONNECTED")
    assert disconnected.reason == "closed 1000"
    await dll.disconnect()
    await dll.disconnect()
    assert await dll.send(_heartbeat(1)) == 0


async def test_replaced_connection_reports_4002(dll: DllClient, ea_url: str, secret: str) -> None:
    assert await dll.set_option("reconnect_min_ms", "2000") == 1
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    other = await RawEa.connect(ea_url, ea_token(secret, ACCOUNT))
    try:
        await dll.until_equal(dll.close_code, 4002)
        assert await dll.last_error() == WS_ERR_CLOSED_BY_SERVER
    finally:
        await dll.disconnect()
        await other.close()


async def test_backpressure_keeps_every_frame_in_order(dll: DllClient, ea_url: str, secret: str) -> None:
    """With room for two frames, the library stops reading until the application takes one: nothing is lost."""
    assert await dll.set_option("max_queue", "2") == 1
    await _connected(dll, ea_url, ea_token(secret, ACCOUNT))
    for seq in range(1, 21):

        async def sent(seq: int = seq) -> bool:
            return await dll.send(_heartbeat(seq)) == 1  # 0 with WS_ERR_QUEUE_FULL while two wait

        await dll.until(sent, f"heartbeat {seq} queued")
    replies = []
    for _ in range(20):
        reply = await dll.next_frame(Heartbeat)
        assert isinstance(reply, Heartbeat)
        replies.append(reply.seq)
    assert replies == list(range(1, 21))
    assert await dll.is_connected() == 1


async def test_concurrent_calls_while_connecting_and_disconnecting(dll: DllClient, ea_url: str, secret: str) -> None:
    """Four threads call every function while the main thread connects and disconnects (ASan/UBSan watch)."""
    answer = await dll.call("stress", url=ea_url, token=ea_token(secret, ACCOUNT), rounds=15)
    assert answer["result"] > 0, answer  # some rounds got as far as an open connection
    assert answer["calls"] > 0
    assert await dll.state() == WS_STATE_IDLE


async def test_invalid_arguments(dll: DllClient) -> None:
    for url, token in [
        ("http://127.0.0.1:1/ea", "t"),
        ("ws://", "t"),
        ("ws://127.0.0.1:99999/ea", "t"),
        ("ws://127.0.0.1:1/ea", ""),
        ("ws://127.0.0.1:1/ea", "bad token"),
        (None, "t"),
    ]:
        assert await dll.connect(url, token) == 0, (url, token)
        assert await dll.last_error() == WS_ERR_INVALID_ARGUMENT
        assert await dll.state() == WS_STATE_IDLE
    assert await dll.set_option("no_such_option", "1") == 0
    assert await dll.set_option("verify_tls", "maybe") == 0
    assert await dll.set_option("max_queue", "0") == 0
    assert await dll.set_option("ca_file", "/nonexistent/ca.pem") == 0
    assert await dll.set_option("reconnect_min_ms", "12x", wide=True) == 0
    assert await dll.set_option("reconnect_min_ms", "120", wide=True) == 1
    assert await dll.set_option(None, "1") == 0
    assert await dll.set_option("ca_file", "/nonexistent/ca.pem", wide=True) == 0
    assert await dll.last_error() == WS_ERR_INVALID_ARGUMENT
    message = await dll.error_message(wide=True)
    assert "ca_file" in message["text"]


def test_the_library_exports_exactly_the_header_functions(asan_library: Path) -> None:
    """The version script (dll/src/exports.map) hides Boost, OpenSSL glue and libstdc++ instantiations."""
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed")
    table = subprocess.run(
        ["nm", "-D", "--defined-only", str(asan_library)], capture_output=True, text=True, check=True
    ).stdout
    exported = {line.split()[-1] for line in table.splitlines() if line.strip()}
    assert exported == header_functions()


async def test_wss_with_a_test_ca(
    dll: DllClient, gateway: Gateway, secret: str, make_ca: MakeCa, tls_proxy: StartProxy
) -> None:
    ca = make_ca("hedgebridge-test-ca")
    proxy = await tls_proxy(ca, gateway.port, ["localhost"], ["127.0.0.1"])
    assert await dll.set_option("ca_file", str(ca.pem)) == 1
    for host in ("localhost", "127.0.0.1"):  # host name and IP address verification
        welcome = await _connected(dll, f"wss://{host}:{proxy.port}/ea", ea_token(secret, ACCOUNT))
        assert welcome.account_id == ACCOUNT
        assert await dll.send(_heartbeat(3)) == 1
        reply = await dll.next_frame(Heartbeat)
        assert isinstance(reply, Heartbeat)
        assert reply.seq == 3
        await dll.disconnect()


async def test_wss_refused_with_the_wrong_ca_or_name(
    dll: DllClient, gateway: Gateway, secret: str, make_ca: MakeCa, tls_proxy: StartProxy
) -> None:
    ca = make_ca("hedgebridge-test-ca")
    other_ca = make_ca("another-ca")
    proxy = await tls_proxy(ca, gateway.port, ["localhost"], [])
    token = ea_token(secret, ACCOUNT)
    assert await dll.set_option("reconnect_min_ms", "100") == 1
    # verification is on by default: a CA the client does not trust is refused
    assert await dll.set_option("ca_file", str(other_ca.pem)) == 1
    assert await dll.connect(f"wss://localhost:{proxy.port}/ea", token) == 1
    await dll.until_equal(dll.last_error, WS_ERR_TLS)
    assert await dll.is_connected() == 0
    assert "certificate" in (await dll.error_message())["text"]

    # the right CA, but the certificate does not name 127.0.0.1
    assert await dll.set_option("ca_file", str(ca.pem)) == 1
    assert await dll.connect(f"wss://127.0.0.1:{proxy.port}/ea", token) == 1
    await dll.until_equal(dll.last_error, WS_ERR_TLS)
    assert await dll.is_connected() == 0

    # with verification switched off the same server is accepted
    assert await dll.set_option("ca_file", str(other_ca.pem)) == 1
    assert await dll.set_option("verify_tls", "0") == 1
    await _connected(dll, f"wss://localhost:{proxy.port}/ea", token)
