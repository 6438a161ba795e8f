"""The WebSocket proxy between the simulated terminal and a real gateway and executor: it forwards both ways
unchanged, records the commands, cuts connections and loses a report right after the terminal executed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common.servers import NatsServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    CloseOrder,
    OpenOrder,
    OrderResult,
    Welcome,
    errors,
    subjects,
    unpack,
)
from hedgebridge.sim import SimConfig
from hedgebridge.sim.ea.proxy import WsProxy
from hedgebridge.sim.terminal import SimTerminal, make_terminals, run_terminals

from ..conftest import gateway_config
from ..helpers import RawEa, ea_token, order, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxy(gateway: Gateway) -> AsyncIterator[WsProxy]:
    async with WsProxy("127.0.0.1", gateway.port) as p:
        yield p


@pytest.fixture
async def sim(proxy: WsProxy, secret: str, executor: Executor) -> AsyncIterator[SimTerminal]:
    (terminal,) = make_terminals(
        proxy.url("/ea"), ["A1"], lambda a: ea_token(secret, a), SimConfig(fill_latency_ms=0), seed=1
    )
    terminal.backoff_initial_s = 0.02
    stop = asyncio.Event()
    task = asyncio.create_task(run_terminals([terminal], stop))
    await wait_for(terminal.connected.is_set, "the terminal to connect through the proxy")
    yield terminal
    stop.set()
    await task


@pytest.fixture
async def results(nc: NatsClient) -> AsyncIterator[list[OrderResult]]:
    seen: list[OrderResult] = []

    async def collect(msg: Msg) -> None:
        seen.append(unpack(msg.data, OrderResult))

    sub = await nc.subscribe(subjects.ALL_RESULTS, cb=collect)
    await nc.flush()
    yield seen
    await sub.unsubscribe()


def buy(**fields: object) -> OpenOrder:
    return OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1.0, **fields)  # type: ignore[arg-type]


async def test_orders_pass_through_and_the_commands_are_recorded(
    proxy: WsProxy, sim: SimTerminal, nc: NatsClient
) -> None:
    opened = await order(nc, buy(action_id="through-1"))
    assert opened.status == "FILLED"
    closed = await order(nc, CloseOrder(account_id="A1", mt_ticket=opened.mt_ticket, action_id="through-2"))
    assert closed.status == "FILLED"
    assert proxy.received == ["through-1", "through-2"] == sim.account.received
    assert (proxy.connections, proxy.active, proxy.cuts, proxy.dropped) == (1, 1, 0, [])
    assert sim.connections == 1


async def test_a_cut_connection_is_reconnected_through_the_proxy(proxy: WsProxy, sim: SimTerminal) -> None:
    assert proxy.cut() == 1
    await wait_for(lambda: sim.connections == 2 and sim.connected.is_set(), "the terminal to reconnect")
    assert (proxy.connections, proxy.active, proxy.cuts) == (2, 1, 1)


async def test_a_lost_report_cuts_the_connection_and_is_reconciled(
    proxy: WsProxy, sim: SimTerminal, nc: NatsClient, results: list[OrderResult]
) -> None:
    proxy.drop_next_report()
    first = await order(nc, buy(action_id="lost-1", timeout_ms=400))
    assert proxy.dropped == ["OPENED"]
    assert sim.outbox == []  # the terminal sent it: the network lost it
    # reconciled from the terminal's new session at once, or after the timeout when it is back later
    reconciled = first
    if first.status == "OUTCOME_UNKNOWN":
        assert first.code == errors.OUTCOME_UNKNOWN
        await wait_for(lambda: any(r.reconciled and r.action_id == "lost-1" for r in results), "the reconciled result")
        reconciled = next(r for r in results if r.reconciled)
    (ticket,) = sim.account.positions
    assert (reconciled.status, reconciled.mt_ticket, reconciled.reconciled) == ("FILLED", str(ticket), True)
    assert proxy.received == ["lost-1"]
    assert proxy.cuts == 1
    assert proxy.connections == 2
    again = await order(nc, buy(action_id="lost-2"))  # the next report passes: the fault was for one
    assert again.status == "FILLED"
    assert proxy.dropped == ["OPENED"]


async def test_drop_next_report_takes_only_the_types_asked_for(
    proxy: WsProxy, sim: SimTerminal, nc: NatsClient
) -> None:
    proxy.drop_next_report({"CLOSED"})
    opened = await order(nc, buy(action_id="keep-open"))
    assert opened.status == "FILLED"
    assert proxy.dropped == []
    closed = await order(nc, CloseOrder(account_id="A1", mt_ticket=opened.mt_ticket, timeout_ms=400))
    assert closed.status == "OUTCOME_UNKNOWN" or (closed.status, closed.reconciled) == ("FILLED", True)
    assert proxy.dropped == ["CLOSED"]
    with pytest.raises(ValueError, match="at least one"):
        proxy.drop_next_report(set())


async def test_compressed_connections_are_read_too(nats_server: NatsServer, secret: str) -> None:
    gateway = Gateway(gateway_config(nats_server.url, secret, compression=True))
    await gateway.start()
    try:
        async with WsProxy("127.0.0.1", gateway.port) as proxy:
            ea = await RawEa.connect(proxy.url("/ea"), ea_token(secret, "A1"))  # offers permessage-deflate
            try:
                assert isinstance(await ea.recv(), Welcome)
                assert ea.ws.response is not None
                assert "permessage-deflate" in ea.ws.response.headers.get("Sec-WebSocket-Extensions", "")
                proxy.drop_next_report({"CLOSED"})  # the OPENED before it must be read and let through
                await ea.send_raw('{"type":"OPENED","actionId":"z-1","padding":"' + "a" * 400 + '"}')
                await ea.send_raw('{"type":"CLOSED","actionId":"z-2","padding":"' + "a" * 400 + '"}')
                await wait_for(lambda: proxy.dropped == ["CLOSED"], "the compressed report to be read and dropped")
                assert proxy.cuts == 1
            finally:
                await ea.ws.close()
    finally:
        await gateway.stop()


async def test_a_refused_handshake_is_forwarded_as_is(proxy: WsProxy) -> None:
    with pytest.raises(Exception, match="401"):
        await RawEa.connect(proxy.url("/ea"), "not-a-token")
    await wait_for(lambda: proxy.active == 0, "the refused connection to end")
