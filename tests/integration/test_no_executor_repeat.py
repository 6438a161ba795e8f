"""A repeated request that finds no executor (every replica down) is answered from the order's record when
there is one (a batch's, from each item's): the recorded result, or OUTCOME_UNKNOWN while it has none — never
EXPIRED, which tells the caller that nothing was executed although the order may have been."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common import executor_client
from hedgebridge.common.executor_client import Silence
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import BatchItem, CloseBatch, OpenedEvent, errors, utcnow

from ..conftest import executor_config
from ..helpers import order, wait_for
from .test_orders import ScriptedEa, buy

pytestmark = pytest.mark.integration


@pytest.fixture
async def lone(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, ea_url: str, secret: str
) -> AsyncIterator[tuple[Executor, ScriptedEa]]:
    """The only executor (the test kills it) and the terminal of A1."""
    redis_url = f"{cache_server.url}/0"
    executor = Executor(executor_config(nats_server.url, redis_url, id="ex-gone", order_timeout_ms=30_000))
    await executor.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    yield executor, ea
    await ea.close()
    await executor.kill()


async def test_a_repeat_with_no_executor_is_answered_from_the_record(
    lone: tuple[Executor, ScriptedEa], nc: NatsClient
) -> None:
    executor, ea = lone
    done = buy(action_id="recorded-1")
    filled = asyncio.create_task(order(nc, done))
    await wait_for(lambda: len(ea.opens()) == 1, "the first OPEN")
    command = ea.opens()[0]
    report = OpenedEvent(
        timestamp=utcnow(),
        account_id="A1",
        position_id=command.position_id,
        action_id=command.action_id,
        mt_ticket="31",
        price=1.1,
        volume=command.volume,
        status="SUCCESS",
    )
    await ea.ea.send(report)
    assert (await filled).status == "FILLED"
    running = buy(action_id="running-1")
    pending = asyncio.create_task(executor_client.ask(nc, running, 5.0))
    await wait_for(lambda: len(ea.opens()) == 2, "the second OPEN")
    await executor.kill()  # every executor gone: the second order's outcome is not known
    assert (await pending).result.status == "OUTCOME_UNKNOWN"

    again = await executor_client.ask(nc, running, 2.0)
    assert again.silence is Silence.NO_EXECUTOR
    assert (again.result.status, again.result.code) == ("OUTCOME_UNKNOWN", errors.EXECUTOR_UNAVAILABLE)
    repeated = await executor_client.ask(nc, done, 2.0)
    assert (repeated.result.status, repeated.result.mt_ticket, repeated.result.duplicate) == ("FILLED", "31", True)
    never = await executor_client.ask(nc, buy(action_id="never-1"), 2.0)
    assert (never.result.status, never.result.code) == ("EXPIRED", errors.EXECUTOR_UNAVAILABLE)


async def test_a_repeated_batch_with_no_executor_is_answered_item_by_item_from_the_records(
    lone: tuple[Executor, ScriptedEa], nc: NatsClient
) -> None:
    executor, ea = lone
    opened = asyncio.create_task(order(nc, buy(action_id="to-close")))
    await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
    await ea.report_fill(ea.opens()[0], "41")
    assert (await opened).status == "FILLED"
    batch = CloseBatch(
        action_id="batch-1",
        items=[BatchItem(account_id="A1", mt_ticket="41"), BatchItem(account_id="A9", mt_ticket="9")],
    )
    first = asyncio.create_task(executor_client.ask(nc, batch, 5.0))
    await wait_for(lambda: len(ea.closes()) == 1, "the CLOSE of the first item")
    await executor.kill()  # every executor gone while the batch ran
    await first
    again = await executor_client.ask(nc, batch, 2.0)
    assert again.silence is Silence.NO_EXECUTOR
    statuses = [(r.action_id, r.status) for r in again.result.results]
    assert statuses[0] == ("batch-1-0", "OUTCOME_UNKNOWN")  # recorded: it may have been executed
    assert statuses[1][0] == "batch-1-1"
