"""The executor with the real gateway, nats-server and valkey-server: definite answers for every path,
exactly-once effect per actionId, retcode classes, partial fills, reconciliation, takeover, cache rebuild."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common.cache import RedisCache
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    BatchItem,
    BatchResult,
    BookEntry,
    CloseBatch,
    CloseOrder,
    Command,
    OpenCommand,
    OpenedEvent,
    OpenOrder,
    OrderResult,
    Position,
    PositionUpdate,
    SyncCommand,
    Welcome,
    decode_frame,
    errors,
    pack,
    retcodes,
    subjects,
    unpack,
    utcnow,
)
from hedgebridge.sim import SimConfig
from hedgebridge.sim.account import SimFault
from hedgebridge.sim.terminal import make_terminals, run_terminals

from ..conftest import StartSims, executor_config, gateway_config
from ..helpers import RawEa, ea_token, order, wait_for

pytestmark = pytest.mark.integration


def buy(account: str = "A1", volume: float = 1.0, **fields: object) -> OpenOrder:
    return OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=volume, **fields)  # type: ignore[arg-type]


class ScriptedEa:
    """A terminal written from the protocol: it records every command, answers SYNC with ``positions``,
    and answers OPEN only when told to."""

    def __init__(self, ea: RawEa, account: str) -> None:
        self.ea = ea
        self.account = account
        self.commands: list[Command] = []
        self.positions: list[Position] = []
        self._tasks = [asyncio.create_task(self._read()), ea.keep_alive(0.1)]

    @classmethod
    async def connect(cls, url: str, secret: str, account: str) -> ScriptedEa:
        ea = await RawEa.connect(url, ea_token(secret, account))
        await ea.recv_type(Welcome)
        return cls(ea, account)

    def opens(self) -> list[OpenCommand]:
        return [c for c in self.commands if isinstance(c, OpenCommand)]

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for data in self.ea.ws:
                frame = decode_frame(data)
                if isinstance(frame, OpenCommand | SyncCommand):
                    self.commands.append(frame)
                if isinstance(frame, SyncCommand):
                    await self.ea.send(
                        PositionUpdate(
                            timestamp=utcnow(), account_id=self.account, positions=self.positions, sync_id=frame.sync_id
                        )
                    )

    def fill(self, command: OpenCommand, ticket: str) -> Position:
        """Execute ``command`` on this terminal's books (without reporting it)."""
        position = Position(
            mt_ticket=ticket,
            position_id=command.position_id,
            action_id=command.action_id,
            symbol=command.symbol,
            side=command.side,
            volume=command.volume,
            open_price=1.1,
            current_price=1.1,
            profit=0.0,
        )
        self.positions.append(position)
        return position

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.ea.close()


@pytest.fixture
async def results(nc: NatsClient) -> AsyncIterator[list[OrderResult]]:
    """Every order result published on hb.exec.result.*, in order."""
    seen: list[OrderResult] = []

    async def collect(msg: Msg) -> None:
        seen.append(unpack(msg.data, OrderResult))

    sub = await nc.subscribe(subjects.ALL_RESULTS, cb=collect)
    await nc.flush()
    yield seen
    await sub.unsubscribe()


# --- fills, rejects and the cache ------------------------------------------------------------------------------


