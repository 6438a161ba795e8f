"""A replica that lost an order's lease (it was paused longer than the lease; another replica took the order
over and reconciled it as not executed) never sends the order's command afterwards: two executors in-process
with the real gateway, nats-server and valkey-server, and a terminal that connects only later."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.driver import RunningOrder
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import InflightMark, OrderResult, errors, pack, subjects
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals, run_terminals

from ..conftest import executor_config
from ..helpers import ea_token, order, wait_for
from .test_orders import ScriptedEa, buy

pytestmark = pytest.mark.integration

ACCOUNT = "LATE"


@pytest.fixture
async def replicas(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway
) -> AsyncIterator[tuple[Executor, Executor]]:
    """Executor A, which alone takes the requests, and B, started once A runs the order."""
    redis_url = f"{cache_server.url}/0"
    first = Executor(executor_config(nats_server.url, redis_url, id="ex-a", order_timeout_ms=30_000))
    second = Executor(executor_config(nats_server.url, redis_url, id="ex-b", order_timeout_ms=30_000))
    await first.start()
    try:
        yield first, second
    finally:
        await first.kill()
        await second.kill()


async def running_on_a(
    replicas: tuple[Executor, Executor], nc: NatsClient, action_id: str
) -> tuple[asyncio.Task[OrderResult], RunningOrder]:
    """An order to the absent terminal, running on A under a lease (it asks again in delivery pauses), then B
    started: the caller's answer to come, and A's running order."""
    first, second = replicas
    request = buy(account=ACCOUNT, action_id=action_id, ttl_ms=60_000, timeout_ms=30_000)
    pending = asyncio.create_task(order(nc, request, timeout_s=20))

    def leased() -> bool:
        running = first.driver.running.get(action_id)
        return running is not None and running.lease_revision is not None

    await wait_for(leased, f"A to run {action_id} under a lease")
    await second.start()  # only now: the request went to A
    return pending, first.driver.running[action_id]


async def test_a_replica_that_lost_the_lease_never_sends_after_the_takeover(
    replicas: tuple[Executor, Executor], nc: NatsClient, ea_url: str, secret: str
) -> None:
    first, second = replicas
    pending, running = await running_on_a(replicas, nc, "lost-1")
    # A "pauses" longer than its lease: its upkeep stops and its mark lapses (what B finds after a long GC)
    upkeep = first._background[0]
    upkeep.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await upkeep
    inflight = await nc.jetstream().key_value(subjects.INFLIGHT_BUCKET)
    lapsed = InflightMark(owner=first.id, lease_until=time.time() - 1, account_id=ACCOUNT)
    await inflight.put("lost-1", pack(lapsed))
    await wait_for(lambda: "lost-1" in second.driver.running, "B to take the order over")
    ea = await ScriptedEa.connect(ea_url, secret, ACCOUNT)  # the terminal comes back: B asks it for a snapshot
    try:
        result = await pending  # the first caller is answered by B
        assert (result.status, result.code, result.reconciled) == ("REJECTED", errors.RECONCILED_NOT_EXECUTED, True)
        stored = await second.records.get("lost-1")
        assert stored is not None
        assert (stored.record.owner, stored.record.state) == ("ex-b", "RECONCILED")
        assert ea.commands  # the terminal was reached (B's SYNC)
        await wait_for(lambda: running.run.done or bool(ea.opens()), "A's run to end (or to send)")
        assert ea.opens() == []  # it never got the OPEN that B recorded as not executed
        assert running.run.lease_lost  # A's run ended on its lost lease
        assert "lost-1" not in first.driver.running
    finally:
        await ea.close()


async def test_without_a_takeover_the_order_is_sent_once_the_terminal_connects(
    replicas: tuple[Executor, Executor], nc: NatsClient, ea_url: str, secret: str
) -> None:
    pending, running = await running_on_a(replicas, nc, "kept-1")
    terminals = make_terminals(ea_url, [ACCOUNT], lambda a: ea_token(secret, a), SimConfig(fill_latency_ms=0))
    stop = asyncio.Event()
    connected = asyncio.create_task(run_terminals(terminals, stop))
    try:
        result = await pending
        assert (result.status, result.reconciled) == ("FILLED", False)
        assert terminals[0].account.received == ["kept-1"]
        assert not running.run.lease_lost
        assert "kept-1" not in replicas[1].driver.running  # B never took it over
    finally:
        stop.set()
        await connected


async def test_an_order_queued_behind_another_for_longer_than_the_lease_is_not_taken_over(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, ea_url: str, secret: str
) -> None:
    redis_url = f"{cache_server.url}/0"
    settings = {"lease_ms": 600, "lease_after_ms": 100, "order_timeout_ms": 30_000}
    first = Executor(executor_config(nats_server.url, redis_url, id="ex-a", **settings))
    second = Executor(executor_config(nats_server.url, redis_url, id="ex-b", **settings))
    await first.start()
    await second.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    try:
        ahead = asyncio.create_task(first.submit(pack(buy(action_id="ahead", timeout_ms=2500)), time.perf_counter()))
        await wait_for(lambda: len(ea.opens()) == 1, "the first OPEN")
        queued = asyncio.create_task(first.submit(pack(buy(action_id="queued", timeout_ms=6000)), time.perf_counter()))
        await wait_for(lambda: "queued" in first._running, "the second order to wait in the account's queue")
        # queued for four leases behind an order that is never answered; asked again on B meanwhile, B must find
        # it alive (its lease held) and not take it over
        again = pack(buy(action_id="queued", timeout_ms=6000))
        repeat = asyncio.create_task(second.submit(again, time.perf_counter()))
        assert (await ahead).status == "OUTCOME_UNKNOWN"
        await wait_for(lambda: len(ea.opens()) == 2, "the queued OPEN")
        assert "queued" not in second._running
        command = ea.opens()[1]
        await ea.report_fill(command, "555")
        result = await queued
        assert (result.status, result.mt_ticket) == ("FILLED", "555")  # not handed over to B
        repeated = await repeat
        assert (repeated.status, repeated.duplicate, repeated.mt_ticket) == ("FILLED", True, "555")
        assert [c.action_id for c in ea.opens()] == ["ahead", "queued"]
    finally:
        await ea.close()
        await first.kill()
        await second.kill()
