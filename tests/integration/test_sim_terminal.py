"""The simulated terminal against the real gateway: handshake, snapshots, refusals and reconnects."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, free_port
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import TerminalStatus, subjects, unpack, unpack_event
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals, run_terminals

from ..conftest import gateway_config
from ..helpers import collect, ea_token, wait_for

pytestmark = pytest.mark.integration


async def test_sim_sends_snapshots_ticks_and_reconnects_after_a_gateway_restart(
    nats_server: NatsServer, secret: str, nc: NatsClient
) -> None:
    port = free_port()
    events = await collect(nc, subjects.ALL_EVENTS, lambda msg: type(unpack_event(msg.data)).__name__)
    statuses = await collect(nc, subjects.ALL_STATUS, lambda msg: unpack(msg.data, TerminalStatus))

    gateway = Gateway(gateway_config(nats_server.url, secret, port=port))
    await gateway.start()
    terminals = make_terminals(
        f"ws://127.0.0.1:{port}/ea",
        ["S1", "S2"],
        lambda account: ea_token(secret, account),
        SimConfig(tick_interval_ms=50, symbols=("EURUSD",)),
        seed=7,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(run_terminals(terminals, stop))
    try:
        await wait_for(lambda: all(t.connected.is_set() for t in terminals), "both terminals to connect")
        await wait_for(
            lambda: {"AccountUpdate", "PositionUpdate", "PriceTick"} <= set(events), "snapshots and ticks on NATS"
        )
        await gateway.stop()
        await wait_for(lambda: not any(t.connected.is_set() for t in terminals), "the terminals to notice")
        gateway = Gateway(gateway_config(nats_server.url, secret, port=port))
        await gateway.start()
        await wait_for(lambda: all(t.connections == 2 for t in terminals), "both terminals to reconnect")
        await wait_for(lambda: set(gateway.sessions) == {"S1", "S2"}, "the new gateway to hold both")
        reasons = [s.reason for s in statuses if s.status == "DISCONNECTED"]
        assert reasons == ["gateway shutting down", "gateway shutting down"]
    finally:
        stop.set()
        await runner
        await gateway.stop()


async def test_sim_with_a_refused_token_keeps_retrying_and_reports_why(gateway: Gateway, ea_url: str) -> None:
    wrong = auth.new_secret()
    terminals = make_terminals(ea_url, ["S1"], lambda account: ea_token(wrong, account), SimConfig(), seed=1)
    stop = asyncio.Event()
    runner = asyncio.create_task(run_terminals(terminals, stop))
    try:
        await wait_for(lambda: terminals[0].last_refusal is not None, "the refusal")
        assert terminals[0].last_refusal is not None
        assert terminals[0].last_refusal.startswith("HTTP 401")
        assert "signature" in terminals[0].last_refusal
        assert not terminals[0].connected.is_set()
        assert gateway.sessions == {}
    finally:
        stop.set()
        await runner


async def test_sim_drops_at_random_and_comes_back(gateway: Gateway, ea_url: str, secret: str, nc: NatsClient) -> None:
    drops: list[TerminalStatus] = []

    async def on_status(msg: Msg) -> None:
        status = unpack(msg.data, TerminalStatus)
        if status.status == "DISCONNECTED":
            drops.append(status)

    await nc.subscribe(subjects.status("FLAKY"), cb=on_status)
    await nc.flush()
    terminals = make_terminals(
        ea_url,
        ["FLAKY"],
        lambda account: ea_token(secret, account),
        SimConfig(disconnect_rate=20.0, tick_interval_ms=0),
        seed=5,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(run_terminals(terminals, stop))
    try:
        await wait_for(lambda: terminals[0].connections >= 3, "three connections after random drops", timeout_s=20)
        await wait_for(lambda: len(drops) >= 2, "the drops published by the gateway")
        assert terminals[0].drops >= 2
        assert {d.reason for d in drops} == {"connection lost"}
    finally:
        stop.set()
        await runner