async def test_open_and_close_with_the_cache_and_the_book(
    sims: StartSims, nc: NatsClient, cache_server: ValkeyServer, executor: Executor
) -> None:
    await sims(["A1"], fill_latency_ms=5, tick_interval_ms=20)
    cache = RedisCache(f"{cache_server.url}/0")
    try:
        opened = await order(nc, buy(volume=0.5, action_id="o-1"))
        assert (opened.status, opened.action_id, opened.code, opened.kind) == ("FILLED", "o-1", None, "OPEN")
        assert (opened.volume, opened.requested_volume, opened.attempts) == (0.5, 0.5, 1)
        ticket = opened.mt_ticket
        assert ticket is not None
        assert opened.price is not None

        async def position_cached() -> bool:
            positions = await cache.positions("A1")
            return positions is not None and [p.mt_ticket for p in positions] == [ticket]

        await wait_for(position_cached, "the position in the cache")

        async def booked() -> bool:
            with contextlib.suppress(Exception):
                entry = await executor.state.book.get(f"A1.{ticket}")
                return entry.value is not None and unpack(entry.value, BookEntry).volume == 0.5
            return False

        await wait_for(booked, "the position in the book")
        closed = await order(nc, CloseOrder(account_id="A1", position_id=opened.position_id))
        assert (closed.status, closed.kind, closed.mt_ticket) == ("FILLED", "CLOSE", ticket)
        assert closed.profit is not None

        async def position_gone() -> bool:
            return await cache.positions("A1") == []

        await wait_for(position_gone, "the position to leave the cache")

        async def unbooked() -> bool:
            return f"A1.{ticket}" not in await _keys(executor)

        await wait_for(unbooked, "the position to leave the book")
        balance = await cache.balance("A1")
        assert balance is not None
        assert float(balance["balance"]) == pytest.approx(10_000 + closed.profit)
    finally:
        await cache.close()


async def _keys(executor: Executor) -> list[str]:
    try:
        return list(await executor.state.book.keys())
    except Exception:  # nats-py raises when the bucket is empty
        return []


async def test_final_retcodes_are_rejected_with_their_class(sims: StartSims, nc: NatsClient) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0)
    for code in (retcodes.REJECT, retcodes.NO_MONEY, retcodes.MARKET_CLOSED, retcodes.INVALID_VOLUME):
        terminal.account.faults.append(SimFault(retcode=code))
        result = await order(nc, buy())
        assert (result.status, result.code, result.retcode) == ("REJECTED", errors.ORDER_REJECTED, code)
        assert (result.retcode_class, result.attempts) == ("FINAL", 1)
    unknown = await order(nc, CloseOrder(account_id="A1", mt_ticket="123"))
    assert (unknown.status, unknown.code, unknown.retcode) == ("REJECTED", errors.ALREADY_CLOSED, 10036)
    assert unknown.retcode_class == "ALREADY_CLOSED"


async def test_retry_class_retcodes_are_sent_again_with_the_same_action_id(sims: StartSims, nc: NatsClient) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0)
    terminal.account.faults.extend([SimFault(retcode=retcodes.REQUOTE), SimFault(retcode=retcodes.PRICE_CHANGED)])
    result = await order(nc, buy(action_id="retry-1"))
    assert (result.status, result.attempts) == ("FILLED", 3)
    assert terminal.account.received == ["retry-1"] * 3
    assert len(terminal.account.positions) == 1
    # the attempts run out: a definite rejection, nothing more is sent
    terminal.account.faults.extend([SimFault(retcode=retcodes.TOO_MANY_REQUESTS)] * 3)
    exhausted = await order(nc, buy(action_id="retry-2"))
    assert (exhausted.status, exhausted.code, exhausted.attempts) == ("REJECTED", errors.RETRIES_EXHAUSTED, 3)
    assert terminal.account.received.count("retry-2") == 3


async def test_partial_fill_reports_the_filled_volume_and_never_sends_the_rest(sims: StartSims, nc: NatsClient) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0)
    terminal.account.faults.append(SimFault(fill_ratio=0.4))
    result = await order(nc, buy(volume=1.0, action_id="part-1"))
    assert (result.status, result.code, result.volume, result.requested_volume) == (
        "PARTIALLY_FILLED",
        errors.PARTIAL_FILL,
        0.4,
        1.0,
    )
    assert terminal.account.received == ["part-1"]
    # a partial close leaves the rest open
    half = await order(nc, CloseOrder(account_id="A1", mt_ticket=result.mt_ticket, volume=0.1))
    assert (half.status, half.volume) == ("FILLED", 0.1)
    (left,) = terminal.account.positions.values()
    assert left.volume == pytest.approx(0.3)


