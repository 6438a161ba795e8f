"""Terminal-side rules of the compiled EA that the contract suite does not provoke: two EAs for one account, an
EA started before its terminal logged in, a position closed while the EA was disconnected, the DLL
transport's connect timeout and reconnect backoff taken from the EA's inputs, and a busy gateway's Retry-After
waited out by both transports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.executor.service import Executor
from hedgebridge.protocol import ClosedEvent, OpenOrder, subjects, unpack_event
from hedgebridge.sim.ea.launch import CompiledEa, EaSettings

from ..dll.wsserver import Refusal, WsTestServer
from ..helpers import order, wait_for
from ..mt5.terminals import EaBuild
from .conftest import StartEa

pytestmark = pytest.mark.integration


async def test_an_ea_replaced_by_another_for_its_account_backs_off_and_says_so(start_ea: StartEa) -> None:
    settings = EaSettings(reconnect_min_ms=50, reconnect_max_ms=4000)
    first = await start_ea("A1", "first", settings)
    second = await start_ea("A1", "second", settings)
    await wait_for(
        lambda: any("another terminal took over account A1" in line for line in first.process.journal),
        "the replaced EA to say why it stopped",
    )
    # it waits the longest reconnect delay (4 s) instead of taking the account back at once (which would replace
    # the other EA, which would replace it, for ever): no new connection within the first 1.5 s of it
    with pytest.raises(AssertionError, match="timed out"):
        await wait_for(lambda: first.proxy.connections > 1, "a reconnect of the replaced EA", timeout_s=1.5)
    assert first.proxy.connections == 1
    assert second.proxy.connections == 1
    assert second.proxy.active


async def test_an_ea_started_before_the_terminal_logs_in_waits_for_the_account(
    start_ea: StartEa, tmp_path: Path
) -> None:
    # a terminal just started: not yet connected to the trade server, the login reads 0
    ea = await start_ea("1000001", "late", EaSettings(trade_config={"connect_after_ms": 1500}))
    assert any("waiting for the terminal to connect to the trade server" in line for line in ea.process.journal)
    books = sorted(p.name for p in (tmp_path / "late" / "HedgeBridge").iterdir())
    assert books == ["book_1000001.jsonl"]  # the book of the account, not of login 0


async def test_a_position_closed_while_the_ea_was_disconnected_is_reported_after_welcome(
    start_ea: StartEa, nc: NatsClient, executor: Executor
) -> None:
    ea = await start_ea("A1", "away", EaSettings(reconnect_min_ms=2000, reconnect_max_ms=3000))
    closed: list[ClosedEvent] = []

    async def collect(msg: Msg) -> None:
        event = unpack_event(msg.data)
        if isinstance(event, ClosedEvent):
            closed.append(event)

    await nc.subscribe(subjects.ALL_EVENTS, cb=collect)
    opened = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, action_id="away-1"))
    assert opened.mt_ticket is not None
    connections = ea.proxy.connections
    ea.proxy.cut()
    await ea.process.wait_journal("connection lost", 5)
    await ea.control("trade.close", ticket=int(opened.mt_ticket), reason="sl")  # the stop loss hits meanwhile
    await wait_for(lambda: ea.proxy.connections > connections and bool(closed), "the CLOSED report after reconnecting")
    (report,) = closed
    assert (report.position_id, report.mt_ticket, report.reason) == (opened.position_id, opened.mt_ticket, "stop_loss")
    assert report.profit is not None


async def _start_against(build: EaBuild, server: WsTestServer, files_dir: Path, settings: EaSettings) -> CompiledEa:
    """The EA for account A1 connecting to a test server (not a gateway), without waiting for a connection."""
    return await CompiledEa.start(
        build.binary,
        build.transport,
        account="A1",
        token="t0ken",
        gateway_host="127.0.0.1",
        gateway_port=server.port,
        files_dir=files_dir,
        dll_path=build.dll_path,
        settings=settings,
        wait_connected=False,
    )


RECONNECT = re.compile(r"the dll transport reconnects in (\d+) ms \(reconnect (\d+)\)")


async def test_the_dll_transport_takes_the_connect_timeout_and_backoff_inputs(
    ea_dll_build: EaBuild, tmp_path: Path
) -> None:
    """Against a server that accepts TCP and never answers the upgrade, each attempt ends after the EA's connect
    timeout (not the DLL's default of 10 s), and the reconnect delays the EA announces keep to its inputs."""
    settings = EaSettings(connect_timeout_ms=300, reconnect_min_ms=100, reconnect_max_ms=400)
    async with WsTestServer(silent=True) as silent:
        ea = await _start_against(ea_dll_build, silent, tmp_path / "silent", settings)

        def announced() -> list[str]:
            return [line for line in ea.process.journal if RECONNECT.search(line)]

        try:
            await wait_for(
                lambda: len(announced()) >= 6,
                lambda: "six reconnects announced; journal:\n" + "\n".join(ea.process.journal[-10:]),
                timeout_s=60,
            )
        finally:
            await ea.stop()
        lines = announced()
        assert len(silent.connections) >= len(lines)  # every attempt reached the server
    assert all("timed out after 300 ms" in line for line in lines), lines
    delays = {int(m[2]): int(m[1]) for m in map(RECONNECT.search, lines) if m}
    assert all(100 <= d <= 400 for d in delays.values()), delays
    for n, d in delays.items():  # decorrelated jitter: at most three times the delay before
        if n - 1 in delays:
            assert d <= 3 * delays[n - 1], delays


REFUSED = re.compile(r" in (\d+) ms(?: \(reconnect (\d+)\))? \(HTTP (\d+)(?:, Retry-After (\d+) ms)?\)$")


async def test_the_ea_waits_out_a_busy_gateways_retry_after(ea_build: EaBuild, tmp_path: Path) -> None:
    """503 with Retry-After 1: the EA's next attempt comes no earlier than a second later, and its journal names
    the status, the Retry-After and the delay (at most twice the Retry-After); a 429 without Retry-After then
    keeps the normal backoff (within the EA's reconnect inputs)."""
    settings = EaSettings(reconnect_min_ms=50, reconnect_max_ms=200)
    async with WsTestServer(refusals=[Refusal(503, {"Retry-After": "1"}), Refusal(429)]) as server:
        ea = await _start_against(ea_build, server, tmp_path / "busy", settings)

        def refusals() -> list[re.Match[str]]:
            return [m for m in map(REFUSED.search, ea.process.journal) if m]

        try:
            await wait_for(
                lambda: len(refusals()) >= 2 and len(server.connections) >= 3,
                lambda: "two refusals logged and a third attempt; journal:\n" + "\n".join(ea.process.journal[-10:]),
                timeout_s=30,
            )
        finally:
            await ea.stop()
        attempts = list(server.connections)
    busy, limited = refusals()[:2]
    assert (busy[3], busy[4]) == ("503", "1000"), busy.string
    assert 1000 <= int(busy[1]) <= 2000, busy.string
    assert (limited[3], limited[4]) == ("429", None), limited.string
    assert 50 <= int(limited[1]) <= 200, limited.string
    assert [c.refused for c in attempts[:3]] == [503, 429, 0]
    assert attempts[1].accepted_at - attempts[0].answered_at >= 1.0
