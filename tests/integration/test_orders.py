"""The executor with the real gateway, nats-server and valkey-server: validation, exactly-once effect per
actionId under concurrency and restarts, expiry, unknown outcomes and their reconciliation, takeover by another
executor, serialised terminals, a cache outage, two executors and two gateways. The execution contract every
terminal kind must meet (fills, retcode classes, partial fills, closes, cache rebuild…) is in
test_terminal_contract.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common import executor_client, streams
from hedgebridge.common.cache import RedisCache
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    CloseCommand,
    Command,
    OpenCommand,
    OpenedEvent,
    OpenOrder,
    OrderRecord,
    OrderResult,
    Position,
    PositionUpdate,
    SyncCommand,
    Welcome,
    decode_frame,
    errors,
    pack,
    subjects,
    unpack,
    utcnow,
)
from hedgebridge.sim import SimConfig
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

    def closes(self) -> list[CloseCommand]:
        return [c for c in self.commands if isinstance(c, CloseCommand)]

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for data in self.ea.ws:
                frame = decode_frame(data)
                if isinstance(frame, OpenCommand | CloseCommand | SyncCommand):
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

    async def report_fill(self, command: OpenCommand, ticket: str, price: float = 1.1) -> None:
        """Report ``command`` filled at ``price`` under ``ticket`` (the OPENED a terminal sends)."""
        await self.ea.send(
            OpenedEvent(
                timestamp=utcnow(),
                account_id=self.account,
                position_id=command.position_id,
                action_id=command.action_id,
                mt_ticket=ticket,
                price=price,
                volume=command.volume,
                status="SUCCESS",
            )
        )

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


# --- validation -----------------------------------------------------------------------------------------------


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


async def test_orders_queued_for_an_unreachable_account_expire_at_their_own_ttl(
    executor: Executor, nc: NatsClient, gateway: Gateway
) -> None:
    """Orders behind one another for an account no gateway holds: each ends EXPIRED (never sent) when its own
    time-to-live passes, also while it waits in the account's queue; none waits out the ones before it and
    reaches its order timeout (OUTCOME_UNKNOWN)."""
    requests = [buy(account="GONE", action_id=f"queued-{i}", ttl_ms=1500, timeout_ms=2500) for i in range(4)]
    results = await asyncio.gather(*(order(nc, r, timeout_s=30) for r in requests))
    assert [(r.status, r.code) for r in results] == [("EXPIRED", errors.EXPIRED)] * 4
    assert sum("queued" in r.message for r in results) >= 2  # the later ones expired in the queue
    again = await order(nc, requests[-1])
    assert (again.status, again.duplicate) == ("EXPIRED", False)  # recorded EXPIRED: asked again, it runs afresh


async def test_expired_means_ask_again_with_the_same_action_id_whoever_said_it(
    nats_server: NatsServer, cache_server: ValkeyServer, gateway: Gateway, nc: NatsClient, ea_url: str, secret: str
) -> None:
    request = buy(account="EXP", action_id="exp-1", ttl_ms=100)
    # no executor at all: the caller is told EXPIRED (EXECUTOR_UNAVAILABLE), nothing was recorded
    unanswered = await executor_client.ask(nc, request, 2.0)
    assert (unanswered.result.status, unanswered.result.code) == ("EXPIRED", errors.EXECUTOR_UNAVAILABLE)
    executor = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", id="ex-exp"))
    await executor.start()
    stop = asyncio.Event()
    try:
        # the executor's own EXPIRED: the account stayed offline past the time-to-live (recorded)
        expired = await order(nc, request)
        assert (expired.status, expired.code, expired.duplicate) == ("EXPIRED", errors.EXPIRED, False)
        # before: a request with the same actionId got that EXPIRED again, forever; now, as after the
        # gateway's EXPIRED, asking again runs the order (once)
        (terminal,) = make_terminals(ea_url, ["EXP"], lambda a: ea_token(secret, a), SimConfig(fill_latency_ms=0))
        runner = asyncio.create_task(run_terminals([terminal], stop))
        await wait_for(terminal.connected.is_set, "the terminal")
        again = await order(nc, msgspec.structs.replace(request, ttl_ms=3000))
        assert (again.status, again.duplicate) == ("FILLED", False)
        repeated = await order(nc, request)
        assert (repeated.status, repeated.duplicate, repeated.mt_ticket) == ("FILLED", True, again.mt_ticket)
        assert terminal.account.received == ["exp-1"]
        stop.set()
        await runner
    finally:
        stop.set()
        await executor.stop()


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
        await ea.report_fill(command, "42")
        result = await pending
        assert (result.status, result.mt_ticket) == ("FILLED", "42")
    finally:
        await ea.close()


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


async def test_a_terminal_back_on_a_new_session_settles_the_order_without_waiting_for_its_timeout(
    executor: Executor, ea_url: str, secret: str, nc: NatsClient
) -> None:
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    pending = asyncio.create_task(order(nc, buy(action_id="back-1", timeout_ms=8000)))
    await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
    command = ea.opens()[0]
    await ea.close()  # it executed; the connection dropped before its report
    back = await ScriptedEa.connect(ea_url, secret, "A1")
    try:
        back.fill(command, "778")
        result = await pending  # answered from the new session's snapshot, not OUTCOME_UNKNOWN at the timeout
        assert (result.status, result.mt_ticket, result.reconciled, result.state) == (
            "FILLED",
            "778",
            True,
            "RECONCILED",
        )
        assert back.opens() == []
        again = await order(nc, buy(action_id="back-1", timeout_ms=8000))
        assert (again.status, again.duplicate, again.mt_ticket) == ("FILLED", True, "778")
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


@pytest.mark.parametrize("how", ["asked-again", "found-by-the-search", "found-after-later-orders"])
async def test_an_order_whose_executor_died_before_its_lease_is_settled(
    nats_server: NatsServer,
    cache_server: ValkeyServer,
    gateway: Gateway,
    ea_url: str,
    secret: str,
    nc: NatsClient,
    how: str,
) -> None:
    """Taken over when its actionId is asked again, or else by another replica's search for orders nobody owns,
    also when orders that ended after it left gaps in the records' stream (their first writes removed)."""
    redis_url = f"{cache_server.url}/0"
    first = Executor(executor_config(nats_server.url, redis_url, id="ex-first", lease_after_ms=60_000))
    await first.start()
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    second: Executor | None = None
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="no-lease", timeout_ms=30_000), timeout_s=20))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        await first.kill()  # dies before the order had a lease: no replica knows it is running
        ea.fill(ea.opens()[0], "9002")  # the terminal executed it; the report is lost with the executor
        if how == "found-after-later-orders":
            await _orders_ended_after(nc, "no-lease", 5)
        second = Executor(executor_config(nats_server.url, redis_url, id="ex-second"))
        await second.start()
        if how == "asked-again":
            again = await order(nc, buy(action_id="no-lease", timeout_ms=30_000), timeout_s=20)
            assert (again.status, again.mt_ticket, again.reconciled, again.duplicate) == ("FILLED", "9002", True, True)
        first_answer = await pending  # the first caller is answered by the replica that took the order over
        assert (first_answer.status, first_answer.mt_ticket, first_answer.reconciled) == ("FILLED", "9002", True)
        assert len(ea.opens()) == 1
        assert second.orphans is not None
        assert how == "asked-again" or second.orphans.found == 1
    finally:
        await ea.close()
        if second is not None:
            await second.stop()