async def test_invalid_requests_are_answered_and_the_executor_keeps_serving(sims: StartSims, nc: NatsClient) -> None:
    await sims(["A1"], fill_latency_ms=0)
    bad_action_id = pack({"type": "OPEN_ORDER", "accountId": "A1", "symbol": "X", "side": "BUY", "volume": 1,
                          "actionId": "has space"})  # fmt: skip
    for body in (b"\x00garbage", pack({"type": "OPEN_ORDER", "accountId": "A1"}), b"", bad_action_id):
        reply = await nc.request(subjects.ORDER_REQUEST, body, timeout=5)
        result = unpack(reply.data, OrderResult)
        assert (result.status, result.code) == ("INVALID", errors.INVALID_REQUEST)
    assert (await order(nc, buy())).status == "FILLED"


# --- exactly once -------------------------------------------------------------------------------------------


async def test_a_repeated_action_id_returns_the_first_result_and_sends_nothing(sims: StartSims, nc: NatsClient) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0)
    first = await order(nc, buy(action_id="once"))
    again = await order(nc, buy(action_id="once"))
    assert (again.status, again.mt_ticket, again.duplicate) == ("FILLED", first.mt_ticket, True)
    assert first.duplicate is False
    assert terminal.account.received == ["once"]
    other = await order(nc, buy(volume=2.0, action_id="once"))
    assert (other.status, other.code) == ("INVALID", errors.DUPLICATE_MISMATCH)
    assert terminal.account.received == ["once"]


async def test_concurrent_duplicates_while_in_flight_get_the_same_answer(sims: StartSims, nc: NatsClient) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=200)
    answers = await asyncio.gather(*(order(nc, buy(action_id="race")) for _ in range(5)))
    assert {a.status for a in answers} == {"FILLED"}
    assert len({a.mt_ticket for a in answers}) == 1
    assert sorted(a.duplicate for a in answers) == [False, True, True, True, True]
    assert terminal.account.received == ["race"]


async def test_the_record_survives_an_executor_restart_and_a_cache_flush(
    sims: StartSims, nc: NatsClient, nats_server: NatsServer, cache_server: ValkeyServer, executor: Executor
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0)
    first = await order(nc, buy(action_id="durable"))
    await executor.stop()
    cache = RedisCache(f"{cache_server.url}/0")
    await cache._redis.flushall()
    await cache.close()
    second = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", id="ex-test-2"))
    await second.start()
    try:
        again = await order(nc, buy(action_id="durable"))
        assert (again.mt_ticket, again.duplicate) == (first.mt_ticket, True)
        assert terminal.account.received == ["durable"]
    finally:
        await second.stop()


# --- expiry and unknown outcomes -----------------------------------------------------------------------------


async def test_offline_account_expires_unsent(executor: Executor, nc: NatsClient, gateway: Gateway) -> None:
    result = await order(nc, buy(account="GHOST"))
    assert (result.status, result.code, result.state) == ("EXPIRED", errors.EXPIRED, "EXPIRED")


async def test_a_stale_command_is_never_delivered_late(
    executor: Executor, nc: NatsClient, ea_url: str, secret: str
) -> None:
    expired = await order(nc, buy(account="LATE", ttl_ms=100))
    assert expired.status == "EXPIRED"
    ea = await ScriptedEa.connect(ea_url, secret, "LATE")
    try:
        marker = asyncio.create_task(order(nc, buy(account="LATE", timeout_ms=300)))
        await wait_for(lambda: len(ea.opens()) == 1, "the marker order's OPEN")
        assert [c.action_id for c in ea.opens()] == [(await marker).action_id]
    finally:
        await ea.close()


async def test_an_order_waits_out_a_reconnecting_terminal_within_its_ttl(
    executor: Executor, nc: NatsClient, ea_url: str, secret: str
) -> None:
    pending = asyncio.create_task(order(nc, buy(account="LATE", ttl_ms=5000)))
    ea = await ScriptedEa.connect(ea_url, secret, "LATE")  # the terminal arrives after the request
    try:
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        command = ea.opens()[0]
        await ea.ea.send(
            OpenedEvent(
                timestamp=utcnow(),
                account_id="LATE",
                position_id=command.position_id,
                action_id=command.action_id,
                mt_ticket="42",
                price=1.1,
                volume=1.0,
                status="SUCCESS",
            )
        )
        result = await pending
        assert (result.status, result.mt_ticket) == ("FILLED", "42")
    finally:
        await ea.close()


