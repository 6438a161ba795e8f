"""The execution contract every terminal kind keeps, run against each of them with the real executor, nats-server
and valkey-server: the Python simulated terminal behind a gateway (``sim``), the compiled EA on its simulated
trade server behind a gateway with the DLL transport (``ea-dll``) and the native one (``ea-native``), and the
MetaTrader5-package bridge driving the simulated package (``mt5bridge``). Nothing else in the system can tell
them apart.

The compiled EA is built once per session; where the tree has no MQL5 runtime for tests its kinds are skipped,
and where the runtime is present a build that fails fails the tests, with what is missing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

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
    ModifiedEvent,
    ModifyOrder,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    OpenOrder,
    OrderResult,
    Position,
    PositionUpdate,
    SyncCommand,
    errors,
    pack,
    retcodes,
    subjects,
    unpack,
    unpack_event,
    utcnow,
)

from ..conftest import StartSims
from ..helpers import deliver, order, wait_for
from ..mt5.terminals import Bridges, EaBuild, EaTerminals, Fault, SimEa, StartTerminals, Terminal

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sim", "ea-dll", "ea-native", "mt5bridge"])
def terminals(request: pytest.FixtureRequest) -> StartTerminals:
    """``await terminals(["A1"])``: one terminal per account, of the kind the test is parametrized with."""
    start: StartTerminals = request.getfixturevalue(f"{request.param.replace('-', '_')}_terminals")
    return start


@pytest.fixture
async def ea_dll_terminals(
    ea_dll_build: EaBuild, gateway: Gateway, secret: str, executor: Executor, tmp_path: Path
) -> AsyncIterator[StartTerminals]:
    async with EaTerminals(ea_dll_build, gateway.port, secret, tmp_path / "ea") as eas:
        yield eas.start


@pytest.fixture
async def ea_native_terminals(
    ea_native_build: EaBuild, gateway: Gateway, secret: str, executor: Executor, tmp_path: Path
) -> AsyncIterator[StartTerminals]:
    async with EaTerminals(ea_native_build, gateway.port, secret, tmp_path / "ea") as eas:
        yield eas.start


@pytest.fixture
def sim_terminals(sims: StartSims) -> StartTerminals:
    async def start(accounts: list[str]) -> list[Terminal]:
        return [SimEa(t) for t in await sims(accounts, fill_latency_ms=0, tick_interval_ms=20)]

    return start


@pytest.fixture
async def mt5bridge_terminals(
    nats_server: NatsServer, executor: Executor, tmp_path: Path
) -> AsyncIterator[StartTerminals]:
    bridges = Bridges(nats_server.url, tmp_path / "books")

    async def start(accounts: list[str]) -> list[Terminal]:
        return [await bridges.start(account) for account in accounts]

    yield start
    await bridges.close()


@pytest.fixture
async def results(nc: NatsClient) -> AsyncIterator[list[OrderResult]]:
    seen: list[OrderResult] = []

    async def collect(msg: Msg) -> None:
        seen.append(unpack(msg.data, OrderResult))

    sub = await nc.subscribe(subjects.ALL_RESULTS, cb=collect)
    await nc.flush()
    yield seen
    await sub.unsubscribe()


def buy(account: str = "A1", volume: float = 1.0, **fields: object) -> OpenOrder:
    return OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=volume, **fields)  # type: ignore[arg-type]


async def test_open_and_close_fill_the_cache_and_the_book(
    terminals: StartTerminals, nc: NatsClient, cache_server: ValkeyServer, executor: Executor
) -> None:
    (terminal,) = await terminals(["A1"])
    cache = RedisCache(f"{cache_server.url}/0")
    try:
        opened = await order(nc, buy(volume=0.5, action_id="o-1"))
        assert (opened.status, opened.action_id, opened.code, opened.kind) == ("FILLED", "o-1", None, "OPEN")
        assert (opened.volume, opened.requested_volume, opened.attempts) == (0.5, 0.5, 1)
        ticket = opened.mt_ticket
        assert ticket is not None
        assert await terminal.positions() == {ticket: 0.5}

        async def cached() -> bool:
            positions = await cache.positions("A1")
            held = positions is not None and [(p.mt_ticket, p.action_id) for p in positions] == [(ticket, "o-1")]
            return held and await cache.price("EURUSD") is not None

        await wait_for(cached, "the position (with its actionId) and a price in the cache")

        async def booked() -> bool:
            with contextlib.suppress(Exception):
                entry = await executor.state.book.get(f"A1.{ticket}")
                return entry.value is not None and unpack(entry.value, BookEntry).volume == 0.5
            return False

        await wait_for(booked, "the position in the book")
        closed = await order(nc, CloseOrder(account_id="A1", position_id=opened.position_id))
        assert (closed.status, closed.kind, closed.mt_ticket) == ("FILLED", "CLOSE", ticket)
        assert closed.profit is not None
        assert await terminal.positions() == {}
        realised = 10_000 + closed.profit

        async def emptied() -> bool:
            balance = await cache.balance("A1")
            settled = balance is not None and float(balance["balance"]) == pytest.approx(realised)
            return settled and await cache.positions("A1") == []

        await wait_for(emptied, "no position and the realised balance in the cache")
    finally:
        await cache.close()


async def test_final_retcodes_are_rejected_with_their_class(terminals: StartTerminals, nc: NatsClient) -> None:
    (terminal,) = await terminals(["A1"])
    for code in (retcodes.REJECT, retcodes.NO_MONEY, retcodes.MARKET_CLOSED, retcodes.INVALID_VOLUME):
        await terminal.inject(Fault(retcode=code))
        result = await order(nc, buy())
        assert (result.status, result.code, result.retcode) == ("REJECTED", errors.ORDER_REJECTED, code)
        assert (result.retcode_class, result.attempts) == ("FINAL", 1)
    assert await terminal.positions() == {}
    unknown = await order(nc, CloseOrder(account_id="A1", mt_ticket="123"))
    assert (unknown.status, unknown.code, unknown.retcode) == ("REJECTED", errors.ALREADY_CLOSED, 10036)
    assert unknown.retcode_class == "ALREADY_CLOSED"


async def test_retry_retcodes_are_sent_again_with_the_same_action_id(terminals: StartTerminals, nc: NatsClient) -> None:
    (terminal,) = await terminals(["A1"])
    await terminal.inject(Fault(retcode=retcodes.REQUOTE))
    await terminal.inject(Fault(retcode=retcodes.PRICE_CHANGED))
    result = await order(nc, buy(action_id="retry-1"))
    assert (result.status, result.attempts) == ("FILLED", 3)
    assert terminal.received == ["retry-1"] * 3
    assert list((await terminal.positions()).values()) == [1.0]
    for _ in range(3):
        await terminal.inject(Fault(retcode=retcodes.TOO_MANY_REQUESTS))
    exhausted = await order(nc, buy(action_id="retry-2"))
    assert (exhausted.status, exhausted.code, exhausted.attempts) == ("REJECTED", errors.RETRIES_EXHAUSTED, 3)
    assert terminal.received.count("retry-2") == 3
    assert len(await terminal.positions()) == 1


async def test_partial_fill_reports_the_filled_volume_and_a_partial_close_leaves_the_rest(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    (terminal,) = await terminals(["A1"])
    await terminal.inject(Fault(fill_ratio=0.4))
    result = await order(nc, buy(volume=1.0, action_id="part-1"))
    assert (result.status, result.code, result.volume, result.requested_volume, result.retcode) == (
        "PARTIALLY_FILLED",
        errors.PARTIAL_FILL,
        0.4,
        1.0,
        retcodes.DONE_PARTIAL,
    )
    assert terminal.received == ["part-1"]
    half = await order(nc, CloseOrder(account_id="A1", mt_ticket=result.mt_ticket, volume=0.1))
    assert (half.status, half.volume) == ("FILLED", 0.1)
    assert half.event is not None
    assert half.event.remaining_volume == pytest.approx(0.3)  # type: ignore[union-attr]
    assert await terminal.positions() == {result.mt_ticket: pytest.approx(0.3)}


async def test_a_repeated_action_id_returns_the_first_result_and_the_terminal_sees_it_once(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    (terminal,) = await terminals(["A1"])
    first = await order(nc, buy(action_id="once"))
    again = await order(nc, buy(action_id="once"))
    assert (again.status, again.mt_ticket, again.duplicate) == ("FILLED", first.mt_ticket, True)
    other = await order(nc, buy(volume=2.0, action_id="once"))
    assert (other.status, other.code) == ("INVALID", errors.DUPLICATE_MISMATCH)
    assert terminal.received == ["once"]
    assert len(await terminal.positions()) == 1


async def test_the_terminal_answers_an_executed_action_id_with_the_first_result(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    """The terminal's own side of exactly-once: the same OPEN twice (as after a lost executor record) is
    answered with the first result and ``alreadyExecuted``, and executes once."""
    (terminal,) = await terminals(["A1"])
    reports: list[OpenedEvent] = []

    async def collect(msg: Msg) -> None:
        event = unpack_event(msg.data)
        if isinstance(event, OpenedEvent):
            reports.append(event)

    sub = await nc.subscribe(subjects.event("A1", "OPENED"), cb=collect)
    await nc.flush()
    command = OpenCommand(
        timestamp=utcnow(),
        account_id="A1",
        position_id="p-twice",
        action_id="twice",
        symbol="EURUSD",
        side="SELL",
        volume=0.2,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u-1"),
    )
    try:
        for _ in range(2):
            assert (await deliver(nc, "A1", command)).delivered
        await wait_for(lambda: len(reports) == 2, "two OPENED reports")
    finally:
        await sub.unsubscribe()
    first, second = reports
    assert (first.status, first.already_executed, first.symbol, first.side) == ("SUCCESS", False, "EURUSD", "SELL")
    assert (second.status, second.already_executed) == ("SUCCESS", True)
    assert (second.mt_ticket, second.price, second.volume) == (first.mt_ticket, first.price, first.volume)
    assert await terminal.positions() == {first.mt_ticket: 0.2}
    assert terminal.received == ["twice", "twice"]


async def test_a_lost_report_gets_a_definite_answer_and_the_command_is_never_resent(
    terminals: StartTerminals, nc: NatsClient, results: list[OrderResult]
) -> None:
    (terminal,) = await terminals(["A1"])
    await terminal.inject(Fault(lost_report=True))
    first = await order(nc, buy(action_id="lost-1", timeout_ms=400))
    # a terminal that lost its connection with the report is back at once: the report it sends again, or its new
    # session's snapshot, answers within the timeout; otherwise the executor reconciles after it
    assert (first.status, first.code) in {("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN), ("FILLED", None)}
    final = first
    if first.status == "OUTCOME_UNKNOWN":
        await wait_for(lambda: any(r.reconciled and r.action_id == "lost-1" for r in results), "the reconciled result")
        final = next(r for r in results if r.reconciled)
        assert final.state == "RECONCILED"
    (ticket,) = await terminal.positions()
    assert (final.status, final.mt_ticket) == ("FILLED", ticket)
    again = await order(nc, buy(action_id="lost-1", timeout_ms=400))
    assert (again.status, again.mt_ticket, again.duplicate, again.reconciled) == (
        "FILLED",
        ticket,
        True,
        final.reconciled,
    )
    assert terminal.received == ["lost-1"]


async def test_a_trade_server_timeout_is_reconciled_as_not_executed(
    terminals: StartTerminals, nc: NatsClient, results: list[OrderResult]
) -> None:
    (terminal,) = await terminals(["A1"])
    for code in (retcodes.TIMEOUT, retcodes.CONNECTION):
        await terminal.inject(Fault(retcode=code))
        result = await order(nc, buy(action_id=f"srv-{code}"))
        assert (result.status, result.retcode, result.retcode_class) == ("OUTCOME_UNKNOWN", code, "RECONCILE")
        key = f"srv-{code}"

        def settled(key: str = key) -> bool:
            return any(r.reconciled and r.action_id == key for r in results)

        await wait_for(settled, "the reconciled result")
        final = next(r for r in results if r.reconciled and r.action_id == key)
        assert (final.status, final.code) == ("REJECTED", errors.RECONCILED_NOT_EXECUTED)
    assert terminal.received == [f"srv-{retcodes.TIMEOUT}", f"srv-{retcodes.CONNECTION}"]
    assert await terminal.positions() == {}


async def test_double_close_and_batch_close(terminals: StartTerminals, nc: NatsClient) -> None:
    a1, b1 = await terminals(["A1", "B1"])
    opened = [await order(nc, buy(account=a)) for a in ("A1", "A1", "B1")]
    closed = await order(nc, CloseOrder(account_id="A1", mt_ticket=opened[0].mt_ticket))
    assert closed.status == "FILLED"
    twice = await order(nc, CloseOrder(account_id="A1", mt_ticket=opened[0].mt_ticket))
    assert (twice.status, twice.code) == ("REJECTED", errors.ALREADY_CLOSED)
    batch = CloseBatch(
        action_id="batch-1", items=[BatchItem(account_id=o.account_id, mt_ticket=o.mt_ticket) for o in opened]
    )
    result = unpack((await nc.request(subjects.BATCH_REQUEST, pack(batch), timeout=10)).data, BatchResult)
    assert [(r.status, r.action_id) for r in result.results] == [
        ("REJECTED", "batch-1-0"),
        ("FILLED", "batch-1-1"),
        ("FILLED", "batch-1-2"),
    ]
    assert result.results[0].code == errors.ALREADY_CLOSED
    assert (await a1.positions(), await b1.positions()) == ({}, {})
    again = unpack((await nc.request(subjects.BATCH_REQUEST, pack(batch), timeout=10)).data, BatchResult)
    assert [r.duplicate for r in again.results] == [True, True, True]
    assert b1.received.count("batch-1-2") == 1


async def test_a_flushed_cache_is_rebuilt_from_the_terminals_snapshots(
    terminals: StartTerminals, nc: NatsClient, cache_server: ValkeyServer, executor: Executor
) -> None:
    await terminals(["A1", "B1"])
    cache = RedisCache(f"{cache_server.url}/0")
    try:
        tickets = {a: (await order(nc, buy(account=a))).mt_ticket for a in ("A1", "B1")}
        load = asyncio.create_task(_orders(nc, 10))
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


async def test_an_off_step_volume_is_invalid_before_anything_reaches_the_terminal(
    terminals: StartTerminals, nc: NatsClient, executor: Executor
) -> None:
    """The terminal reports its symbols' rules after WELCOME; the executor checks orders against them before
    sending: an off-step volume never reaches the terminal, and a rounded one reaches it rounded."""
    (terminal,) = await terminals(["A1"])
    await wait_for(lambda: executor.symbols.spec("A1", "EURUSD") is not None, "the terminal's EURUSD rules")
    spec = executor.symbols.spec("A1", "EURUSD")
    assert spec is not None
    assert (spec.volume_min, spec.volume_max, spec.volume_step, spec.trade_mode) == (0.01, 100, 0.01, "FULL")
    assert spec.contract_size == 100_000
    assert spec.digits == 5
    assert "FOK" in spec.filling_modes
    refused = await order(nc, buy(volume=0.015, action_id="off-step"))
    assert (refused.status, refused.code) == ("INVALID", errors.INVALID_VOLUME)
    assert "allowed: 0.01 to 100 in steps of 0.01 (the nearest are 0.01 and 0.02" in refused.message
    assert terminal.received == []
    rounded = await order(nc, buy(volume=0.015, action_id="off-step", round_volume=True))
    assert (rounded.status, rounded.volume, rounded.rounded_from) == ("FILLED", 0.01, 0.015)
    assert terminal.received == ["off-step"]
    assert await terminal.positions() == {rounded.mt_ticket: pytest.approx(0.01)}


async def test_a_symbol_traded_has_its_rules_reported(
    terminals: StartTerminals, nc: NatsClient, executor: Executor
) -> None:
    """Rules are reported for the symbols a terminal trades and holds, not only those it quotes (the EA and the
    bridge quote EURUSD alone here)."""
    await terminals(["A1"])
    sold = await order(nc, OpenOrder(account_id="A1", symbol="USDJPY", side="SELL", volume=0.1))
    assert sold.status == "FILLED"

    def reported() -> bool:
        spec = executor.symbols.spec("A1", "USDJPY")
        return spec is not None and (spec.digits, spec.contract_size, spec.trade_mode) == (3, 100_000, "FULL")

    await wait_for(reported, "USDJPY's rules after it was traded")


async def test_a_changed_symbol_rule_is_reported_and_applied_before_sending(
    terminals: StartTerminals, nc: NatsClient, executor: Executor
) -> None:
    (terminal,) = await terminals(["A1"])
    await wait_for(lambda: executor.symbols.spec("A1", "EURUSD") is not None, "the terminal's EURUSD rules")
    await terminal.change_symbol("EURUSD", trade_mode="CLOSE_ONLY", volume_step=0.1, volume_min=0.1)

    def changed() -> bool:
        spec = executor.symbols.spec("A1", "EURUSD")
        return spec is not None and (spec.trade_mode, spec.volume_step) == ("CLOSE_ONLY", 0.1)

    await wait_for(changed, "the changed EURUSD rules at the executor")
    refused = await order(nc, buy(action_id="close-only"))
    assert (refused.status, refused.code) == ("REJECTED", errors.TRADE_DISABLED)
    await terminal.change_symbol("EURUSD", trade_mode="FULL")
    await wait_for(lambda: getattr(executor.symbols.spec("A1", "EURUSD"), "trade_mode", "") == "FULL", "FULL again")
    coarse = await order(nc, buy(volume=0.25, action_id="coarse"))
    assert (coarse.status, coarse.code) == ("INVALID", errors.INVALID_VOLUME)
    assert terminal.received == []
    assert (await order(nc, buy(volume=0.3, action_id="fine"))).status == "FILLED"
    assert terminal.received == ["fine"]


async def test_reports_are_kept_in_the_events_stream(terminals: StartTerminals, nc: NatsClient) -> None:
    await terminals(["A1"])
    result = await order(nc, buy(action_id="kept"))

    async def kept() -> bool:
        with contextlib.suppress(Exception):
            report = await nc.jetstream().get_last_msg(subjects.EVENTS_STREAM, subjects.event("A1", "OPENED"))
            return unpack(report.data or b"", OpenedEvent).mt_ticket == result.mt_ticket
        return False

    await wait_for(kept, "the OPENED report in HB_EVENTS")


# --- stop loss and take profit (OPEN's stops, MODIFY) ---------------------------------------------------------

FAR = 0.005  # 500 points of EURUSD from the price: a valid stop on any of the terminals' trade servers
NEAR = 0.00005  # 5 points: nearer than the stops level (20 points) every terminal's trade server keeps


def modify(account: str = "A1", **fields: object) -> ModifyOrder:
    return ModifyOrder(account_id=account, **fields)  # type: ignore[arg-type]


async def bought(nc: NatsClient, **fields: float | str) -> tuple[str, float]:
    """A filled BUY of 0.1 EURUSD on A1: its ticket and fill price."""
    result = await order(nc, OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.1, **fields))  # type: ignore[arg-type]
    assert result.status == "FILLED", result.message
    assert result.mt_ticket is not None
    assert result.price is not None
    return result.mt_ticket, result.price


async def snapshot_of(nc: NatsClient, account: str) -> list[Position]:
    """The account's positions as the terminal reports them now (the answer to a SYNC)."""
    sync_id = f"probe-{account}"
    seen: list[PositionUpdate] = []

    async def collect(msg: Msg) -> None:
        update = unpack(msg.data, PositionUpdate)
        if update.sync_id == sync_id:
            seen.append(update)

    sub = await nc.subscribe(subjects.event(account, "POSITION_UPDATE"), cb=collect)
    try:
        await nc.flush()
        await deliver(nc, account, SyncCommand(timestamp=utcnow(), account_id=account, sync_id=sync_id))
        await wait_for(lambda: bool(seen), "the snapshot answering the SYNC")
    finally:
        await sub.unsubscribe()
    return seen[0].positions