async def test_an_order_whose_reconciliation_failed_inside_is_taken_over(
    executor: Executor, ea_url: str, secret: str, nc: NatsClient, results: list[OrderResult]
) -> None:
    """The leases' bucket gone as an order whose outcome is unknown begins to reconcile: its lease cannot be
    written and the run fails inside. It keeps no lease then (nothing drives it any more), so the search for
    orders nobody owns takes it over (here on the same replica) and reconciles it."""
    ea = await ScriptedEa.connect(ea_url, secret, "A1")
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="lease-down", timeout_ms=1000), timeout_s=20))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        ea.fill(ea.opens()[0], "9004")  # executed; the report never comes
        await nc.jetstream().delete_stream(f"KV_{subjects.INFLIGHT_BUCKET}")
        first = await pending
        assert (first.status, first.code) == ("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN)
        await streams.ensure(nc)  # the bucket back (empty)

        def reconciled() -> list[OrderResult]:
            return [r for r in results if r.action_id == "lease-down" and r.reconciled]

        await wait_for(lambda: bool(reconciled()), "the reconciled result", timeout_s=15)
        assert [(r.status, r.mt_ticket) for r in reconciled()] == [("FILLED", "9004")]
        assert executor.orphans is not None
        assert executor.orphans.found == 1
        assert len(ea.opens()) == 1
    finally:
        await ea.close()


async def _orders_ended_after(nc: NatsClient, action_id: str, n: int) -> None:
    """``n`` orders recorded after ``action_id`` and ended (each record created, then written with its result)."""
    kv = await nc.jetstream().key_value(subjects.ORDERS_BUCKET)
    entry = await kv.get(action_id)
    record = unpack(entry.value or b"", OrderRecord)
    for i in range(n):
        later = msgspec.structs.replace(record, action_id=f"{action_id}-later-{i}", updated_at=utcnow())
        await kv.create(later.action_id, pack(later))
        result = OrderResult(status="REJECTED", code=errors.INVALID_VOLUME, kind="OPEN", account_id="A1")
        await kv.put(later.action_id, pack(msgspec.structs.replace(later, state="REJECTED", result=result)))


# --- one terminal at a time -----------------------------------------------------------------------------------


async def test_an_ended_order_leaves_no_lease_behind(sims: StartSims, nc: NatsClient) -> None:
    """An order slow enough to be leased ends: its mark is purged, so the lease upkeep's listing of the bucket
    (every third of a lease) holds the orders running now, not a marker for each order of the day."""
    await sims(["A1"], fill_latency_ms=300)
    leased: list[int] = []
    js = nc.jetstream()
    result = await order(nc, buy(action_id="leased-1"))
    assert result.status == "FILLED"

    async def nothing_left() -> bool:
        state = (await js.stream_info(f"KV_{subjects.INFLIGHT_BUCKET}")).state
        leased[:] = [state.last_seq, state.messages]
        return state.last_seq > 0 and state.messages == 0

    await wait_for(nothing_left, lambda: f"the lease written and then purged (last seq, messages): {leased}")


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
            await ea.report_fill(command, str(100 + i))
        answers = await asyncio.gather(*pending)
        assert sorted(a.mt_ticket or "" for a in answers) == ["100", "101"]
    finally:
        await ea.close()


# --- the cache -------------------------------------------------------------------------------------------------


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
