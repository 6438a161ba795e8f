"""The containers path of the fixtures: NATS and the cache from their official images (testcontainers), the
services on them, an order filled. Skipped, with the reason, where no Docker engine answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hedgebridge.common import auth, bus
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import OpenOrder
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals, run_terminals

from .. import containers
from ..conftest import executor_config, gateway_config
from ..helpers import ea_token, order, wait_for

pytestmark = pytest.mark.integration


async def test_services_on_nats_and_valkey_containers(tmp_path: Path) -> None:
    reason = containers.unavailable()
    if reason is not None:
        pytest.skip(f"containers path not run: {reason}")
    nats_box = containers.NatsContainer(tmp_path / "nats")
    cache_box = containers.ValkeyContainer(tmp_path / "cache")
    nats_box.start()
    cache_box.start()
    secret = auth.new_secret()
    gateway = Gateway(gateway_config(nats_box.url, secret, id="gw-containers"))
    executor = Executor(executor_config(nats_box.url, f"{cache_box.url}/0"))
    try:
        await gateway.start()
        await executor.start()
        stop = asyncio.Event()
        terminals = make_terminals(
            f"ws://127.0.0.1:{gateway.port}/ea", ["K1"], lambda a: ea_token(secret, a), SimConfig(), seed=2
        )
        running = asyncio.create_task(run_terminals(terminals, stop))
        nc = await bus.connect(nats_box.url, "containers-test")
        try:
            await wait_for(lambda: terminals[0].connected.is_set(), "the terminal to connect")
            result = await order(nc, OpenOrder(account_id="K1", symbol="EURUSD", side="BUY", volume=0.1))
            assert result.status == "FILLED"
        finally:
            stop.set()
            await running
            await nc.close()
    finally:
        await executor.stop()
        await gateway.stop()
        cache_box.stop()
        nats_box.stop()