async def test_an_open_sets_its_stops_and_a_stop_on_the_wrong_side_is_invalid_stops(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    (terminal,) = await terminals(["A1"])
    probe, price = await bought(nc)
    ticket, _ = await bought(nc, stop_loss=round(price - FAR, 5), take_profit=round(price + FAR, 5))
    sl, tp = (await terminal.stops())[ticket]
    assert (sl, tp) == pytest.approx((price - FAR, price + FAR), abs=1e-4)
    wrong = await order(nc, buy(volume=0.1, stop_loss=round(price + FAR, 5), action_id="wrong-side"))
    assert (wrong.status, wrong.code, wrong.retcode) == ("REJECTED", errors.INVALID_STOPS, retcodes.INVALID_STOPS)
    assert wrong.retcode_class == "FINAL"
    assert set(await terminal.positions()) == {probe, ticket}


async def test_modify_sets_keeps_and_removes_stops_and_positions_carry_them(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    (terminal,) = await terminals(["A1"])
    ticket, price = await bought(nc, action_id="to-modify")
    sl, tp = round(price - FAR, 5), round(price + FAR, 5)
    set_sl = await order(nc, modify(position_id=f"mt-{ticket}", mt_ticket=ticket, stop_loss=sl, action_id="m-sl"))
    assert (set_sl.status, set_sl.kind, set_sl.mt_ticket, set_sl.code) == ("FILLED", "MODIFY", ticket, None)
    assert (set_sl.stop_loss, set_sl.take_profit) == pytest.approx((sl, 0.0))
    assert isinstance(set_sl.event, ModifiedEvent)
    assert set_sl.event.status == "SUCCESS"
    set_tp = await order(nc, modify(mt_ticket=ticket, take_profit=tp))  # the stop loss is kept
    assert set_tp.status == "FILLED"
    assert (set_tp.stop_loss, set_tp.take_profit) == pytest.approx((sl, tp))
    assert (await terminal.stops())[ticket] == pytest.approx((sl, tp))
    (reported,) = [p for p in await snapshot_of(nc, "A1") if p.mt_ticket == ticket]
    assert (reported.stop_loss, reported.take_profit) == pytest.approx((sl, tp))
    removed = await order(nc, modify(mt_ticket=ticket, stop_loss=0))
    assert removed.status == "FILLED"
    assert (removed.stop_loss, removed.take_profit) == pytest.approx((0.0, tp))
    assert (await terminal.stops())[ticket] == pytest.approx((0.0, tp))
    (reported,) = [p for p in await snapshot_of(nc, "A1") if p.mt_ticket == ticket]
    assert (reported.stop_loss or 0.0, reported.take_profit) == pytest.approx((0.0, tp))  # absent or 0: none
    assert terminal.received.count("m-sl") == 1


async def test_a_position_opened_with_a_command_is_modified_by_its_position_id(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    await terminals(["A1"])
    opened = await order(nc, buy(volume=0.1))
    assert opened.price is not None
    assert opened.position_id is not None
    result = await order(nc, modify(position_id=opened.position_id, take_profit=round(opened.price + FAR, 5)))
    assert (result.status, result.mt_ticket, result.position_id) == ("FILLED", opened.mt_ticket, opened.position_id)


async def test_modify_that_changes_nothing_is_filled_with_no_changes(terminals: StartTerminals, nc: NatsClient) -> None:
    await terminals(["A1"])
    ticket, price = await bought(nc)
    sl = round(price - FAR, 5)
    assert (await order(nc, modify(mt_ticket=ticket, stop_loss=sl))).status == "FILLED"
    again = await order(nc, modify(mt_ticket=ticket, stop_loss=sl))
    assert (again.status, again.retcode, again.retcode_class, again.code) == (
        "FILLED",
        retcodes.NO_CHANGES,
        "NO_CHANGES",
        None,
    )
    assert again.stop_loss == pytest.approx(sl)
    assert "no changes" in again.message


async def test_modify_with_invalid_stops_or_a_gone_position_is_rejected_and_changes_nothing(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    (terminal,) = await terminals(["A1"])
    ticket, price = await bought(nc)
    for stops in ({"stop_loss": round(price + FAR, 5)}, {"take_profit": round(price - FAR, 5)}):
        wrong = await order(nc, modify(mt_ticket=ticket, **stops))  # type: ignore[arg-type]
        assert (wrong.status, wrong.code, wrong.retcode) == ("REJECTED", errors.INVALID_STOPS, retcodes.INVALID_STOPS)
    (now,) = [p for p in await snapshot_of(nc, "A1") if p.mt_ticket == ticket]
    near = await order(nc, modify(mt_ticket=ticket, stop_loss=round(now.current_price - NEAR, 5)))
    assert (near.status, near.code, near.retcode) == ("REJECTED", errors.INVALID_STOPS, retcodes.INVALID_STOPS)
    assert (await terminal.stops())[ticket] == (0.0, 0.0)
    gone = await order(nc, modify(mt_ticket="99999999", stop_loss=1.0))
    assert (gone.status, gone.code, gone.retcode, gone.retcode_class) == (
        "REJECTED",
        errors.ALREADY_CLOSED,
        retcodes.POSITION_CLOSED,
        "ALREADY_CLOSED",
    )
    assert (await order(nc, CloseOrder(account_id="A1", mt_ticket=ticket))).status == "FILLED"
    closed = await order(nc, modify(mt_ticket=ticket, stop_loss=1.0))
    assert (closed.status, closed.code) == ("REJECTED", errors.ALREADY_CLOSED)


async def test_a_repeated_modify_returns_the_first_result_and_modified_is_kept_in_the_events_stream(
    terminals: StartTerminals, nc: NatsClient
) -> None:
    (terminal,) = await terminals(["A1"])
    ticket, price = await bought(nc)
    request = modify(mt_ticket=ticket, take_profit=round(price + FAR, 5), action_id="m-once")
    first = await order(nc, request)
    again = await order(nc, request)
    assert (first.status, again.status, again.duplicate, again.take_profit) == (
        "FILLED",
        "FILLED",
        True,
        first.take_profit,
    )
    assert terminal.received.count("m-once") == 1

    async def kept() -> bool:
        with contextlib.suppress(Exception):
            report = await nc.jetstream().get_last_msg(subjects.EVENTS_STREAM, subjects.event("A1", "MODIFIED"))
            event = unpack(report.data or b"", ModifiedEvent)
            return (event.action_id, event.status) == ("m-once", "SUCCESS")
        return False

    await wait_for(kept, "the MODIFIED report in HB_EVENTS")