async def test_lost_report_is_reconciled_from_a_snapshot_and_never_resent(
    sims: StartSims, nc: NatsClient, results: list[OrderResult]
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0)
    terminal.account.faults.append(SimFault(report=False))  # executes, but the OPENED never leaves
    first = await order(nc, buy(action_id="lost-1", timeout_ms=400))
    assert (first.status, first.code) == ("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN)
    await wait_for(lambda: any(r.reconciled and r.action_id == "lost-1" for r in results), "the reconciled result")
    reconciled = next(r for r in results if r.reconciled)
    (position,) = terminal.account.positions.values()
    assert (reconciled.status, reconciled.mt_ticket, reconciled.state) == ("FILLED", str(position.ticket), "RECONCILED")
    again = await order(nc, buy(action_id="lost-1", timeout_ms=400))
    assert (again.status, again.mt_ticket, again.reconciled, again.duplicate) == (
        "FILLED",
        reconciled.mt_ticket,
        True,
        True,
    )
    assert terminal.account.received == ["lost-1"]


async def test_trade_server_timeout_is_reconciled_as_not_executed(
    sims: StartSims, nc: NatsClient, results: list[OrderResult]
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0)
    for code in (retcodes.TIMEOUT, retcodes.CONNECTION):
        terminal.account.faults.append(SimFault(retcode=code))
        result = await order(nc, buy(action_id=f"srv-{code}"))
        assert (result.status, result.retcode, result.retcode_class) == ("OUTCOME_UNKNOWN", code, "RECONCILE")
        key = f"srv-{code}"

        def settled(key: str = key) -> bool:
            return any(r.reconciled and r.action_id == key for r in results)

        await wait_for(settled, "the reconciled result")
        final = next(r for r in results if r.reconciled and r.action_id == key)
        assert (final.status, final.code) == ("REJECTED", errors.RECONCILED_NOT_EXECUTED)
    assert terminal.account.received == [f"srv-{retcodes.TIMEOUT}", f"srv-{retcodes.CONNECTION}"]
    assert terminal.account.positions == {}


async def test_terminal_gone_after_the_command_reconciles_when_it_returns(
    executor: Executor, ea_url: str, secret: str, nc: NatsClient, results: list[OrderResult]
) -> None:
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    pending = asyncio.create_task(order(nc, buy(action_id="gone-1", timeout_ms=600)))
    await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
    command = ea.opens()[0]
    await ea.close()  # the terminal goes away holding the command, and executes it
    result = await pending
    assert (result.status, result.code) == ("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN)
    back = await ScriptedEa.connect(ea_url, secret, "A1")
    try:
        back.fill(command, "777")
        await wait_for(lambda: any(r.reconciled for r in results), "the reconciled result")
        reconciled = next(r for r in results if r.reconciled)
        assert (reconciled.status, reconciled.mt_ticket, reconciled.action_id) == ("FILLED", "777", "gone-1")
        assert back.opens() == []  # reconciled from a snapshot, never sent again
        assert any(isinstance(c, SyncCommand) for c in back.commands)
    finally:
        await back.close()


async def test_an_order_running_on_a_dead_executor_is_taken_over(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, ea_url: str, secret: str, nc: NatsClient
) -> None:
    first = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", id="ex-first", order_timeout_ms=30_000))
    await first.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    second: Executor | None = None
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="orphaned"), timeout_s=20))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        second = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", id="ex-second"))
        await second.start()
        await first.kill()  # dies holding the order
        ea.fill(ea.opens()[0], "9001")  # the terminal executed it; the report is lost with the executor
        result = await pending  # the caller is answered by the replica that took the order over
        assert (result.status, result.mt_ticket, result.reconciled) == ("FILLED", "9001", True)
        assert len(ea.opens()) == 1
    finally:
        await ea.close()
        if second is not None:
            await second.stop()


