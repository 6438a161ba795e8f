"""The bridge's pure parts: the EA's order comment, requests, reports, the "already executed" search,
snapshots, configuration, and the lazy import of the Windows-only package."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from hedgebridge.common.config import ConfigError, env_names
from hedgebridge.mt5bridge import config as config_module
from hedgebridge.mt5bridge import translate as tr
from hedgebridge.mt5bridge.clock import ServerClock, derive, describe
from hedgebridge.mt5bridge.config import Mt5BridgeConfig, from_env
from hedgebridge.mt5bridge.errors import Mt5PackageMissing
from hedgebridge.mt5bridge.service import load_package
from hedgebridge.protocol import (
    CloseCommand,
    CloseMetadata,
    OpenCommand,
    OpenMetadata,
    decode_frame,
    encode_frame,
    retcodes,
)

from ..mt5.fake_mt5 import FakeMT5, OrderSendResult, Tick, TradeDeal, TradePosition, TradeRequest

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MAGIC = 7_700_101


def readme_tag(s: str) -> str:
    """The formula mql5/README.md gives for the EA's tags."""
    return base64.urlsafe_b64encode(hashlib.sha256(s.encode()).digest())[:12].decode() if s else "------------"


def open_command(**fields: Any) -> OpenCommand:
    values: dict[str, Any] = {
        "timestamp": NOW, "account_id": "A1", "position_id": "p-1", "action_id": "a-1", "symbol": "EURUSD",
        "side": "BUY", "volume": 0.3, "metadata": OpenMetadata(execution_type="ENTRY", user_id="u"),
    }  # fmt: skip
    values.update(fields)
    return OpenCommand(**values)


def close_command(**fields: Any) -> CloseCommand:
    values: dict[str, Any] = {
        "timestamp": NOW, "account_id": "A1", "position_id": "p-1", "action_id": "c-1",
        "metadata": CloseMetadata(exit_reason="manual", user_id="u"),
    }  # fmt: skip
    values.update(fields)
    return CloseCommand(**values)


def position(ticket: int = 500, comment: str = "", magic: int = MAGIC, **fields: Any) -> TradePosition:
    values: dict[str, Any] = dict.fromkeys(TradePosition._fields, 0)
    values.update(ticket=ticket, identifier=ticket, time_msc=1_764_000_000_000, type=0, magic=magic, volume=0.3,
                  price_open=1.085, price_current=1.086, profit=3.0, symbol="EURUSD", comment=comment,
                  external_id="", sl=0.0, tp=0.0, swap=0.0)  # fmt: skip
    values.update(fields)
    return TradePosition(**values)


def deal(ticket: int, entry: int, comment: str, position_id: int = 500, **fields: Any) -> TradeDeal:
    values: dict[str, Any] = dict.fromkeys(TradeDeal._fields, 0)
    values.update(ticket=ticket, order=ticket, entry=entry, magic=MAGIC, position_id=position_id, volume=0.1,
                  price=1.1, commission=-0.5, swap=-0.1, profit=2.0, fee=0.0, symbol="EURUSD", comment=comment,
                  external_id="")  # fmt: skip
    values.update(fields)
    return TradeDeal(**values)


def send_result(retcode: int, *, deal: int = 9, order: int = 500, volume: float = 0.3, price: float = 1.2) -> Any:
    fields: dict[str, Any] = dict.fromkeys(TradeRequest._fields, 0)
    request = TradeRequest(**fields)
    return OrderSendResult(retcode, deal, order, volume, price, 1.1, 1.2, "Request completed", 1, 0, request)


# --- the order comment -------------------------------------------------------------------------------------------


def test_the_comment_is_the_eas_format() -> None:
    comment = tr.order_comment("a-1", "p-1")
    assert comment == "hb" + readme_tag("a-1") + readme_tag("p-1")
    assert len(comment) == 26 <= 31
    assert tr.order_comment(None, "p-1") == "hb------------" + readme_tag("p-1")
    assert tr.tag("ação ✓") == readme_tag("ação ✓")  # UTF-8 bytes are hashed
    assert tr.is_own_comment(comment)
    assert not tr.is_own_comment("manual trade")
    assert tr.position_tag(comment) == readme_tag("p-1")
    assert tr.position_tag("[sl 1.08]") is None
    assert tr.carries_action(comment, "a-1")
    assert not tr.carries_action(comment, "a-2")
    assert not tr.carries_action(comment, "")


# --- requests -----------------------------------------------------------------------------------------------------


