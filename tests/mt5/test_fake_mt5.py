"""The simulated ``MetaTrader5`` package agrees with the real one (``mt5_wheel.json``, extracted from the wheel by
``extract_wheel.py``), and so do the bridge's constants and the protocol's retcodes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hedgebridge.mt5bridge import translate
from hedgebridge.protocol import retcodes

from . import fake_mt5
from .fake_mt5 import DEFAULT_DEAL_DELAY_S, DEFAULT_SERVER_OFFSET_S, NAMED_TUPLES, FakeFault, FakeMT5

WHEEL: dict[str, Any] = json.loads((Path(__file__).with_name("mt5_wheel.json")).read_text())
FAMILIES = tuple(
    f"{p}_" if not p.endswith(("BUY", "SELL")) else p
    for p in ("TRADE_RETCODE", "TRADE_ACTION", "ORDER_TYPE", "ORDER_FILLING", "ORDER_TIME", "POSITION_TYPE",
              "DEAL_ENTRY", "DEAL_TYPE_BUY", "DEAL_TYPE_SELL", "DEAL_REASON", "ACCOUNT_MARGIN_MODE",
              "ACCOUNT_TRADE_MODE", "RES")
)  # fmt: skip


def test_the_extract_names_the_version_the_fake_claims() -> None:
    assert WHEEL["package"] == "MetaTrader5"
    assert WHEEL["version"] == FakeMT5.__version__
    assert WHEEL["version"] in (fake_mt5.__doc__ or "")
    assert len(WHEEL["constants"]) > 90


def test_every_constant_of_the_package_has_the_same_value_in_the_fake() -> None:
    constants: dict[str, int] = WHEEL["constants"]
    assert {name: getattr(FakeMT5, name, None) for name in constants} == constants
    own = {n for n in dir(FakeMT5) if n.isupper() and n.startswith(FAMILIES)}
    assert own - set(constants) == set()  # the fake invents none


def test_the_bridge_and_the_protocol_use_the_package_values() -> None:
    constants: dict[str, int] = WHEEL["constants"]
    shared = [n for n in vars(translate) if n.isupper() and n in constants]
    assert len(shared) >= 20
    assert {n: getattr(translate, n) for n in shared} == {n: constants[n] for n in shared}
    assert constants["RES_E_INTERNAL_FAIL"] == translate.RES_E_INTERNAL_FAIL_LAST
    assert constants["RES_E_INTERNAL_FAIL_TIMEOUT"] == translate.RES_E_INTERNAL_FAIL_FIRST
    for name, value in constants.items():
        if name.startswith("TRADE_RETCODE_"):
            assert getattr(retcodes, name.removeprefix("TRADE_RETCODE_")) == value, name


def test_the_named_tuples_are_the_package_types_with_its_field_names() -> None:
    assert set(NAMED_TUPLES) <= set(WHEEL["types"])
    fields = set(WHEEL["fields"])
    for name, kind in NAMED_TUPLES.items():
        missing = [f for f in kind._fields if f not in fields]  # type: ignore[attr-defined]
        assert missing == [], f"{name}: {missing}"
        assert getattr(FakeMT5(), name) is kind


def test_calls_fail_as_the_package_does() -> None:
    mt5 = FakeMT5(login=42, password="pw")
    assert mt5.account_info() is None
    assert mt5.last_error() == (FakeMT5.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
    assert mt5.initialize(login=42, password="wrong") is False
    assert mt5.last_error()[0] == FakeMT5.RES_E_AUTH_FAILED
    assert mt5.initialize(login=42, password="pw", timeout=1000) is True
    assert mt5.order_send({"action": 1, "symbol": "EURUSD", "volume": "1"}) is None
    assert mt5.last_error() == (FakeMT5.RES_E_INVALID_PARAMS, 'Invalid "volume" argument')
    assert mt5.order_send({"action": 1, "symbol": "EURUSD", "volume": 1.0, "comment": "x" * 32}) is None
    mt5.lose_terminal()
    assert mt5.positions_get() is None
    assert mt5.last_error()[0] == FakeMT5.RES_E_INTERNAL_FAIL_CONNECT


def _buy(mt5: FakeMT5, price: float, **extra: Any) -> Any:
    request = {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "price": price, "deviation": 10,
               "magic": 7, "comment": "hb-test", "type_filling": 0, **extra}  # fmt: skip
    return mt5.order_send(request)


def test_a_fill_writes_a_position_and_deals_and_a_close_realises_the_profit() -> None:
    mt5 = FakeMT5(deal_delay_s=0)
    mt5.initialize()
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick is not None
    result = _buy(mt5, tick.ask)
    assert (result.retcode, result.volume, result.price, result.request.comment) == (10009, 0.1, tick.ask, "hb-test")
    (position,) = mt5.positions_get() or ()
    assert (position.ticket, position.magic, position.comment, position.type) == (result.order, 7, "hb-test", 0)
    assert mt5.history_deals_get(ticket=result.deal) == ()  # ``ticket`` names the order (DEAL_ORDER), not the deal
    (deal,) = mt5.history_deals_get(ticket=result.order) or ()
    assert (deal.ticket, deal.order) == (result.deal, result.order)
    assert (deal.entry, deal.position_id, deal.comment) == (FakeMT5.DEAL_ENTRY_IN, position.ticket, "hb-test")
    for _ in range(50):
        mt5.step()
    bid = mt5.symbol_info_tick("EURUSD").bid  # type: ignore[union-attr]
    close = {"action": 1, "position": position.ticket, "symbol": "EURUSD", "volume": 0.1, "type": 1, "price": bid,
             "deviation": 10, "magic": 7, "comment": "hb-close", "type_filling": 0}  # fmt: skip
    closed = mt5.order_send(close)
    assert closed is not None
    assert closed.retcode == 10009
    assert mt5.positions_get() == ()
    out = mt5.history_deals_get(position=position.ticket) or ()
    assert [d.entry for d in out] == [FakeMT5.DEAL_ENTRY_IN, FakeMT5.DEAL_ENTRY_OUT]
    info = mt5.account_info()
    assert info is not None
    assert (out[0].commission, out[1].commission) == (0.0, -0.7)  # the round turn, charged on the closing deal
    assert info.balance == pytest.approx(10_000 + out[1].profit + out[1].commission)
    assert mt5.order_send(close).retcode == FakeMT5.TRADE_RETCODE_POSITION_CLOSED  # type: ignore[union-attr]


def test_trade_server_answers_requotes_faults_and_lost_results() -> None:
    mt5 = FakeMT5()
    mt5.initialize()
    ask = mt5.symbol_info_tick("EURUSD").ask  # type: ignore[union-attr]
    assert _buy(mt5, ask + 0.001).retcode == FakeMT5.TRADE_RETCODE_REQUOTE  # 100 points off, deviation 10
    assert _buy(mt5, ask, type_filling=FakeMT5.ORDER_FILLING_IOC).retcode == FakeMT5.TRADE_RETCODE_INVALID_FILL
    assert _buy(mt5, ask, volume=0.015).retcode == FakeMT5.TRADE_RETCODE_INVALID_VOLUME
    mt5.faults.extend([FakeFault(retcode=10019), FakeFault(fill_ratio=0.5), FakeFault(lost_result=True)])
    assert _buy(mt5, ask).retcode == 10019
    partial = _buy(mt5, ask)
    assert (partial.retcode, partial.volume) == (10010, 0.05)
    assert _buy(mt5, ask) is None
    assert mt5.last_error()[0] == FakeMT5.RES_E_INTERNAL_FAIL_RECEIVE
    assert sorted(mt5.open_positions().values()) == [0.05, 0.1]  # the lost result executed
    assert mt5.sent("hb-test") == 6


def test_times_are_the_trade_servers_clock_and_so_are_history_ranges() -> None:
    assert FakeMT5().server_offset_s == DEFAULT_SERVER_OFFSET_S != 0  # a test cannot pass by taking them for UTC
    mt5 = FakeMT5(server_offset_s=2 * 3600, deal_delay_s=0)
    mt5.initialize()
    mt5.step()
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick is not None
    assert tick.time_msc / 1000 - time.time() == pytest.approx(7200, abs=2)
    assert tick.time == tick.time_msc // 1000
    assert mt5.symbol_info("EURUSD").time == tick.time  # type: ignore[union-attr]
    assert mt5.symbol_info_tick("EURUSD") == tick  # no new price: the last tick's time stands still
    result = _buy(mt5, tick.ask)
    (position,) = mt5.positions_get() or ()
    assert position.time_msc / 1000 - time.time() == pytest.approx(7200, abs=2)
    assert (position.time, position.time_update_msc) == (position.time_msc // 1000, position.time_msc)
    (deal,) = mt5.history_deals_get(ticket=result.order) or ()
    assert deal.time - time.time() == pytest.approx(7200, abs=2)
    utc_now = datetime.now(UTC)
    assert mt5.history_deals_get(utc_now - timedelta(hours=1), utc_now + timedelta(minutes=1)) == ()  # UTC misses it
    server_now = datetime.fromtimestamp(mt5.server_msc() / 1000, UTC)
    assert mt5.history_deals_get(server_now - timedelta(hours=1), server_now + timedelta(minutes=1)) == (deal,)
    assert mt5.history_deals_get(deal.time, deal.time) == (deal,)  # seconds, bounds included
    mt5.age(3600)
    (older,) = mt5.history_deals_get(ticket=result.order) or ()
    assert (older.time, older.time_msc) == (deal.time - 3600, deal.time_msc - 3_600_000)
    assert mt5.positions_get()[0].time_msc == position.time_msc - 3_600_000  # type: ignore[index]


def test_deals_reach_the_history_after_order_send_answers() -> None:
    assert FakeMT5().deal_delay_s == DEFAULT_DEAL_DELAY_S > 0
    mt5 = FakeMT5(deal_delay_s=0.3)
    mt5.initialize()
    ask = mt5.symbol_info_tick("EURUSD").ask  # type: ignore[union-attr]
    result = _buy(mt5, ask)
    assert result.deal > 0
    assert mt5.positions_get() != ()  # the position is there at once
    assert mt5.history_deals_get(ticket=result.order) == ()  # its deal is not, yet
    assert mt5.history_deals_get(position=result.order) == ()
    assert mt5.history_deals_get(0, 2**40) == ()
    deadline = time.monotonic() + 5
    while not mt5.history_deals_get(ticket=result.order) and time.monotonic() < deadline:
        time.sleep(0.01)
    (deal,) = mt5.history_deals_get(ticket=result.order) or ()
    assert deal.ticket == result.deal
    mt5.faults.append(FakeFault(deal_delay_s=60, deal_unknown=True))  # one order: a very late deal, no ticket
    late = _buy(mt5, ask)
    assert (late.retcode, late.deal) == (10009, 0)
    assert mt5.history_deals_get(ticket=late.order) == ()


def test_a_reopen_gives_the_position_a_new_ticket_and_keeps_its_identifier() -> None:
    mt5 = FakeMT5(deal_delay_s=0)
    mt5.initialize()
    opened = _buy(mt5, mt5.symbol_info_tick("EURUSD").ask)  # type: ignore[union-attr]
    balance = mt5.account_info().balance  # type: ignore[union-attr]
    ticket = mt5.reopen(opened.order, swap=-1.25)  # the broker charges swap by re-opening the position
    assert ticket != opened.order
    (position,) = mt5.positions_get() or ()
    assert (position.ticket, position.identifier, position.swap) == (ticket, opened.order, -1.25)
    assert mt5.positions_get(ticket=opened.order) == ()  # ``ticket`` selects by POSITION_TICKET
    assert mt5.positions_get(ticket=ticket) == (position,)
    assert mt5.positions_get(symbol="EURUSD", ticket=opened.order) == (position,)  # with a symbol, ticket is ignored
    assert mt5.open_positions() == {opened.order: 0.1}
    info = mt5.account_info()
    assert info is not None
    assert info.equity == pytest.approx(balance + position.profit - 1.25, abs=0.011)
    bid = mt5.symbol_info_tick("EURUSD").bid  # type: ignore[union-attr]
    close = {"action": 1, "position": opened.order, "symbol": "EURUSD", "volume": 0.1, "type": 1, "price": bid,
             "deviation": 10, "magic": 7, "comment": "hb-close", "type_filling": 0}  # fmt: skip
    assert mt5.order_send(close).retcode == FakeMT5.TRADE_RETCODE_POSITION_CLOSED  # type: ignore[union-attr]
    assert mt5.order_send(close | {"position": ticket}).retcode == 10009  # type: ignore[union-attr]
    (_, out) = mt5.history_deals_get(position=opened.order) or ()
    assert (out.entry, out.position_id, out.swap) == (FakeMT5.DEAL_ENTRY_OUT, opened.order, -1.25)
    assert mt5.account_info().balance == pytest.approx(balance + out.profit + out.commission - 1.25)  # type: ignore[union-attr]


def test_a_symbols_rules_change_and_the_trade_server_keeps_to_them() -> None:
    mt5 = FakeMT5()
    mt5.initialize()
    info = mt5.symbol_info("EURUSD")
    assert info is not None
    assert (info.volume_min, info.volume_max, info.volume_step, info.trade_mode) == (0.01, 100.0, 0.01, 4)
    mt5.set_symbol("EURUSD", volume_step=0.1, volume_min=0.1, trade_mode="LONG_ONLY")
    changed = mt5.symbol_info("EURUSD")
    assert changed is not None
    assert (changed.volume_min, changed.volume_step, changed.trade_mode) == (0.1, 0.1, 1)
    ask = mt5.symbol_info_tick("EURUSD").ask  # type: ignore[union-attr]
    assert _buy(mt5, ask, volume=0.15).retcode == FakeMT5.TRADE_RETCODE_INVALID_VOLUME
    bid = mt5.symbol_info_tick("EURUSD").bid  # type: ignore[union-attr]
    assert _buy(mt5, bid, type=1).retcode == FakeMT5.TRADE_RETCODE_LONG_ONLY
    assert _buy(mt5, ask).retcode == FakeMT5.TRADE_RETCODE_DONE
    mt5.set_symbol("EURUSD", trade_mode="CLOSE_ONLY")
    assert _buy(mt5, ask).retcode == FakeMT5.TRADE_RETCODE_CLOSE_ONLY
    mt5.set_symbol("EURUSD", trade_mode="DISABLED")
    assert _buy(mt5, ask).retcode == FakeMT5.TRADE_RETCODE_TRADE_DISABLED
    with pytest.raises(ValueError, match="not a rule"):
        mt5.set_symbol("EURUSD", swap_long=1.0)


def test_sltp_sets_a_position_s_stops_as_the_package_does_awkward_parts_included() -> None:
    mt5 = FakeMT5(deal_delay_s=0)
    mt5.initialize()
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick is not None
    opened = _buy(mt5, tick.ask, sl=round(tick.bid - 0.005, 5))
    assert opened.retcode == FakeMT5.TRADE_RETCODE_DONE
    (position,) = mt5.positions_get() or ()
    assert (position.sl, position.tp) == (round(tick.bid - 0.005, 5), 0.0)
    sltp = FakeMT5.TRADE_ACTION_SLTP
    both = {"action": sltp, "position": position.ticket, "symbol": "EURUSD", "sl": position.sl, "tp": tick.bid + 0.01}
    done = mt5.order_send(both)
    assert done is not None
    assert (done.retcode, done.deal, done.order) == (FakeMT5.TRADE_RETCODE_DONE, 0, 0)  # no deal, no order
    assert mt5.open_stops()[position.identifier] == (position.sl, tick.bid + 0.01)
    unchanged = mt5.order_send(both)
    assert unchanged is not None
    assert unchanged.retcode == FakeMT5.TRADE_RETCODE_NO_CHANGES
    only_sl = mt5.order_send({"action": sltp, "position": position.ticket, "symbol": "EURUSD", "sl": position.sl})
    assert only_sl is not None
    assert only_sl.retcode == FakeMT5.TRADE_RETCODE_DONE
    assert mt5.open_stops()[position.identifier] == (position.sl, 0.0)  # the tp left out is 0.0: removed
    for wrong in ({"sl": tick.bid + 0.01}, {"tp": tick.bid - 0.01}, {"sl": tick.bid - 0.00005}):  # 5 points: too near
        refused = mt5.order_send({"action": sltp, "position": position.ticket, "symbol": "EURUSD", **wrong})
        assert refused is not None
        assert refused.retcode == FakeMT5.TRADE_RETCODE_INVALID_STOPS, wrong
    no_position = mt5.order_send({"action": sltp, "symbol": "EURUSD", "sl": 1.0})
    assert no_position is not None
    assert no_position.retcode == FakeMT5.TRADE_RETCODE_INVALID
    gone = mt5.order_send({"action": sltp, "position": 12345, "symbol": "EURUSD", "sl": 1.0})
    assert gone is not None
    assert gone.retcode == FakeMT5.TRADE_RETCODE_POSITION_CLOSED
    assert mt5.order_send({"action": sltp, "position": position.ticket, "sl": "1"}) is None  # a wrong type
    assert mt5.last_error() == (FakeMT5.RES_E_INVALID_PARAMS, 'Invalid "sl" argument')
    wrong_open = _buy(mt5, tick.ask, tp=tick.ask - 0.01)
    assert wrong_open.retcode == FakeMT5.TRADE_RETCODE_INVALID_STOPS
    assert len(mt5.positions_get() or ()) == 1


def test_a_stop_the_price_reaches_closes_the_position_with_its_reason() -> None:
    mt5 = FakeMT5(deal_delay_s=0)
    mt5.initialize()
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick is not None
    _buy(mt5, tick.ask, sl=round(tick.bid - 0.005, 5), tp=round(tick.bid + 0.005, 5))
    (position,) = mt5.positions_get() or ()
    mt5.move_price("EURUSD", tick.bid + 0.006)
    assert mt5.positions_get() == ()
    out = [d for d in mt5.history_deals_get(position=position.identifier) or () if d.entry == FakeMT5.DEAL_ENTRY_OUT]
    assert [d.reason for d in out] == [FakeMT5.DEAL_REASON_TP]
