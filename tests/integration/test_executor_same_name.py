"""An executor that comes back under the name it had (a fixed HEDGEBRIDGE_EXECUTOR_ID, a StatefulSet pod) takes
over the orders its earlier run held when their lease lapses, as any other replica would."""

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


async def test_an_order_whose_lease_lapsed_under_this_replicas_own_name_is_taken_over(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, ea_url: str, secret: str, nc: NatsClient
) -> None:
    redis_url = f"{cache_server.url}/0"
    first = Executor(executor_config(nats_server.url, redis_url, id="ex-same", order_timeout_ms=30_000))
    await first.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    again: Executor | None = None
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="own-lease"), timeout_s=20))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        running = first.driver.running["own-lease"]
        await wait_for(lambda: running.lease_revision is not None, "the order's lease")
        await first.kill()  # dies holding the order under its lease
        ea.fill(ea.opens()[0], "9002")  # the terminal executed it; the report is lost with the executor
        again = Executor(executor_config(nats_server.url, redis_url, id="ex-same"))
        await again.start()
        result = await pending
        assert (result.status, result.mt_ticket, result.reconciled) == ("FILLED", "9002", True)
        assert len(ea.opens()) == 1
    finally:
        await ea.close()
        if again is not None:
            await again.stop()
