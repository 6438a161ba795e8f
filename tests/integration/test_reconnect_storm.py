"""A reconnect storm: simulated terminals from one address, the gateway they use restarted, every one of them
connected again, none refused, with the default handshake limits (the time this takes is measured by
``hedgebridge bench``, its reconnect storm row, not asserted here)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hedgebridge.common import profiles
from hedgebridge.common.servers import NatsServer
from hedgebridge.gateway.server import Gateway
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals, run_terminals

from ..conftest import gateway_config
from ..helpers import ea_token, wait_for

pytestmark = pytest.mark.integration

TERMINALS = 300  # over the address's burst of 100, which valid terminals no longer spend


@pytest.mark.parametrize("profile", ["latency", "throughput"])
async def test_terminals_from_one_address_all_come_back_after_a_gateway_restart(
    nats_server: NatsServer, secret: str, profile: str
) -> None:
    settings: dict[str, object] = {"heartbeat_interval_ms": 1000, "heartbeat_timeout_ms": 60_000}
    first = Gateway(gateway_config(nats_server.url, secret, id="gw-storm-1", **settings))
    await first.start()
    port = first.port
    accounts = [f"S{i:04d}" for i in range(TERMINALS)]
    terminals = make_terminals(
        f"ws://127.0.0.1:{port}/ea",
        accounts,
        lambda account: ea_token(secret, account),
        SimConfig(symbols=("EURUSD",), tick_interval_ms=0, account_update_interval_ms=60_000),
        seed=5,
        profile=profiles.PROFILES[profile],
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(run_terminals(terminals, stop))
    running: Gateway | None = first
    try:
        await wait_for(
            lambda: len(first.sessions) == TERMINALS and all(t.connected.is_set() for t in terminals),
            "every terminal to connect",
            timeout_s=120,
        )
        running = None
        await first.stop()  # 1001 to every terminal: they reconnect, and find nothing listening for a while
        await wait_for(lambda: not any(t.connected.is_set() for t in terminals), "the terminals to notice")
        second = Gateway(gateway_config(nats_server.url, secret, id="gw-storm-2", port=port, **settings))
        await second.start()
        gateway = running = second
        await wait_for(
            lambda: len(gateway.sessions) == TERMINALS and all(t.connected.is_set() for t in terminals),
            lambda: f"every terminal back ({len(gateway.sessions)} of {TERMINALS} connected)",
            timeout_s=180,
        )
        assert Counter(t.connections for t in terminals) == {2: TERMINALS}
        refused = [(t.account_id, t.last_refusal) for t in terminals if t.refusals]
        assert not refused, refused[:5]
    finally:
        stop.set()
        await runner
        if running is not None:
            await running.stop()