async def test_an_order_whose_executor_died_before_its_lease_is_recovered_when_asked_again(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, ea_url: str, secret: str, nc: NatsClient
) -> None:
    redis_url = f"{cache_server.url}/0"
    first = Executor(executor_config(nats_server.url, redis_url, id="ex-first", lease_after_ms=60_000))
    await first.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    second: Executor | None = None
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="no-lease", timeout_ms=30_000), timeout_s=20))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        await first.kill()  # dies before the order had a lease: no replica knows it is running
        ea.fill(ea.opens()[0], "9002")
        second = Executor(executor_config(nats_server.url, redis_url, id="ex-second"))
        await second.start()
        again = await order(nc, buy(action_id="no-lease", timeout_ms=30_000), timeout_s=20)
        assert (again.status, again.mt_ticket, again.reconciled, again.duplicate) == ("FILLED", "9002", True, True)
        first_answer = await pending  # the first caller is answered too
        assert (first_answer.status, first_answer.mt_ticket) == ("FILLED", "9002")
        assert len(ea.opens()) == 1
    finally:
        await ea.close()
        if second is not None:
            await second.stop()


# --- closes ---------------------------------------------------------------------------------------------------


async def test_double_close_and_batch_close(sims: StartSims, nc: NatsClient) -> None:
    await sims(["A1", "B1"], fill_latency_ms=0)
    opened = [await order(nc, buy(account=a)) for a in ("A1", "A1", "B1")]
    closed = await order(nc, CloseOrder(account_id="A1", mt_ticket=opened[0].mt_ticket))
    assert closed.status == "FILLED"
    twice = await order(nc, CloseOrder(account_id="A1", mt_ticket=opened[0].mt_ticket))
    assert (twice.status, twice.code) == ("REJECTED", errors.ALREADY_CLOSED)
    batch = CloseBatch(
        action_id="batch-1",
        items=[BatchItem(account_id=o.account_id, mt_ticket=o.mt_ticket) for o in opened],
    )
    reply = await nc.request(subjects.BATCH_REQUEST, pack(batch), timeout=10)
    result = unpack(reply.data, BatchResult)
    assert [(r.status, r.action_id) for r in result.results] == [
        ("REJECTED", "batch-1-0"),
        ("FILLED", "batch-1-1"),
        ("FILLED", "batch-1-2"),
    ]
    assert result.results[0].code == errors.ALREADY_CLOSED
    again = unpack((await nc.request(subjects.BATCH_REQUEST, pack(batch), timeout=10)).data, BatchResult)
    assert [r.duplicate for r in again.results] == [True, True, True]


async def test_orders_to_one_terminal_are_serialised(
    executor: Executor, ea_url: str, secret: str, nc: NatsClient
) -> None:
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    try:
        pending = [asyncio.create_task(order(nc, buy(action_id=f"ser-{i}"))) for i in range(2)]
        await wait_for(lambda: len(ea.opens()) == 1, "the first OPEN")
        await asyncio.sleep(0.2)  # a second OPEN now would mean two orders in flight on one terminal
        assert len(ea.opens()) == 1
        for i in range(2):

            def arrived(n: int = i + 1) -> bool:
                return len(ea.opens()) == n

            await wait_for(arrived, f"OPEN {i}")
            command = ea.opens()[i]
            await ea.ea.send(
                OpenedEvent(
                    timestamp=utcnow(),
                    account_id="A1",
                    position_id=command.position_id,
                    action_id=command.action_id,
                    mt_ticket=str(100 + i),
                    price=1.1,
                    volume=1.0,
                    status="SUCCESS",
                )
            )
        answers = await asyncio.gather(*pending)
        assert sorted(a.mt_ticket or "" for a in answers) == ["100", "101"]
    finally:
        await ea.close()


# --- the cache -------------------------------------------------------------------------------------------------


