"""The search for orders nobody owns (``executor/orphans.py``) leaves a running order to its live owner; that it
settles an order whose executor died before its lease is in ``test_orders``."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway

from ..conftest import executor_config
from ..helpers import order, wait_for
from .test_orders import ScriptedEa, buy

pytestmark = pytest.mark.integration


async def test_an_order_its_live_owner_runs_is_left_to_it(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, ea_url: str, secret: str, nc: NatsClient
) -> None:
    redis_url = f"{cache_server.url}/0"
    owner = Executor(executor_config(nats_server.url, redis_url, id="ex-owner", order_timeout_ms=30_000))
    await owner.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    other: Executor | None = None
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="owned", timeout_ms=30_000), timeout_s=20))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        other = Executor(executor_config(nats_server.url, redis_url, id="ex-other"))
        await other.start()
        search = other.orphans
        assert search is not None
        await wait_for(lambda: search.suspects >= 1, "the other replica's search to look at the running order")
        await ea.report_fill(ea.opens()[0], "9103")
        result = await pending
        assert (result.status, result.mt_ticket, result.reconciled) == ("FILLED", "9103", False)
        assert search.found == 0
    finally:
        await ea.close()
        if other is not None:
            await other.stop()
        await owner.stop()
