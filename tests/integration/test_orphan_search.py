"""Orders whose executor died before it wrote their lease are found and settled by another replica without
the caller asking again (``executor/orphans.py``)."""

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


async def test_a_running_replica_settles_an_order_whose_executor_died_before_its_lease(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, ea_url: str, secret: str, nc: NatsClient
) -> None:
    redis_url = f"{cache_server.url}/0"
    first = Executor(executor_config(nats_server.url, redis_url, id="ex-first", lease_after_ms=60_000))
    await first.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    second: Executor | None = None
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="nobody", timeout_ms=30_000), timeout_s=20))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        second = Executor(executor_config(nats_server.url, redis_url, id="ex-second"))
        await second.start()  # its first search is too early for the order: a later one finds it
        await first.kill()  # dies before the order had a lease: no replica knows it is running
        ea.fill(ea.opens()[0], "9101")  # the terminal executed it; the report is lost with the executor
        result = await pending  # the first caller is answered by the replica that found the order
        assert (result.status, result.mt_ticket, result.reconciled) == ("FILLED", "9101", True)
        assert len(ea.opens()) == 1
        assert second.orphans is not None
        assert second.orphans.found == 1
    finally:
        await ea.close()
        if second is not None:
            await second.stop()


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
