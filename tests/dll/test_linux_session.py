"""The library's session rules against a WebSocket server written for the tests (tests/dll/wsserver.py): a
DisconnectWebSocket that does not wait for the peer, masking keys from the kernel's generator, an empty frame
told apart from none, buffer sizes that leave the last error alone, the reconnect backoff, and a refusal's
Retry-After waited out.

Like test_linux_library.py, each test drives the ASan/UBSan build in a child process (tests/dll/driver.py).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from hedgebridge.protocol import Heartbeat, Welcome, encode_frame, utcnow
from hedgebridge.sim.ea.frames import OP_TEXT

from ..helpers import ea_token, wait_for
from .client import (
    WS_ERR_CONNECT_FAILED,
    WS_ERR_INVALID_ARGUMENT,
    WS_STATE_BACKOFF,
    WS_STATE_IDLE,
    DllClient,
)
from .conftest import MakeCa, StartProxy
from .wsserver import Refusal, WsTestServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TOKEN = "t0ken"
SHIM = Path(__file__).with_name("getrandom_log.c")


async def _open(dll: DllClient, url: str) -> None:
    assert await dll.connect(url, TOKEN) == 1
    await dll.until_equal(dll.is_connected, 1)


async def test_disconnect_returns_before_the_server_answers_the_close(dll: DllClient, ea_url: str, secret: str) -> None:
    async with WsTestServer(answer_close=False) as server:
        # the retired thread may wait a minute for the server's close frame: the call must not
        assert await dll.set_option("close_timeout_ms", "60000") == 1
        await _open(dll, server.url)
        (conn,) = server.connections
        await dll.disconnect()  # the driver answers once DisconnectWebSocket has returned
        assert not conn.eof, "DisconnectWebSocket returned only after the socket was closed"
        assert await dll.state() == WS_STATE_IDLE
        assert await dll.is_connected() == 0
        await wait_for(lambda: conn.close_received, "the close frame from the retired thread")
        assert conn.frames[-1].payload[:2] == (1000).to_bytes(2, "big")
        assert not conn.eof  # the retired thread still waits for the answer

        # meanwhile the library is usable at once, and stays mapped across dlclose/dlopen (-z nodelete)
        await dll.reload()
        assert await dll.connect(ea_url, ea_token(secret, "DLL-CLOSE")) == 1
        assert isinstance(await dll.next_frame(Welcome, timeout_s=10), Welcome)
        assert await dll.send(encode_frame(Heartbeat(timestamp=utcnow(), seq=5)).decode()) == 1
        reply = await dll.next_frame(Heartbeat)
        assert isinstance(reply, Heartbeat)
        assert reply.seq == 5
        assert not conn.eof

        # the answer comes: the retired thread ends the closing handshake and closes its socket
        server.answer_closes()
        await wait_for(lambda: conn.eof, "the retired thread to close its socket")
        assert await dll.is_connected() == 1  # the new connection is not disturbed


async def test_exit_while_a_retired_thread_waits_for_the_close_over_wss(
    asan_library: Path, tmp_path: Path, make_ca: MakeCa, tls_proxy: StartProxy
) -> None:
    """At exit the retired thread is cut before OpenSSL cleans up: the process ends at once, without a report."""
    async with WsTestServer(answer_close=False) as server:
        ca = make_ca("hedgebridge-test-ca")
        proxy = await tls_proxy(ca, server.port, ["localhost"], [])
        dll = await DllClient.start(asan_library, tmp_path / "driver")
        try:
            assert await dll.set_option("ca_file", str(ca.pem)) == 1
            assert await dll.set_option("close_timeout_ms", "60000") == 1
            await _open(dll, f"wss://localhost:{proxy.port}/ea")
            (conn,) = server.connections
            await dll.disconnect()
            await wait_for(lambda: conn.close_received, "the close frame through the TLS proxy")
        finally:
            await dll.close()  # exit code 0 and no sanitizer report, or it fails
        await wait_for(lambda: conn.eof, "the connection to end with the process")


def _build_shim(tmp_path: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the getrandom recorder")
    shim = tmp_path / "getrandom_log.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(shim), str(SHIM)], check=True)
    return shim


async def test_masking_keys_come_from_getrandom(asan_library: Path, tmp_path: Path) -> None:
    """RFC 6455 §5.3: each masking key is fresh from the OS's generator, so every key the server sees is the
    output of one getrandom() call (recorded by a preloaded getrandom that logs what the kernel returned)."""
    record = tmp_path / "getrandom.log"
    shim = _build_shim(tmp_path)
    async with WsTestServer() as server:
        dll = await DllClient.start(
            asan_library, tmp_path / "driver", preload=shim, env={"HB_GETRANDOM_LOG": str(record)}
        )
        try:
            await _open(dll, server.url)
            for i in range(64):
                assert await dll.send(f"frame {i}") == 1
            (conn,) = server.connections
            await wait_for(lambda: len(conn.text_frames()) == 64, "64 frames at the server")
        finally:
            await dll.close()
    frames = conn.text_frames()
    assert [f.payload for f in frames] == [f"frame {i}".encode() for i in range(64)]
    keys = [f.key for f in frames]
    assert len(set(keys)) == 64, "a masking key was used twice"
    drawn = {bytes.fromhex(line) for line in record.read_text().split()}
    assert all(key in drawn for key in keys), "masking keys that no getrandom() call returned"
    # the handshake's Sec-WebSocket-Key too: 16 bytes, four draws of 4
    assert len(conn.handshake_key) == 16
    assert all(conn.handshake_key[i : i + 4] in drawn for i in range(0, 16, 4))


async def test_an_empty_frame_and_no_frame_are_told_apart(dll: DllClient) -> None:
    async with WsTestServer(on_open=[(OP_TEXT, b""), (OP_TEXT, b"x")]) as server:
        await _open(dll, server.url)

        async def both_waiting() -> bool:
            return await dll.pending() == 2

        await dll.until(both_waiting, "two frames waiting")
        assert await dll.peek() == 1  # the empty frame needs its NUL only
        empty = await dll.receive(size=16)
        assert (empty["result"], empty["text"], empty["guard_ok"]) == (0, "", True)  # an empty frame, read
        assert await dll.pending() == 1
        x = await dll.receive(size=16, wide=True)
        assert (x["result"], x["text"]) == (1, "x")
        assert await dll.pending() == 0
        none = await dll.receive(size=16)
        assert (none["result"], none["text"]) == (0, None)  # nothing waiting: nothing written


async def test_a_buffer_too_small_keeps_the_last_real_error(dll: DllClient) -> None:
    frame = b'{"type":"HELLO"}'
    async with WsTestServer(on_open=[(OP_TEXT, frame)]) as server:
        await _open(dll, server.url)

        async def waiting() -> bool:
            return await dll.pending() == 1

        await dll.until(waiting, "the frame")
        assert await dll.set_option("no_such_option", "1") == 0  # a real failure
        reason = (await dll.error_message())["text"]
        assert "no_such_option" in reason
        for wide in (False, True):
            answer = await dll.receive(size=4, wide=wide)
            assert answer["result"] == -(len(frame) + 1)
            assert answer["untouched"]
            assert await dll.peek(wide=wide) == len(frame) + 1
            assert await dll.last_error() == WS_ERR_INVALID_ARGUMENT  # not WS_ERR_BUFFER_TOO_SMALL
            assert (await dll.error_message())["text"] == reason
        assert (await dll.receive())["text"] == frame.decode()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there any more: connections are refused


async def test_reconnect_delays_are_decorrelated_jitter_between_min_and_max(dll: DllClient) -> None:
    assert await dll.set_option("reconnect_min_ms", "20") == 1
    assert await dll.set_option("reconnect_max_ms", "300") == 1
    assert await dll.connect(f"ws://127.0.0.1:{_closed_port()}/ea", TOKEN) == 1
    seen = await dll.watch_reconnects(12)
    await dll.disconnect()
    delays = dict(seen)
    assert max(delays, default=0) >= 12, seen
    assert len(delays) >= 6, seen  # polled every millisecond: most reconnects are seen
    assert all(20 <= d <= 300 for d in delays.values()), seen
    if 1 in delays:
        assert delays[1] <= 60, seen  # the first: between min and three times min
    for n, d in delays.items():
        if n - 1 in delays:
            assert d <= 3 * delays[n - 1], seen  # at most three times the one before
    assert len(set(delays.values())) > 1, seen  # jittered


async def test_connect_timeout_against_a_server_that_never_answers(dll: DllClient) -> None:
    async with WsTestServer(silent=True) as server:
        assert await dll.set_option("connect_timeout_ms", "300") == 1
        assert await dll.set_option("reconnect_min_ms", "5000") == 1
        assert await dll.connect(server.url, TOKEN) == 1
        await dll.until_equal(dll.state, WS_STATE_BACKOFF, timeout_s=20)
        assert await dll.last_error() == WS_ERR_CONNECT_FAILED
        assert "timed out after 300 ms" in (await dll.error_message())["text"]
        assert await dll.reconnect_count() == 1
        await wait_for(lambda: bool(server.connections) and server.connections[0].eof, "the attempt's socket closed")


async def test_a_refusal_with_retry_after_is_waited_out(dll: DllClient) -> None:
    """503 with Retry-After: the next attempt waits at least that long, plus up to as long again; a 429 without
    one, or a Retry-After that is not a number of seconds, keeps the normal backoff. Each refusal's status and
    Retry-After are reported with the reconnect it caused."""
    refusals = [
        Refusal(503, {"Retry-After": "1"}),
        Refusal(429),
        Refusal(503, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}),  # an HTTP date: ignored
        Refusal(503, {"Retry-After": " 0.5 "}),
    ]
    async with WsTestServer(refusals=refusals) as server:
        assert await dll.set_option("reconnect_min_ms", "20") == 1
        assert await dll.set_option("reconnect_max_ms", "300") == 1
        assert await dll.http_status() == 0
        assert await dll.retry_after() == -1
        assert await dll.connect(server.url, TOKEN) == 1
        seen = {r.number: r for r in await dll.watch_refusals(4, timeout_s=30)}
        await dll.until_equal(dll.is_connected, 1, timeout_s=20)  # the fifth attempt is accepted
        assert "HTTP 503, Retry-After 500 ms" in (await dll.error_message())["text"]  # the last failure's reason
    attempts = server.connections
    assert [c.refused for c in attempts] == [503, 429, 503, 503, 0]
    assert sorted(seen) == [1, 2, 3, 4], seen  # each reconnect lasts long enough to be seen

    # what the server saw: the next attempt no earlier than Retry-After after the refusal, nor than the delay
    for refused, retry_after_s in ((0, 1.0), (3, 0.5)):
        waited = attempts[refused + 1].accepted_at - attempts[refused].answered_at
        assert waited >= retry_after_s, (refused, waited)
        assert waited >= seen[refused + 1].delay_ms / 1000 - 0.001, (refused, waited, seen)

    # what the library reported: the delay is Retry-After plus a share of up to as long again
    assert (seen[1].http_status, seen[1].retry_after_ms) == (503, 1000), seen
    assert 1000 <= seen[1].delay_ms <= 2000, seen
    assert (seen[4].http_status, seen[4].retry_after_ms) == (503, 500), seen
    assert 500 <= seen[4].delay_ms <= 1000, seen
    # no Retry-After, or one that is not seconds: the jittered delay, within reconnect_min_ms/_max_ms
    assert (seen[2].http_status, seen[2].retry_after_ms) == (429, -1), seen
    assert (seen[3].http_status, seen[3].retry_after_ms) == (503, -1), seen
    assert all(20 <= seen[n].delay_ms <= 300 for n in (2, 3)), seen
