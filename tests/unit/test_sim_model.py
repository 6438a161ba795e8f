"""The simulated account (pure): fills, slippage, rejects, tickets, profit, balances and idempotency."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import msgspec

from hedgebridge.protocol import CloseCommand, CloseMetadata, OpenCommand, OpenMetadata
from hedgebridge.sim import PriceFeed, SimAccount, SimConfig

T = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def account(**config: object) -> SimAccount:
    cfg = SimConfig(**config)  # type: ignore[arg-type]
    rng = random.Random(1)
    return SimAccount("A1", cfg, PriceFeed(cfg.symbols, rng), rng)


def open_cmd(side: str = "BUY", symbol: str = "EURUSD", volume: float = 1.0, action: str | None = None) -> OpenCommand:
    return OpenCommand(
        timestamp=T,
        account_id="A1",
        position_id=f"p-{action or side}",
        action_id=action,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        volume=volume,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u"),
    )


def close_cmd(position_id: str = "", ticket: str | None = None, action: str | None = None) -> CloseCommand:
    return CloseCommand(
        timestamp=T,
        account_id="A1",
        position_id=position_id or "x",
        action_id=action,
        mt_ticket=ticket,
        metadata=CloseMetadata(exit_reason="test", user_id="u"),
    )


def test_fills_at_the_touch_with_increasing_tickets() -> None:
    sim = account()
    bid, ask = sim.feed.quote("EURUSD")
    buy = sim.open(open_cmd("BUY", action="b"), T)
    sell = sim.open(open_cmd("SELL", action="s"), T)
    assert (buy.status, buy.price, buy.mt_ticket) == ("SUCCESS", ask, "50000000")
    assert (sell.status, sell.price, sell.mt_ticket) == ("SUCCESS", bid, "50000001")
    assert [p.position_id for p in sim.position_update(T).positions] == ["p-b", "p-s"]


def test_slippage_is_against_the_trader_and_bounded() -> None:
    sim = account(slippage_points=5)
    bid, ask = sim.feed.quote("EURUSD")
    for i in range(200):
        buy = sim.open(open_cmd("BUY", action=f"b{i}"), T)
        sell = sim.open(open_cmd("SELL", action=f"s{i}"), T)
        assert buy.price is not None
        assert sell.price is not None
        assert ask <= buy.price <= ask + 5 * 0.00001 + 1e-12
        assert bid - 5 * 0.00001 - 1e-12 <= sell.price <= bid


def test_rejects_and_invalid_volume() -> None:
    rejected = account(reject_rate=1.0).open(open_cmd(action="r"), T)
    assert (rejected.status, rejected.error_code, rejected.mt_ticket) == ("FAILED", 10006, None)
    sim = account(max_volume=10)
    too_big = sim.open(open_cmd(volume=11, action="v"), T)
    assert (too_big.status, too_big.error_code) == ("FAILED", 10014)
    assert sim.positions == {}


def test_close_by_position_or_ticket_and_profit() -> None:
    sim = account()
    sim.feed.mids["EURUSD"] = 1.10000
    opened = sim.open(open_cmd("BUY", action="o1"), T)
    sim.feed.mids["EURUSD"] = 1.10100
    bid, _ = sim.feed.quote("EURUSD")
    closed = sim.close(close_cmd("p-o1", action="c1"), T)
    assert closed.status == "SUCCESS"
    assert opened.price is not None
    assert closed.profit == round((bid - opened.price) * 100_000, 2)
    assert sim.balance == round(10_000 + (closed.profit or 0), 2)

    sold = sim.open(open_cmd("SELL", symbol="USDJPY", action="o2"), T)
    assert sold.price is not None
    sim.feed.mids["USDJPY"] -= 0.5
    _, ask = sim.feed.quote("USDJPY")
    by_ticket = sim.close(close_cmd(ticket=sold.mt_ticket, action="c2"), T)
    assert by_ticket.profit == round((sold.price - ask) * 100_000 / ask, 2)
    assert by_ticket.profit is not None
    assert by_ticket.profit > 0

    missing = sim.close(close_cmd("p-none", action="c3"), T)
    assert (missing.status, missing.error_code) == ("FAILED", 10036)


def test_a_repeated_action_id_is_answered_with_the_first_result() -> None:
    sim = account()
    first = sim.open(open_cmd(action="same"), T)
    assert sim.open(open_cmd(action="same"), T) == msgspec.structs.replace(first, already_executed=True)
    assert len(sim.positions) == 1
    closed = sim.close(close_cmd("p-same", action="close-1"), T)
    assert sim.close(close_cmd("p-same", action="close-1"), T) == msgspec.structs.replace(closed, already_executed=True)
    assert closed.status == "SUCCESS"
    assert sim.close(close_cmd("p-same", action="close-2"), T).status == "FAILED"


def test_account_report() -> None:
    sim = account()
    empty = sim.account_update(T)
    assert (empty.balance, empty.equity, empty.margin, empty.margin_level) == (10_000, 10_000, 0, None)
    sim.open(open_cmd("BUY", action="m"), T)
    report = sim.account_update(T)
    assert report.margin > 0
    assert report.margin_level == round(report.equity / report.margin * 100, 2)
    assert report.free_margin == round(report.equity - report.margin, 2)
    floating = sim.position_update(T).positions[0].profit
    assert report.equity == round(report.balance + floating, 2)


def test_the_account_reports_the_rules_of_what_it_quotes_trades_and_holds() -> None:
    sim = account(symbols=("EURUSD", "XAUUSD"), max_volume=50)
    specs = sim.symbol_specs(T)
    assert (specs.account_id, [s.symbol for s in specs.symbols]) == ("A1", ["EURUSD", "XAUUSD"])
    eurusd, gold = specs.symbols
    assert (eurusd.volume_min, eurusd.volume_max, eurusd.volume_step) == (0.01, 50, 0.01)
    assert (eurusd.contract_size, eurusd.digits, eurusd.trade_mode) == (100_000, 5, "FULL")
    assert (gold.contract_size, gold.digits, eurusd.filling_modes) == (100, 2, ["FOK", "IOC"])
    sim.open(open_cmd(symbol="GBPUSD", action="g"), T)
    assert [s.symbol for s in sim.symbol_specs(T).symbols] == ["EURUSD", "GBPUSD", "XAUUSD"]
    sim.set_spec("EURUSD", volume_step=0.1, volume_min=0.1)
    assert sim.symbol_specs(T, ["EURUSD"]).symbols == [sim.spec("EURUSD")]
    assert sim.spec("EURUSD").volume_step == 0.1


def test_the_trade_server_keeps_to_the_symbols_rules() -> None:
    sim = account()
    for volume in (0.015, 0.001, 100.01):
        refused = sim.open(open_cmd(volume=volume, action=f"v{volume}"), T)
        assert (refused.status, refused.error_code) == ("FAILED", 10014)
    assert sim.open(open_cmd(volume=0.1 + 0.2, action="noise"), T).status == "SUCCESS"
    sim.set_spec("EURUSD", trade_mode="LONG_ONLY")
    assert sim.open(open_cmd("SELL", action="s"), T).error_code == 10042
    assert sim.open(open_cmd("BUY", action="b"), T).status == "SUCCESS"
    sim.set_spec("EURUSD", trade_mode="SHORT_ONLY")
    assert sim.open(open_cmd("BUY", action="b2"), T).error_code == 10043
    sim.set_spec("EURUSD", trade_mode="CLOSE_ONLY")
    assert sim.open(open_cmd("SELL", action="s2"), T).error_code == 10044
    partial = CloseCommand(
        timestamp=T,
        account_id="A1",
        position_id="p-b",
        action_id="c-part",
        volume=0.055,
        metadata=CloseMetadata(exit_reason="test", user_id="u"),
    )
    assert sim.close(partial, T).error_code == 10014
    assert sim.close(close_cmd("p-b", action="c-b"), T).status == "SUCCESS"  # closing is allowed
    sim.set_spec("EURUSD", trade_mode="DISABLED")
    assert sim.open(open_cmd("BUY", action="b3"), T).error_code == 10017
    assert sim.close(close_cmd("p-noise", action="c-n"), T).error_code == 10017
