"""The executor with the real gateway, nats-server and valkey-server: definite answers for every path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.cache import RedisCache
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.config import ExecutorConfig
from hedgebridge.executor.service import Executor
from hedgebridge.protocol import (
    ClosedEvent,
    CloseOrder,
    OpenCommand,
    OpenedEvent,
    OpenOrder,
    OrderResult,
    Welcome,
    decode_frame,
    errors,
    pack,
    subjects,
    unpack,
    utcnow,
)
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import SimTerminal, make_terminals, run_terminals

from ..helpers import RawEa, ea_token, order, wait_for

pytestmark = pytest.mark.integration
StartSims = Callable[..., Awaitable[list[SimTerminal]]]


@pytest.fixture
async def sims(ea_url: str, secret: str, executor: Executor) -> AsyncIterator[StartSims]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(accounts: list[str], **config: object) -> list[SimTerminal]:
        terminals = make_terminals(
            ea_url,
            accounts,
            lambda a: ea_token(secret, a),
            SimConfig(**config),  # type: ignore[arg-type]
            seed=3,
        )
        stop = asyncio.Event()
        stops.append((stop, asyncio.create_task(run_terminals(terminals, stop))))
        await wait_for(lambda: all(t.connected.is_set() for t in terminals), "simulated terminals to connect")
        return terminals

    yield start
    for stop, task in stops:
        stop.set()
        await task


async def test_open_and_close_with_the_cache(sims: StartSims, nc: NatsClient, cache_server: ValkeyServer) -> None:
    await sims(["A1"], fill_latency_ms=5, tick_interval_ms=20)
    cache = RedisCache(f"{cache_server.url}/0")
    try:
        opened = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.5, action_id="o-1"))
        assert (opened.status, opened.action_id, opened.code) == ("SUCCESS", "o-1", None)
        assert isinstance(opened.event, OpenedEvent)
        ticket = opened.event.mt_ticket

        async def position_cached() -> bool:
            return [p.mt_ticket for p in await cache.positions("A1")] == [ticket]

        await wait_for(position_cached, "the position in the cache")
        closed = await order(nc, CloseOrder(account_id="A1", position_id=opened.position_id))
        assert closed.status == "SUCCESS"
        assert isinstance(closed.event, ClosedEvent)
        assert closed.event.mt_ticket == ticket
        assert closed.event.profit is not None

        async def position_gone() -> bool:
            return await cache.positions("A1") == []

        await wait_for(position_gone, "the position to leave the cache")

        async def balance_and_price() -> bool:
            balance = await cache.balance("A1")
            return balance is not None and await cache.price("EURUSD") is not None

        await wait_for(balance_and_price, "balance and price in the cache")
        balance = await cache.balance("A1")
        assert balance is not None
        assert float(balance["balance"]) == pytest.approx(10_000 + closed.event.profit)
    finally:
        await cache.close()


async def test_rejected_and_unknown_position(sims: StartSims, nc: NatsClient) -> None:
    await sims(["A1"], fill_latency_ms=0, reject_rate=1.0)
    rejected = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="SELL", volume=1))
    assert (rejected.status, rejected.code) == ("FAILED", errors.ORDER_FAILED)
    assert rejected.event is not None
    assert rejected.event.error_code == 10006
    unknown = await order(nc, CloseOrder(account_id="A1", mt_ticket="123"))
    assert unknown.status == "FAILED"
    assert unknown.event is not None
    assert unknown.event.error_code == 10036


async def test_offline_account_is_not_sent(executor: Executor, nc: NatsClient, gateway: object) -> None:
    result = await order(nc, OpenOrder(account_id="GHOST", symbol="EURUSD", side="BUY", volume=1))
    assert (result.status, result.code) == ("NOT_SENT", errors.ACCOUNT_OFFLINE)


async def test_invalid_requests_are_answered_and_the_executor_keeps_serving(sims: StartSims, nc: NatsClient) -> None:
    await sims(["A1"], fill_latency_ms=0)
    for body in (b"\x00garbage", pack({"type": "OPEN_ORDER", "accountId": "A1"}), b""):
        reply = await nc.request(subjects.ORDER_REQUEST, body, timeout=5)
        result = unpack(reply.data, OrderResult)
        assert (result.status, result.code) == ("INVALID", errors.INVALID_REQUEST)
    ok = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1))
    assert ok.status == "SUCCESS"


class SilentEa:
    """A terminal that takes commands and never answers them (but keeps heartbeating)."""

    def __init__(self, ea: RawEa) -> None:
        self.ea = ea
        self.received: list[OpenCommand] = []
        self._tasks = [asyncio.create_task(self._read()), ea.keep_alive(0.1)]

    @classmethod
    async def connect(cls, url: str, secret: str, account: str) -> SilentEa:
        ea = await RawEa.connect(url, ea_token(secret, account))
        await ea.recv_type(Welcome)
        return cls(ea)

    async def _read(self) -> None:
        async for data in self.ea.ws:
            frame = decode_frame(data)
            if isinstance(frame, OpenCommand):
                self.received.append(frame)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.ea.close()


async def test_no_answer_is_outcome_unknown_and_never_resent(
    executor: Executor, ea_url: str, secret: str, nc: NatsClient
) -> None:
    ea = await SilentEa.connect(ea_url, secret, "A1")
    try:
        result = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, timeout_ms=500))
        assert (result.status, result.code) == ("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN)
        assert result.event is None
        assert "do not resend" in result.message
        # a later order marks the end of the stream: the first command arrived once, and only once
        marker = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, timeout_ms=100))
        await wait_for(lambda: len(ea.received) == 2, "the marker order's OPEN")
        assert [c.action_id for c in ea.received] == [result.action_id, marker.action_id]
    finally:
        await ea.close()


async def test_duplicate_action_id_in_flight(executor: Executor, ea_url: str, secret: str, nc: NatsClient) -> None:
    ea = await SilentEa.connect(ea_url, secret, "A1")
    try:
        request = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, action_id="dup", timeout_ms=1000)
        first = asyncio.create_task(order(nc, request))
        await wait_for(lambda: len(ea.received) == 1, "the first OPEN")
        second = await order(nc, request)
        assert (second.status, second.code) == ("INVALID", errors.INVALID_REQUEST)
        assert "already in flight" in second.message
        assert (await first).status == "OUTCOME_UNKNOWN"
        assert len(ea.received) == 1
    finally:
        await ea.close()


async def test_terminal_gone_after_the_command_is_outcome_unknown(
    executor: Executor, ea_url: str, secret: str, nc: NatsClient
) -> None:
    ea = await RawEa.connect(ea_url, ea_token(secret, "A1"))
    await ea.recv_type(Welcome)
    pending = asyncio.create_task(
        order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, timeout_ms=800))
    )
    assert isinstance(await ea.recv_type(OpenCommand), OpenCommand)
    await ea.close()
    result = await pending
    assert (result.status, result.code) == ("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN)


async def test_orders_go_on_while_the_cache_is_down(
    sims: StartSims, nc: NatsClient, cache_server: ValkeyServer
) -> None:
    await sims(["A1"], fill_latency_ms=0, tick_interval_ms=20)
    cache_server.kill()
    result = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1))
    assert result.status == "SUCCESS"
    cache_server.start()
    cache = RedisCache(f"{cache_server.url}/0")
    try:

        async def written_again() -> bool:
            return await cache.price("EURUSD") is not None

        await wait_for(written_again, "the cache to be written again after its restart")
    finally:
        await cache.close()


async def test_an_order_waits_out_a_reconnecting_terminal(
    nats_server: NatsServer, cache_server: ValkeyServer, ea_url: str, secret: str, nc: NatsClient
) -> None:
    patient = Executor(
        ExecutorConfig(
            nats_url=nats_server.url, redis_url=f"{cache_server.url}/0", offline_grace_ms=5000, id="ex-patient"
        )
    )
    await patient.start()
    try:
        pending = asyncio.create_task(order(nc, OpenOrder(account_id="LATE", symbol="EURUSD", side="BUY", volume=1)))
        ea = await RawEa.connect(ea_url, ea_token(secret, "LATE"))  # the terminal arrives after the request
        await ea.recv_type(Welcome)
        beating = ea.keep_alive()
        command = await ea.recv_type(OpenCommand)
        assert isinstance(command, OpenCommand)
        await ea.send(
            OpenedEvent(
                timestamp=utcnow(),
                account_id="LATE",
                position_id=command.position_id,
                action_id=command.action_id,
                mt_ticket="42",
                price=1.1,
                status="SUCCESS",
            )
        )
        result = await pending
        assert (result.status, result.position_id) == ("SUCCESS", command.position_id)
        beating.cancel()
        await ea.close()
    finally:
        await patient.stop()