async def test_cache_flushed_under_load_is_rebuilt_from_snapshots(
    sims: StartSims, nc: NatsClient, cache_server: ValkeyServer, executor: Executor
) -> None:
    await sims(["A1", "B1"], fill_latency_ms=0, account_update_interval_ms=60_000)
    cache = RedisCache(f"{cache_server.url}/0")
    try:
        tickets = {a: (await order(nc, buy(account=a))).mt_ticket for a in ("A1", "B1")}
        load = asyncio.create_task(_orders(nc, 20))
        await cache._redis.flushall()
        assert await cache.positions("A1") is None  # known to be incomplete, not "no positions"

        async def rebuilt() -> bool:
            for account, ticket in tickets.items():
                positions = await cache.positions(account)
                if positions is None or ticket not in {p.mt_ticket for p in positions}:
                    return False
            return True

        await wait_for(rebuilt, "both accounts' positions back in the cache")
        assert {r.status for r in await load} == {"FILLED"}
        assert executor.rebuilds >= 1
    finally:
        await cache.close()


async def _orders(nc: NatsClient, n: int) -> list[OrderResult]:
    return [await order(nc, buy(account="A1")) for _ in range(n)]


async def test_orders_go_on_while_the_cache_is_down(
    sims: StartSims, nc: NatsClient, cache_server: ValkeyServer
) -> None:
    await sims(["A1"], fill_latency_ms=0, tick_interval_ms=20)
    cache_server.kill()
    assert (await order(nc, buy())).status == "FILLED"
    cache_server.start()
    cache = RedisCache(f"{cache_server.url}/0")
    try:

        async def written_again() -> bool:
            return await cache.price("EURUSD") is not None and await cache.positions("A1") is not None

        await wait_for(written_again, "the cache to be rebuilt after its restart")
    finally:
        await cache.close()


# --- scale-out ---------------------------------------------------------------------------------------------------


async def test_two_executors_and_two_gateways(
    nats_server: NatsServer, cache_server: ValkeyServer, secret: str, executor: Executor, nc: NatsClient
) -> None:
    other_gw = Gateway(gateway_config(nats_server.url, secret, id="gw-test-2"))
    await other_gw.start()
    other_ex = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", id="ex-test-2"))
    await other_ex.start()
    stop = asyncio.Event()
    try:
        # the terminal is on the second gateway; requests enter through NATS and land on either executor
        on_second = make_terminals(
            f"ws://127.0.0.1:{other_gw.port}/ea", ["B1"], lambda a: ea_token(secret, a), SimConfig(fill_latency_ms=0)
        )
        running = asyncio.create_task(run_terminals(on_second, stop))
        await wait_for(lambda: on_second[0].connected.is_set(), "the terminal on the second gateway")
        answers = await asyncio.gather(*(order(nc, buy(account="B1", action_id=f"x-{i}")) for i in range(20)))
        assert {a.status for a in answers} == {"FILLED"}
        assert sorted(on_second[0].account.received) == sorted(f"x-{i}" for i in range(20))
        again = await asyncio.gather(*(order(nc, buy(account="B1", action_id=f"x-{i}")) for i in range(20)))
        assert all(a.duplicate for a in again)
        assert len(on_second[0].account.received) == 20
        stop.set()
        await running
    finally:
        stop.set()
        await other_ex.stop()
        await other_gw.stop()


async def test_executor_results_are_kept_in_the_events_stream(sims: StartSims, nc: NatsClient) -> None:
    await sims(["A1"], fill_latency_ms=0)
    result = await order(nc, buy(action_id="kept"))
    js = nc.jetstream()

    async def stored() -> bool:  # the result is recorded right after the caller is answered
        with contextlib.suppress(Exception):
            last = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.result("A1"))
            return unpack(last.data or b"", OrderResult).action_id == "kept"
        return False

    await wait_for(stored, "the result in HB_EVENTS")
    report = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.event("A1", "OPENED"))
    assert unpack(report.data or b"", OpenedEvent).mt_ticket == result.mt_ticket
