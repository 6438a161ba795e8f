"""The simulated trade server's checks (pure): every check with the retcode MT5's trade server answers, the order
the checks of an opening deal, a closing deal and a change of stops are made in, and the simulated account
applying them (a closed market, the freeze level, the margin)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from hedgebridge.protocol import (
    CloseCommand,
    CloseMetadata,
    ModifyCommand,
    ModifyMetadata,
    OpenCommand,
    OpenMetadata,
    SymbolSpec,
    retcodes,
)
from hedgebridge.protocol.messages import SymbolTradeMode
from hedgebridge.sim import PriceFeed, SimAccount, SimConfig, checks

T = datetime(2026, 12, 7, tzinfo=UTC)
QUOTE = (1.08494, 1.08506)  # bid, ask
POINT = 0.00001


def spec(trade_mode: SymbolTradeMode = "FULL", **rules: float) -> SymbolSpec:
    values = {"volume_min": 0.01, "volume_max": 50.0, "volume_step": 0.01, **rules}
    return SymbolSpec(symbol="EURUSD", contract_size=100_000, digits=5, trade_mode=trade_mode, **values)  # type: ignore[arg-type]


def test_the_retcodes_are_mt5_s() -> None:
    assert (retcodes.INVALID_VOLUME, retcodes.INVALID_STOPS, retcodes.TRADE_DISABLED) == (10014, 10016, 10017)
    assert (retcodes.MARKET_CLOSED, retcodes.NO_MONEY, retcodes.NO_CHANGES, retcodes.FROZEN) == (
        10018,
        10019,
        10025,
        10029,
    )
    assert (retcodes.POSITION_CLOSED, retcodes.INVALID_CLOSE_VOLUME) == (10036, 10038)
    assert (retcodes.LONG_ONLY, retcodes.SHORT_ONLY, retcodes.CLOSE_ONLY) == (10042, 10043, 10044)
    assert set(checks.TEXT) == set(retcodes.NAMES)  # every code has the trade server's description
    assert checks.text(retcodes.FROZEN) == "Order or position frozen"
    assert checks.text(12345) == "Request failed"


def test_a_closed_market_refuses_everything() -> None:
    assert checks.market(True) is None
    assert checks.market(False) == retcodes.MARKET_CLOSED


@pytest.mark.parametrize(
    ("mode", "opening", "expected"),
    [
        ("FULL", "BUY", None),
        ("FULL", None, None),
        ("DISABLED", "BUY", retcodes.TRADE_DISABLED),
        ("DISABLED", None, retcodes.TRADE_DISABLED),
        ("CLOSE_ONLY", "SELL", retcodes.CLOSE_ONLY),
        ("CLOSE_ONLY", None, None),
        ("LONG_ONLY", "SELL", retcodes.LONG_ONLY),
        ("LONG_ONLY", "BUY", None),
        ("LONG_ONLY", None, None),
        ("SHORT_ONLY", "BUY", retcodes.SHORT_ONLY),
        ("SHORT_ONLY", "SELL", None),
        ("SHORT_ONLY", None, None),
    ],
)
def test_the_trade_mode(mode: str, opening: str | None, expected: int | None) -> None:
    assert checks.trade_mode(mode, opening) == expected


@pytest.mark.parametrize(
    ("lots", "expected"),
    [
        (0.01, None),
        (0.3, None),  # 29.999999999999996 steps: float noise, on the step
        (50.0, None),
        (0.009, retcodes.INVALID_VOLUME),  # below the minimum
        (50.01, retcodes.INVALID_VOLUME),  # over the maximum
        (0.015, retcodes.INVALID_VOLUME),  # off the step
        (0.0, retcodes.INVALID_VOLUME),
    ],
)
def test_the_volume_limits_and_step(lots: float, expected: int | None) -> None:
    assert checks.volume(lots, 0.01, 50.0, 0.01) == expected


def test_a_close_of_more_than_the_position_holds() -> None:
    assert checks.close_volume(None, 0.5) is None
    assert checks.close_volume(0.5, 0.5) is None
    assert checks.close_volume(0.51, 0.5) == retcodes.INVALID_CLOSE_VOLUME


def test_the_freeze_level_holds_stops_near_the_closing_price() -> None:
    bid, ask = QUOTE
    level = 10 * POINT
    assert checks.frozen("BUY", bid - 5 * POINT, 0.0, bid, ask, level) == retcodes.FROZEN  # stop loss 5 points away
    assert checks.frozen("BUY", 0.0, bid + 5 * POINT, bid, ask, level) == retcodes.FROZEN
    assert checks.frozen("BUY", bid - 10 * POINT, bid + 10 * POINT, bid, ask, level) is None  # at the level: free
    assert checks.frozen("SELL", ask + 5 * POINT, 0.0, bid, ask, level) == retcodes.FROZEN  # a SELL's: the ask
    assert checks.frozen("SELL", ask + 17 * POINT, 0.0, bid, ask, level) is None  # 17 points above the ask
    assert checks.frozen("BUY", 0.0, 0.0, bid, ask, level) is None  # no stop, nothing frozen
    assert checks.frozen("BUY", bid - POINT, 0.0, bid, ask, 0.0) is None  # a level of 0 freezes nothing


def test_the_margin() -> None:
    assert checks.margin(1085.0, 1085.0) is None
    assert checks.margin(1085.01, 1085.0) == retcodes.NO_MONEY


def test_no_changes() -> None:
    assert checks.no_changes((1.0, 2.0), (1.0, 2.0)) == retcodes.NO_CHANGES
    assert checks.no_changes((1.0, 0.0), (1.0, 2.0)) is None


def test_stops_negative_wrong_side_or_too_near() -> None:
    level = 20 * POINT
    assert checks.open_refusal(spec(), "BUY", 0.1, quote=QUOTE, sl=1.08, tp=1.09, stops_level=level) is None
    for sl, tp in [(-1.0, 0.0), (0.0, -1.0), (1.085, 0.0), (1.08490, 0.0), (0.0, 1.08494)]:
        refused = checks.open_refusal(spec(), "BUY", 0.1, quote=QUOTE, sl=sl, tp=tp, stops_level=level)
        assert refused == retcodes.INVALID_STOPS, (sl, tp)


def test_an_opening_deal_is_checked_in_the_trade_server_s_order() -> None:
    bad = {"quote": QUOTE, "sl": 1.2, "required_margin": 2.0, "free_margin": 1.0}
    assert checks.open_refusal(spec("DISABLED"), "BUY", 0.015, market_open=False, **bad) == retcodes.MARKET_CLOSED  # type: ignore[arg-type]
    assert checks.open_refusal(spec("DISABLED"), "BUY", 0.015, **bad) == retcodes.TRADE_DISABLED  # type: ignore[arg-type]
    assert checks.open_refusal(spec(), "BUY", 0.015, **bad) == retcodes.INVALID_VOLUME  # type: ignore[arg-type]
    assert checks.open_refusal(spec(), "BUY", 0.01, **bad) == retcodes.INVALID_STOPS  # type: ignore[arg-type]
    assert checks.open_refusal(spec(), "BUY", 0.01, quote=QUOTE, required_margin=2.0, free_margin=1.0) == 10019
    assert checks.open_refusal(spec(), "BUY", 0.01, quote=QUOTE, required_margin=2.0) is None  # margin unchecked


def test_a_closing_deal_is_checked_in_the_trade_server_s_order() -> None:
    assert checks.close_refusal(spec("DISABLED"), 0.015, 0.01, market_open=False) == retcodes.MARKET_CLOSED
    assert checks.close_refusal(spec("DISABLED"), 0.015, 0.01) == retcodes.TRADE_DISABLED
    assert checks.close_refusal(spec("CLOSE_ONLY"), 0.015, 0.01) == retcodes.INVALID_VOLUME
    assert checks.close_refusal(spec(), 0.02, 0.01) == retcodes.INVALID_CLOSE_VOLUME
    assert checks.close_refusal(spec(), None, 0.01) is None


def test_a_change_of_stops_is_checked_in_the_trade_server_s_order() -> None:
    bid, _ = QUOTE
    held = (bid - 5 * POINT, 0.0)  # within a freeze level of 10 points
    kw = {"quote": QUOTE, "stops_level": 20 * POINT, "freeze_level": 10 * POINT}
    assert checks.modify_refusal(spec("DISABLED"), "BUY", held, held, market_open=False, **kw) == 10018  # type: ignore[arg-type]
    assert checks.modify_refusal(spec("DISABLED"), "BUY", held, held, **kw) == retcodes.TRADE_DISABLED  # type: ignore[arg-type]
    assert checks.modify_refusal(spec(), "BUY", held, held, **kw) == retcodes.NO_CHANGES  # type: ignore[arg-type]
    assert checks.modify_refusal(spec(), "BUY", (1.08, 0.0), held, **kw) == retcodes.FROZEN  # type: ignore[arg-type]
    assert checks.modify_refusal(spec(), "BUY", (1.0849, 0.0), (0.0, 0.0), **kw) == retcodes.INVALID_STOPS  # type: ignore[arg-type]
    assert checks.modify_refusal(spec("CLOSE_ONLY"), "BUY", (1.08, 0.0), (0.0, 0.0), **kw) is None  # type: ignore[arg-type]


# --- the simulated account applies them ------------------------------------------------------------------------


def account(**config: object) -> SimAccount:
    cfg = SimConfig(**config)  # type: ignore[arg-type]
    rng = random.Random(1)
    return SimAccount("A1", cfg, PriceFeed(cfg.symbols, rng), rng)


def open_cmd(action: str, volume: float = 1.0, **stops: float) -> OpenCommand:
    return OpenCommand(
        timestamp=T,
        account_id="A1",
        position_id=f"p-{action}",
        action_id=action,
        symbol="EURUSD",
        side="BUY",
        volume=volume,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u"),
        **stops,  # type: ignore[arg-type]
    )


def stop_loss_at(price: float, ticket: str | None) -> ModifyCommand:
    return ModifyCommand(timestamp=T, account_id="A1", position_id="p-o1", action_id="m1", mt_ticket=ticket,
                         stop_loss=price, metadata=ModifyMetadata(user_id=""))  # fmt: skip


def test_a_closed_market_refuses_opens_closes_and_stops_until_it_opens() -> None:
    sim = account()
    opened = sim.open(open_cmd("o1"), T)
    sim.set_market("EURUSD", False)
    refused = sim.open(open_cmd("o2"), T)
    assert (refused.status, refused.error_code, refused.error_message) == ("FAILED", 10018, "Market is closed")
    close = CloseCommand(timestamp=T, account_id="A1", position_id="p-o1", action_id="c1", mt_ticket=opened.mt_ticket,
                         metadata=CloseMetadata(exit_reason="", user_id=""))  # fmt: skip
    modify = stop_loss_at(1.0, opened.mt_ticket)
    assert sim.close(close, T).error_code == retcodes.MARKET_CLOSED
    assert sim.modify(modify, T).error_code == retcodes.MARKET_CLOSED
    sim.set_market("EURUSD", True)
    assert (sim.modify(modify, T).status, sim.close(close, T).status) == ("SUCCESS", "SUCCESS")  # the same actionIds


def test_stops_within_the_freeze_level_may_not_change() -> None:
    sim = account(freeze_level_points=30, stops_level_points=20)
    bid, _ = sim.feed.quote("EURUSD")
    opened = sim.open(open_cmd("o1", stop_loss=round(bid - 25 * POINT, 5)), T)
    assert opened.status == "SUCCESS"
    modify = stop_loss_at(1.0, opened.mt_ticket)
    frozen = sim.modify(modify, T)
    assert (frozen.status, frozen.error_code, frozen.stop_loss) == ("FAILED", 10029, opened.stop_loss)
    sim.feed.mids["EURUSD"] += 20 * POINT  # the stop loss is 45 points away now
    assert sim.modify(modify, T).status == "SUCCESS"


def test_the_margin_is_checked_when_asked() -> None:
    assert account().open(open_cmd("big", volume=50.0), T).status == "SUCCESS"  # unchecked by default
    sim = account(check_margin=True, balance=10_000.0, leverage=100)  # 1 lot of EURUSD holds ~1,085
    assert sim.open(open_cmd("o1", volume=9.0), T).status == "SUCCESS"
    refused = sim.open(open_cmd("o2", volume=0.5), T)
    assert (refused.status, refused.error_code) == ("FAILED", retcodes.NO_MONEY)
    assert sim.open(open_cmd("o3", volume=0.1), T).status == "SUCCESS"
    assert len(sim.positions) == 2
