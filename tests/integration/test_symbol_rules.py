"""The symbols' rules end to end with the real gateway, executor, nats-server and valkey-server and simulated
terminals: a terminal's SYMBOL_SPECS reach the executor (kept in ``hb_symbols``), which checks every order
against them before anything is recorded or sent — an off-step, too small or too large volume is INVALID, a
trade mode that forbids the order REJECTED, ``roundVolume`` rounds down and says so — and a rule that changes
is applied to the next order; a terminal that reports no rules is not checked; ``hedgebridge symbols specs``
prints what is known. The rules every terminal kind reports are checked in test_terminal_contract.py."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.service import Executor
from hedgebridge.protocol import (
    AccountSymbols,
    CloseOrder,
    ErrorMessage,
    OpenCommand,
    OpenOrder,
    SymbolSpec,
    SymbolSpecs,
    Welcome,
    errors,
    subjects,
    unpack,
    unpack_event,
)
from hedgebridge.protocol.messages import SymbolTradeMode

from ..conftest import StartSims, executor_config
from ..helpers import RawEa, ea_token, hedgebridge_command, order, wait_for

pytestmark = pytest.mark.integration


def buy(volume: float, account: str = "A1", **fields: object) -> OpenOrder:
    return OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=volume, **fields)  # type: ignore[arg-type]


async def rules_known(executor: Executor, account: str = "A1", symbol: str = "EURUSD", **expected: object) -> None:
    def known() -> bool:
        spec = executor.symbols.spec(account, symbol)
        return spec is not None and all(getattr(spec, k) == v for k, v in expected.items())

    await wait_for(known, f"the executor to know the rules of {symbol} on {account} ({expected})")


async def test_the_executor_refuses_off_rule_volumes_before_anything_is_recorded_or_sent(
    sims: StartSims, nc: NatsClient, executor: Executor
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0, tick_interval_ms=0)
    await rules_known(executor)
    for volume, said in (
        (0.015, "volume 0.015 is not a multiple of the volume step 0.01 of EURUSD on account A1"),
        (0.001, "volume 0.001 is below the minimum 0.01 of EURUSD on account A1"),
        (150.0, "volume 150 is over the maximum 100 of EURUSD on account A1"),
    ):
        result = await order(nc, buy(volume, action_id="off-rule"))
        assert (result.status, result.code, result.kind, result.symbol) == (
            "INVALID",
            errors.INVALID_VOLUME,
            "OPEN",
            "EURUSD",
        )
        assert said in result.message
        assert "allowed: 0.01 to 100 in steps of 0.01" in result.message
        assert (result.position_id, result.action_id, result.requested_volume) == (None, "off-rule", volume)
    assert terminal.account.received == []
    # nothing was recorded: the corrected request may use the same actionId
    fixed = await order(nc, buy(0.02, action_id="off-rule"))
    assert (fixed.status, fixed.volume, fixed.duplicate) == ("FILLED", 0.02, False)
    # a repeat of a filled order is answered from its record, whatever the volume rules say of the repeat
    again = await order(nc, buy(0.015, action_id="off-rule"))
    assert (again.status, again.code) == ("INVALID", errors.DUPLICATE_MISMATCH)
    assert terminal.account.received == ["off-rule"]


async def test_round_volume_rounds_down_and_the_result_says_so(
    sims: StartSims, nc: NatsClient, executor: Executor
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0, tick_interval_ms=0)
    await rules_known(executor)
    result = await order(nc, buy(0.129, action_id="round-1", round_volume=True))
    assert (result.status, result.volume, result.requested_volume, result.rounded_from) == (
        "FILLED",
        0.12,
        0.12,
        0.129,
    )
    assert "volume 0.129 rounded down to 0.12" in result.message
    assert [p.volume for p in terminal.account.positions.values()] == [0.12]
    repeat = await order(nc, buy(0.129, action_id="round-1", round_volume=True))
    assert (repeat.duplicate, repeat.rounded_from, repeat.mt_ticket) == (True, 0.129, result.mt_ticket)
    too_small = await order(nc, buy(0.004, action_id="round-2", round_volume=True))
    assert (too_small.status, too_small.code) == ("INVALID", errors.INVALID_VOLUME)
    assert "rounded down to the step 0.01 is 0, which is below the minimum 0.01" in too_small.message
    # a partial close by ticket (the book knows its symbol) and by positionId (the cache's positions do)
    part = await order(nc, CloseOrder(account_id="A1", mt_ticket=result.mt_ticket, volume=0.015))
    assert (part.status, part.code) == ("INVALID", errors.INVALID_VOLUME)
    await wait_for(lambda: executor.driver.running == {}, "the open to settle")

    async def cached() -> bool:
        positions = await executor.cache.positions("A1")
        return bool(positions)

    await wait_for(cached, "the position in the cache")
    by_id = CloseOrder(account_id="A1", position_id=result.position_id, volume=0.055, round_volume=True)
    closed = await order(nc, by_id)
    assert (closed.status, closed.volume, closed.rounded_from) == ("FILLED", 0.05, 0.055)
    assert terminal.account.received == ["round-1", closed.action_id]
    assert [p.volume for p in terminal.account.positions.values()] == [pytest.approx(0.07)]


async def test_a_changed_rule_applies_to_the_next_order(sims: StartSims, nc: NatsClient, executor: Executor) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0, tick_interval_ms=0)
    await rules_known(executor)
    opened = await order(nc, buy(1.0, action_id="before"))
    assert opened.status == "FILLED"
    await terminal.change_symbol("EURUSD", trade_mode="CLOSE_ONLY")
    await rules_known(executor, trade_mode="CLOSE_ONLY")
    refused = await order(nc, buy(1.0, action_id="close-only"))
    assert (refused.status, refused.code, refused.retcode) == ("REJECTED", errors.TRADE_DISABLED, None)
    assert "only closing positions is allowed on EURUSD on account A1 (trade mode CLOSE_ONLY)" in refused.message
    assert "10044 CLOSE_ONLY" in refused.message
    assert terminal.account.received == ["before"]
    closed = await order(nc, CloseOrder(account_id="A1", mt_ticket=opened.mt_ticket, action_id="closing"))
    assert closed.status == "FILLED"  # closing is what CLOSE_ONLY allows
    await terminal.change_symbol("EURUSD", trade_mode="FULL", volume_step=0.1, volume_min=0.1)
    await rules_known(executor, trade_mode="FULL", volume_step=0.1)
    coarse = await order(nc, buy(0.25))
    assert (coarse.status, coarse.code) == ("INVALID", errors.INVALID_VOLUME)
    assert "allowed: 0.1 to 100 in steps of 0.1 (the nearest are 0.2 and 0.3" in coarse.message
    # what is kept: the KV record the executor wrote, with when each symbol's rules last changed
    entry = await executor.state.symbols.get("A1")
    kept = unpack(entry.value or b"", AccountSymbols)
    assert [s.symbol for s in kept.symbols] == sorted(terminal.account.symbols())
    assert kept.changed_at["EURUSD"] > kept.changed_at["GBPUSD"]
    assert terminal.account.received == ["before", "closing"]


async def test_the_rules_outlive_the_executor_and_a_new_one_reads_them_before_serving(
    sims: StartSims, nc: NatsClient, executor: Executor, nats_server: NatsServer, cache_server: ValkeyServer
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0, tick_interval_ms=0)
    await terminal.change_symbol("GBPUSD", trade_mode="DISABLED")
    await rules_known(executor, symbol="GBPUSD", trade_mode="DISABLED")
    second = Executor(executor_config(nats_server.url, f"{cache_server.url}/0", id="ex-test-2"))
    await second.start()
    try:
        spec = second.symbols.spec("A1", "GBPUSD")
        assert spec is not None
        assert spec.trade_mode == "DISABLED"  # known at start, without a new report
        await executor.stop()  # only the new executor serves now
        sell = OpenOrder(account_id="A1", symbol="GBPUSD", side="SELL", volume=0.1)
        refused = await order(nc, sell)
        assert (refused.status, refused.code) == ("REJECTED", errors.TRADE_DISABLED)
        assert terminal.account.received == []
    finally:
        await second.stop()


async def test_an_expired_order_asked_again_is_checked_against_the_rules_of_now(
    nc: NatsClient, executor: Executor
) -> None:
    """Its rules are kept while the account is offline; an EXPIRED order runs afresh when asked again, checked
    first (here a report arriving meanwhile disabled trading)."""
    first = datetime.now(UTC)
    await executor.symbols.record(SymbolSpecs(timestamp=first, account_id="OFF1", symbols=[spec_of("FULL")]))
    await rules_known(executor, account="OFF1")
    request = buy(0.1, account="OFF1", action_id="exp-1", ttl_ms=100)
    expired = await order(nc, request)
    assert expired.status == "EXPIRED"
    later = SymbolSpecs(timestamp=first + timedelta(seconds=1), account_id="OFF1", symbols=[spec_of("DISABLED")])
    await executor.symbols.record(later)
    await rules_known(executor, account="OFF1", trade_mode="DISABLED")
    again = await order(nc, request)
    assert (again.status, again.code) == ("REJECTED", errors.TRADE_DISABLED)
    stored = await executor.records.get("exp-1")
    assert stored is not None
    assert stored.record.result is not None
    assert stored.record.result.status == "EXPIRED"  # not run again


def spec_of(trade_mode: SymbolTradeMode) -> SymbolSpec:
    return SymbolSpec(
        symbol="EURUSD",
        volume_min=0.01,
        volume_max=100,
        volume_step=0.01,
        contract_size=100_000,
        digits=5,
        trade_mode=trade_mode,
    )


async def test_a_terminal_that_reports_no_rules_is_not_checked(
    ea_url: str, secret: str, nc: NatsClient, executor: Executor
) -> None:
    """An older EA that never sends SYMBOL_SPECS: its orders go to it as before (its trade server checks them)."""
    ea = await RawEa.connect(ea_url, ea_token(secret, "OLD1"))
    beat = ea.keep_alive(0.1)
    try:
        await ea.recv_type(Welcome)
        pending = asyncio.create_task(order(nc, buy(0.015, account="OLD1", timeout_ms=500)))
        command = await ea.recv_type(OpenCommand)
        assert isinstance(command, OpenCommand)
        assert command.volume == 0.015
        result = await pending
        assert result.status == "OUTCOME_UNKNOWN"  # sent, never answered by this bare client
        assert executor.symbols.rules("OLD1") is None
    finally:
        beat.cancel()
        await ea.close()


async def test_the_gateway_publishes_rules_and_refuses_malformed_ones(ea_url: str, secret: str, nc: NatsClient) -> None:
    seen: list[SymbolSpecs] = []

    async def collect(msg: object) -> None:
        event = unpack_event(msg.data)  # type: ignore[attr-defined]
        assert isinstance(event, SymbolSpecs)
        seen.append(event)

    sub = await nc.subscribe(subjects.event("R1", "SYMBOL_SPECS"), cb=collect)
    ea = await RawEa.connect(ea_url, ea_token(secret, "R1"))
    try:
        await ea.recv_type(Welcome)
        spec = {
            "symbol": "EURUSD.m", "volumeMin": 0.1, "volumeMax": 50, "volumeStep": 0.1, "contractSize": 100000,
            "digits": 5, "tradeMode": "LONG_ONLY", "fillingModes": ["IOC"], "swapLong": -2.1,
        }  # fmt: skip
        frame = {"type": "SYMBOL_SPECS", "timestamp": "2026-11-24T10:00:00Z", "accountId": "R1", "symbols": [spec]}
        await ea.send_raw(json.dumps(frame))
        await wait_for(lambda: len(seen) == 1, "the SYMBOL_SPECS event on NATS")
        assert (seen[0].symbols[0].symbol, seen[0].symbols[0].trade_mode) == ("EURUSD.m", "LONG_ONLY")
        await ea.send_raw(json.dumps({**frame, "symbols": [{**spec, "volumeStep": -1}]}))
        error = await ea.recv_type(ErrorMessage)
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.field) == (errors.INVALID_FIELD, "symbols[0].volumeStep")
        assert error.ref_type == "SYMBOL_SPECS"
        assert len(seen) == 1
    finally:
        await sub.unsubscribe()
        await ea.close()


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "HEDGEBRIDGE_HOME": "/nonexistent-hedgebridge-home"}
    process = await asyncio.create_subprocess_exec(
        *hedgebridge_command(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_symbols_specs_prints_what_the_executor_checks_against(
    sims: StartSims, executor: Executor, nats_server: NatsServer
) -> None:
    (terminal,) = await sims(["A1"], fill_latency_ms=0, tick_interval_ms=0, symbols=("EURUSD", "XAUUSD"))
    await terminal.change_symbol("XAUUSD", volume_step=0.1, volume_min=0.1, trade_mode="SHORT_ONLY")
    await rules_known(executor, symbol="XAUUSD", trade_mode="SHORT_ONLY")
    code, out, err = await run_cli("symbols", "specs", "--account", "A1", "--nats-url", nats_server.url)
    assert (code, err) == (0, "")
    header, eurusd, gold = out.splitlines()
    assert header.split() == [
        "symbol", "volume", "min", "volume", "max", "step", "contract", "digits", "trade", "mode", "filling", "changed",
    ]  # fmt: skip
    assert eurusd.split()[:8] == ["EURUSD", "0.01", "100", "0.01", "100000", "5", "FULL", "FOK,IOC"]
    assert gold.split()[:8] == ["XAUUSD", "0.1", "100", "0.1", "100", "2", "SHORT_ONLY", "FOK,IOC"]
    code, out, _ = await run_cli("symbols", "specs", "--account", "A1", "--json", "--nats-url", nats_server.url)
    shown = json.loads(out)
    assert code == 0
    assert shown["accountId"] == "A1"
    assert [s["symbol"] for s in shown["symbols"]] == ["EURUSD", "XAUUSD"]
    assert {k: shown["symbols"][1][k] for k in ("volumeMin", "volumeStep", "tradeMode", "contractSize")} == {
        "volumeMin": 0.1,
        "volumeStep": 0.1,
        "tradeMode": "SHORT_ONLY",
        "contractSize": 100.0,
    }
    assert shown["symbols"][1]["changedAt"].endswith("Z")
    code, out, err = await run_cli("symbols", "specs", "--account", "NOBODY", "--nats-url", nats_server.url)
    assert (code, out) == (1, "")
    assert "no rules reported for any symbol on account NOBODY" in err
    url = nats_server.url
    code, _, err = await run_cli("symbols", "specs", "--account", "A1", "--symbol", "USDJPY", "--nats-url", url)
    assert code == 1
    assert "no rules reported for USDJPY on account A1" in err