def test_an_open_is_a_market_deal_with_the_magic_number_and_the_comment() -> None:
    request = tr.open_request(
        open_command(side="SELL", volume=0.30000000004), price=1.08, filling=tr.filling_for(2), magic=MAGIC,
        deviation=10, volume_step=0.01,
    )  # fmt: skip
    assert request == {
        "action": tr.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.3, "type": tr.ORDER_TYPE_SELL,
        "price": 1.08, "deviation": 10, "magic": MAGIC, "comment": tr.order_comment("a-1", "p-1"),
        "type_time": tr.ORDER_TIME_GTC, "type_filling": tr.ORDER_FILLING_IOC,
    }  # fmt: skip


def test_a_close_is_the_opposite_deal_on_the_position() -> None:
    request = tr.close_request(
        close_command(), position(type=tr.POSITION_TYPE_BUY), volume=0.1, bid=1.1, ask=1.2, filling=0,
        magic=MAGIC, deviation=5, volume_step=0.01,
    )  # fmt: skip
    assert (request["position"], request["type"], request["price"], request["volume"]) == (500, 1, 1.1, 0.1)
    assert request["comment"] == tr.order_comment("c-1", "p-1")
    sell = tr.close_request(
        close_command(), position(type=tr.POSITION_TYPE_SELL), volume=0.3, bid=1.1, ask=1.2, filling=0,
        magic=MAGIC, deviation=5, volume_step=0.01,
    )  # fmt: skip
    assert (sell["type"], sell["price"]) == (tr.ORDER_TYPE_BUY, 1.2)
    assert tr.close_volume(None, 0.3) == 0.3
    assert tr.close_volume(0.5, 0.3) == 0.3
    assert tr.close_volume(0.1, 0.3) == 0.1


def test_filling_and_volume_checks() -> None:
    assert [tr.filling_for(m) for m in (1, 2, 3, 0)] == [0, 1, 0, 2]
    assert tr.volume_problem("EURUSD", 0.1, 0.01, 100, 0.01) is None
    assert tr.volume_problem("EURUSD", 0.015, 0.01, 100, 0.01) is not None
    assert tr.volume_problem("EURUSD", 200, 0.01, 100, 0.01) is not None
    assert tr.volume_problem("EURUSD", 0.001, 0.01, 100, 0.01) is not None
    assert tr.volume_digits(0.01) == 2


# --- results ------------------------------------------------------------------------------------------------------


def test_a_fill_becomes_opened_with_the_deals_position_ticket() -> None:
    command = open_command()
    filled = tr.fill_outcome(send_result(10009, order=777), 0.3, [deal(9, tr.DEAL_ENTRY_IN, "", 501)], closing=False)
    event = tr.opened_event("A1", command, filled, NOW)
    assert (event.status, event.mt_ticket, event.price, event.volume, event.error_code) == (
        "SUCCESS", "501", 1.2, 0.3, None)  # fmt: skip
    assert (event.symbol, event.side, event.action_id, event.position_id) == ("EURUSD", "BUY", "a-1", "p-1")
    partial = tr.fill_outcome(send_result(10010, volume=0.1), 0.3, (), closing=False)
    event = tr.opened_event("A1", command, partial, NOW)
    assert (event.mt_ticket, event.volume, event.error_code) == ("500", 0.1, retcodes.DONE_PARTIAL)
    assert "partially filled" in (event.error_message or "")
    refused = tr.opened_event("A1", command, tr.refused_outcome(send_result(10004)), NOW)
    assert (refused.status, refused.error_code, refused.mt_ticket) == ("FAILED", 10004, None)
    assert "retcode 10004" in (refused.error_message or "")
    assert decode_frame(encode_frame(refused)) == refused  # what a gateway would accept from an EA


def test_a_close_fill_becomes_closed_with_profit_and_remaining_volume() -> None:
    outcome = tr.fill_outcome(
        send_result(10009, volume=0.1), 0.1, [deal(10, tr.DEAL_ENTRY_OUT, "")], closing=True, position_identifier=500,
        remaining=0.2,
    )  # fmt: skip
    event = tr.closed_event("A1", close_command(), outcome, NOW)
    assert (event.mt_ticket, event.volume, event.remaining_volume, event.profit) == ("500", 0.1, 0.2, 1.4)
    assert event.error_message is None
    gone = tr.closed_event("A1", close_command(mt_ticket="42"), tr.failed(10036, "not found"), NOW)
    assert (gone.status, gone.error_code, gone.mt_ticket) == ("FAILED", 10036, "42")
    two = [
        deal(10, tr.DEAL_ENTRY_OUT, "", volume=0.1, price=1.1),
        deal(11, tr.DEAL_ENTRY_OUT, "", volume=0.3, price=1.3),
    ]
    split = tr.fill_outcome(send_result(10009, volume=0.0, price=0.0), 0.4, two, closing=True, position_identifier=500)
    assert (split.volume, round(split.price, 6), split.profit) == (0.4, 1.25, 2.8)  # an order filled by two deals
    estimated = tr.fill_outcome(send_result(10009), 0.3, (), closing=True, position_identifier=500, profit_estimate=3)
    assert (estimated.ticket, estimated.profit, estimated.message) == (500, 3, tr.ESTIMATED_PROFIT)  # said so
    assert tr.closed_event("A1", close_command(), estimated, NOW).error_message == tr.ESTIMATED_PROFIT


def test_earlier_executions_are_found_by_comment_and_magic() -> None:
    mine = tr.order_comment("a-1", "p-1")
    assert tr.find_open("a-1", MAGIC, [position(comment=mine)], []) == tr.Outcome(
        success=True, already_executed=True, ticket=500, price=1.085, volume=0.3
    )
    assert tr.find_open("a-1", MAGIC, [position(comment=mine, magic=1)], []) is None  # another EA's order
    assert tr.find_open("a-2", MAGIC, [position(comment=mine)], []) is None
    history = [deal(1, tr.DEAL_ENTRY_IN, mine, 500), deal(2, tr.DEAL_ENTRY_OUT, tr.order_comment("c-1", "p-1"), 500)]
    found = tr.find_open("a-1", MAGIC, [], history)
    assert found is not None
    assert (found.ticket, found.already_executed) == (500, True)
    assert tr.find_open("c-1", MAGIC, [], history) is None  # a closing deal is not an opening
    closing = [
        deal(2, tr.DEAL_ENTRY_OUT, tr.order_comment("c-1", "p-1"), volume=0.1, price=1.1),
        deal(3, tr.DEAL_ENTRY_OUT, tr.order_comment("c-1", "p-1"), volume=0.3, price=1.3),
    ]
    closed = tr.find_close("c-1", MAGIC, closing, {500: 0.2})
    assert closed is not None
    assert (closed.volume, round(closed.price, 6), closed.profit, closed.remaining) == (0.4, 1.25, 2.8, 0.2)
    assert tr.find_close("a-1", MAGIC, history, {}) is None
    assert tr.find_open("", MAGIC, [position(comment=tr.order_comment(None, "p-1"))], []) is None


def test_outside_closes_name_their_reason() -> None:
    assert [tr.deal_reason(r) for r in (4, 5, 6, 0, 3, 9)] == [
        "stop_loss", "take_profit", "stop_out", "manual", "expert", "other"]  # fmt: skip
    event = tr.outside_close("A1", 500, "p-1", "a-1", [deal(7, tr.DEAL_ENTRY_OUT, "", reason=4)], NOW)
    assert event is not None
    assert (event.reason, event.mt_ticket, event.remaining_volume, event.position_id) == (
        "stop_loss",
        "500",
        0.0,
        "p-1",
    )
    assert tr.outside_close("A1", 500, "p-1", None, [deal(7, tr.DEAL_ENTRY_IN, "")], NOW) is None


def test_snapshots_name_the_systems_positions_and_skip_what_the_protocol_cannot_carry() -> None:
    update = tr.position_update(
        "A1",
        [position(600, symbol="GER 40"), position(501), position(500)],
        {500: ("p-1", "a-1")},
        NOW,
        0,
        sync_id="s-1",
    )
    assert [(p.mt_ticket, p.position_id, p.action_id) for p in update.positions] == [
        ("500", "p-1", "a-1"), ("501", None, None)]  # fmt: skip
    assert update.sync_id == "s-1"
    assert update.positions[0].open_time == datetime.fromtimestamp(1_764_000_000, UTC)


def test_a_position_is_named_by_its_identifier_and_closed_by_its_current_ticket() -> None:
    moved = position(900, identifier=500, comment=tr.order_comment("a-1", "p-1"))  # re-opened: a new ticket
    (listed,) = tr.position_update("A1", [moved], {500: ("p-1", "a-1")}, NOW, 0).positions
    assert (listed.mt_ticket, listed.position_id, listed.action_id) == ("500", "p-1", "a-1")
    found = tr.find_open("a-1", MAGIC, [moved], [])
    assert found is not None
    assert found.ticket == 500
    request = tr.close_request(
        close_command(), moved, volume=0.3, bid=1.1, ask=1.2, filling=0, magic=MAGIC, deviation=5, volume_step=0.01
    )
    assert request["position"] == 900


def test_snapshots_and_prices_carry_utc_times_from_the_servers_clock() -> None:
    server_msc = 1_764_000_000_000 + 3 * 3_600_000  # a position opened at 1_764_000_000 UTC on a UTC+3 server
    (ahead,) = tr.position_update("A1", [position(time_msc=server_msc)], {}, NOW, 3 * 3600).positions
    assert ahead.open_time == datetime.fromtimestamp(1_764_000_000, UTC)
    behind = tr.position_of(position(time_msc=1_764_000_000_000 - 16_200_000), None, -16_200)  # UTC-04:30
    assert behind is not None
    assert behind.open_time == datetime.fromtimestamp(1_764_000_000, UTC)
    (unknown,) = tr.position_update("A1", [position(time_msc=server_msc)], {}, NOW, None).positions
    assert unknown.open_time is None  # an unknown offset: no time rather than one hours off
    tick = Tick(server_msc // 1000, 1.1, 1.2, 0.0, 0, server_msc + 250, 6, 0.0)
    price = tr.price_tick("A1", "EURUSD", tick, 3 * 3600)
    assert price is not None
    assert price.time == datetime.fromtimestamp(1_764_000_000.25, UTC)
    assert tr.price_tick("A1", "EURUSD", tick, None) is None


def test_the_servers_offset_is_derived_from_fresh_times_only() -> None:
    utc = 1_764_000_000_000
    assert derive(utc + 3 * 3_600_000 - 400, utc, 1_000) == 3 * 3600
    assert derive(utc - 16_200_000 + 30_000, utc, 1_000) == -16_200  # UTC-04:30, a host clock 30 s behind
    assert derive(utc + 3 * 3_600_000 - 200_000, utc, 250) is None  # 200 s old, yet changed within 250 ms
    assert derive(utc + 3 * 3_600_000 - 20 * 60_000, utc, 10 * 60_000) is None  # too old to round to one quarter
    assert derive(utc + 15 * 3_600_000, utc, 1_000) is None  # no time zone is 15 h ahead
    now = [utc]
    clock = ServerClock(now_ms=lambda: now[0])
    friday = utc + 3 * 3_600_000 - 2 * 86_400_000  # the last tick of a closed market
    clock.tick("EURUSD", friday)
    now[0] += 250
    clock.tick("EURUSD", friday)
    assert (clock.offset_s, clock.server_now_s(), clock.to_utc(friday)) == (None, None, None)  # it never changed
    now[0] += 250
    clock.tick("EURUSD", now[0] + 3 * 3_600_000 - 100)  # a new tick: at most 250 ms old
    assert clock.offset_s == 3 * 3600
    assert clock.server_now_s() == now[0] // 1000 + 3 * 3600
    assert clock.to_utc(now[0] + 3 * 3_600_000) == datetime.fromtimestamp(now[0] / 1000, UTC)
    clock.deal(now[0] + 2 * 3_600_000, now[0] - 500)  # the daylight saving change: one fresh time is not enough
    assert clock.offset_s == 3 * 3600
    clock.deal(now[0] + 2 * 3_600_000, now[0] - 500)
    assert clock.offset_s == 2 * 3600
    configured = ServerClock(-4 * 3600, now_ms=lambda: now[0])
    configured.deal(now[0] + 2 * 3_600_000, now[0] - 500)
    assert configured.offset_s == -4 * 3600  # the configuration wins (a warning says the times disagree)
    assert describe(-16_200) == "-04:30"


def test_report_ids_are_the_gateways() -> None:
    event = tr.opened_event("A1", open_command(), tr.Outcome(success=True, ticket=5, price=1.0, volume=0.3), NOW)
    assert tr.report_id(event) == "A1:OPENED:a-1:5:SUCCESS:"


# --- configuration and the package ----------------------------------------------------------------------------


def test_configuration_from_the_environment() -> None:
    env = {"HEDGEBRIDGE_MT5BRIDGE_ACCOUNT_ID": "12345678", "HEDGEBRIDGE_MT5BRIDGE_LOGIN": "12345678",
           "HEDGEBRIDGE_MT5BRIDGE_PASSWORD": "s3cret-pw", "HEDGEBRIDGE_MT5BRIDGE_SERVER": "Broker-Demo",
           "HEDGEBRIDGE_MT5BRIDGE_SYMBOLS": "EURUSD, XAUUSD", "HEDGEBRIDGE_NATS_URL": "nats://n:14222"}  # fmt: skip
    cfg = from_env(env)
    assert (cfg.login, cfg.server, cfg.price_symbols, cfg.nats_url) == (
        12345678, "Broker-Demo", ("EURUSD", "XAUUSD"), "nats://n:14222")  # fmt: skip
    assert "s3cret-pw" not in repr(cfg)
    assert "s3cret-pw" not in str(cfg)
    assert cfg.book_path.name == "book_12345678.jsonl"
    for bad in (
        {},
        {"HEDGEBRIDGE_MT5BRIDGE_ACCOUNT_ID": "has space"},
        {**env, "HEDGEBRIDGE_MT5BRIDGE_LOGIN": "0"},  # a password without a login
        {**env, "HEDGEBRIDGE_MT5BRIDGE_POLL_INTERVAL_MS": "0"},
        {**env, "HEDGEBRIDGE_MT5BRIDGE_SYMBOLS": "EUR USD"},
        {**env, "HEDGEBRIDGE_MT5BRIDGE_MAGIC": "lots"},
        {**env, "HEDGEBRIDGE_MT5BRIDGE_SERVER_UTC_OFFSET": "EET"},
        {**env, "HEDGEBRIDGE_MT5BRIDGE_SERVER_UTC_OFFSET": "+03:10"},  # not a quarter of an hour
        {**env, "HEDGEBRIDGE_MT5BRIDGE_SERVER_UTC_OFFSET": "+15:00"},
    ):
        with pytest.raises(ConfigError):
            from_env(bad)
    assert Mt5BridgeConfig(account_id="A1").magic == MAGIC  # the EA's default magic number
    offsets = {"": None, "0": 0, "+03:00": 10_800, "+3": 10_800, "-04:30": -16_200, "+05:45": 20_700}
    for text, seconds in offsets.items():
        assert from_env({**env, "HEDGEBRIDGE_MT5BRIDGE_SERVER_UTC_OFFSET": text}).server_offset_s == seconds, text


def test_the_package_is_imported_only_when_a_bridge_starts_with_it() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, hedgebridge.mt5bridge.service, hedgebridge.mt5bridge.__main__; "
         "print('MetaTrader5' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "False"
    if sys.platform != "win32":
        with pytest.raises(Mt5PackageMissing, match=r"hedgebridge\[mt5\]"):
            load_package()


def test_every_variable_is_in_the_documented_table() -> None:
    documented = config_module.__doc__ or ""
    missing = [var for var in env_names(Mt5BridgeConfig, config_module.PREFIX).values() if var not in documented]
    assert missing == []


def test_symbol_info_becomes_the_symbols_rules() -> None:
    mt5 = FakeMT5(filling_mode=3)
    mt5.initialize()
    spec = tr.symbol_spec("XAUUSD", mt5.symbol_info("XAUUSD"))  # type: ignore[arg-type]
    assert spec is not None
    assert (spec.volume_min, spec.volume_max, spec.volume_step, spec.contract_size, spec.digits) == (
        0.01,
        100.0,
        0.01,
        100,
        2,
    )
    assert (spec.trade_mode, spec.filling_modes) == ("FULL", ["FOK", "IOC"])
    for mode, name in ((0, "DISABLED"), (1, "LONG_ONLY"), (2, "SHORT_ONLY"), (3, "CLOSE_ONLY")):
        mt5.set_symbol("EURUSD", trade_mode=mode)
        changed = tr.symbol_spec("EURUSD", mt5.symbol_info("EURUSD"))  # type: ignore[arg-type]
        assert changed is not None
        assert changed.trade_mode == name
    mt5.set_symbol("EURUSD", trade_mode=7)  # a mode the protocol does not know: not reported
    assert tr.symbol_spec("EURUSD", mt5.symbol_info("EURUSD")) is None  # type: ignore[arg-type]
    assert tr.symbol_spec("EUR USD", mt5.symbol_info("XAUUSD")) is None  # type: ignore[arg-type]
    message = tr.symbol_specs("A1", [spec], NOW)
    assert message is not None
    assert (message.account_id, message.symbols) == ("A1", [spec])
    assert tr.symbol_specs("A1", [], NOW) is None
