"""The symbols' rules as the executor applies them before sending (``symbol_rules``, pure): volumes against the
minimum, maximum and step (INVALID with the allowed values, or rounded down when asked), trade modes (REJECTED),
the merge of a terminal's reports, and a rounded order's results saying so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from hedgebridge.executor import orders, symbol_rules
from hedgebridge.executor import run_actions as act
from hedgebridge.executor.order_run import Limits, OrderRun
from hedgebridge.executor.symbol_rules import Allowed, Refused
from hedgebridge.protocol import (
    AccountSymbols,
    CloseOrder,
    DeliveryAck,
    OpenedEvent,
    OpenOrder,
    SymbolSpec,
    SymbolSpecs,
    errors,
)
from hedgebridge.protocol.messages import SymbolTradeMode

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def spec(symbol: str = "EURUSD", trade_mode: SymbolTradeMode = "FULL", **rules: float) -> SymbolSpec:
    values: dict[str, float] = {"volume_min": 0.01, "volume_max": 100.0, "volume_step": 0.01}
    values.update(rules)
    return SymbolSpec(symbol=symbol, contract_size=100_000, digits=5, trade_mode=trade_mode, **values)  # type: ignore[arg-type]


def refused(screened: symbol_rules.Screened) -> Refused:
    assert isinstance(screened, Refused), screened
    return screened


@pytest.mark.parametrize("volume", [0.01, 0.07, 0.1 + 0.2, 1.0, 2.37, 100.0, 99.99])
def test_volumes_on_the_step_and_within_the_limits_pass_unchanged(volume: float) -> None:
    assert symbol_rules.screen_open(spec(), "A1", "BUY", volume) == Allowed(volume)


def test_an_off_step_volume_is_invalid_with_the_allowed_values_and_the_nearest() -> None:
    answer = refused(symbol_rules.screen_open(spec(), "A1", "BUY", 0.015))
    assert (answer.status, answer.code) == ("INVALID", errors.INVALID_VOLUME)
    assert "volume 0.015 is not a multiple of the volume step 0.01 of EURUSD on account A1" in answer.message
    assert "allowed: 0.01 to 100 in steps of 0.01" in answer.message
    assert "the nearest are 0.01 and 0.02" in answer.message
    assert "roundVolume" in answer.message
    coarse = refused(symbol_rules.screen_open(spec(volume_min=0.1, volume_step=0.1), "A1", "SELL", 0.25))
    assert "the nearest are 0.2 and 0.3" in coarse.message
    assert "allowed: 0.1 to 100 in steps of 0.1" in coarse.message


def test_below_the_minimum_and_over_the_maximum_are_invalid() -> None:
    low = refused(symbol_rules.screen_open(spec(volume_min=0.1), "A1", "BUY", 0.05))
    assert (low.status, low.code) == ("INVALID", errors.INVALID_VOLUME)
    assert "volume 0.05 is below the minimum 0.1 of EURUSD on account A1; allowed: 0.1 to 100" in low.message
    high = refused(symbol_rules.screen_open(spec(volume_max=50), "A1", "BUY", 50.01))
    assert "volume 50.01 is over the maximum 50 of EURUSD on account A1; allowed: 0.01 to 50" in high.message


def test_round_volume_rounds_down_to_the_step_and_says_from_what() -> None:
    assert symbol_rules.screen_open(spec(), "A1", "BUY", 0.129, round_volume=True) == Allowed(0.12, 0.129)
    assert symbol_rules.screen_open(spec(volume_step=0.5, volume_min=0.5), "A1", "BUY", 1.7, round_volume=True) == (
        Allowed(1.5, 1.7)
    )
    # on the step already: nothing to round, nothing reported
    assert symbol_rules.screen_open(spec(), "A1", "BUY", 0.3, round_volume=True) == Allowed(0.3)
    # float noise under the step is not rounded away
    assert symbol_rules.screen_open(spec(), "A1", "BUY", 0.1 + 0.2, round_volume=True) == Allowed(0.1 + 0.2)


def test_a_rounded_volume_still_has_to_be_within_the_limits() -> None:
    zero = refused(symbol_rules.screen_open(spec(), "A1", "BUY", 0.005, round_volume=True))
    assert "volume 0.005 rounded down to the step 0.01 is 0, which is below the minimum 0.01" in zero.message
    over = refused(symbol_rules.screen_open(spec(volume_max=10), "A1", "BUY", 10.555, round_volume=True))
    assert "is 10.55, which is over the maximum 10" in over.message


@pytest.mark.parametrize(
    ("mode", "side", "retcode"),
    [
        ("DISABLED", "BUY", "10017 TRADE_DISABLED"),
        ("CLOSE_ONLY", "SELL", "10044 CLOSE_ONLY"),
        ("LONG_ONLY", "SELL", "10042 LONG_ONLY"),
        ("SHORT_ONLY", "BUY", "10043 SHORT_ONLY"),
    ],
)
def test_a_trade_mode_that_forbids_the_open_rejects_it(mode: SymbolTradeMode, side: str, retcode: str) -> None:
    answer = refused(symbol_rules.screen_open(spec(trade_mode=mode), "A1", side, 1.0))
    assert (answer.status, answer.code) == ("REJECTED", errors.TRADE_DISABLED)
    assert f"trade mode {mode}" in answer.message
    assert retcode in answer.message
    assert "nothing was sent" in answer.message


@pytest.mark.parametrize(("mode", "side"), [("LONG_ONLY", "BUY"), ("SHORT_ONLY", "SELL"), ("FULL", "SELL")])
def test_a_trade_mode_that_allows_the_side_lets_the_open_through(mode: SymbolTradeMode, side: str) -> None:
    assert symbol_rules.screen_open(spec(trade_mode=mode), "A1", side, 1.0) == Allowed(1.0)


def test_closes_are_refused_only_when_trading_is_disabled_and_partial_ones_keep_to_the_step() -> None:
    for mode in ("CLOSE_ONLY", "LONG_ONLY", "SHORT_ONLY", "FULL"):
        assert symbol_rules.screen_close(spec(trade_mode=mode), "A1", None) == Allowed(None)
    disabled = refused(symbol_rules.screen_close(spec(trade_mode="DISABLED"), "A1", None))
    assert (disabled.status, disabled.code) == ("REJECTED", errors.TRADE_DISABLED)
    part = refused(symbol_rules.screen_close(spec(), "A1", 0.033))
    assert (part.status, part.code) == ("INVALID", errors.INVALID_VOLUME)
    assert symbol_rules.screen_close(spec(), "A1", 0.033, round_volume=True) == Allowed(0.03, 0.033)
    assert symbol_rules.trading_disabled(AccountSymbols(account_id="A1", symbols=[spec(), spec("X", "DISABLED")]))
    assert not symbol_rules.trading_disabled(AccountSymbols(account_id="A1", symbols=[spec()]))


def test_numbers_are_written_as_people_write_them() -> None:
    assert [symbol_rules.number(v) for v in (0.01, 100.0, 1e-05, 2.5, 0.0)] == ["0.01", "100", "0.00001", "2.5", "0"]


def report(at: datetime, *specs: SymbolSpec) -> SymbolSpecs:
    return SymbolSpecs(timestamp=at, account_id="A1", symbols=list(specs))


def test_merge_keeps_every_symbol_with_its_latest_rules() -> None:
    first = symbol_rules.merge(None, report(T0, spec("GBPUSD"), spec("EURUSD")))
    assert first is not None
    assert [s.symbol for s in first.symbols] == ["EURUSD", "GBPUSD"]
    assert first.changed_at == {"EURUSD": T0, "GBPUSD": T0}
    # the same rules again (a reconnect): nothing to write
    assert symbol_rules.merge(first, report(T0 + timedelta(seconds=5), spec("EURUSD"))) is None
    later = T0 + timedelta(seconds=9)
    changed = symbol_rules.merge(first, report(later, spec("EURUSD", "CLOSE_ONLY"), spec("XAUUSD")))
    assert changed is not None
    assert symbol_rules.find(changed, "EURUSD") == spec("EURUSD", "CLOSE_ONLY")
    assert symbol_rules.find(changed, "GBPUSD") == spec("GBPUSD")  # not in the report: kept
    assert changed.changed_at == {"EURUSD": later, "GBPUSD": T0, "XAUUSD": later}
    assert symbol_rules.find(changed, "USDJPY") is None
    assert symbol_rules.find(None, "EURUSD") is None


def test_merge_ignores_an_older_report_applied_after_a_newer_one() -> None:
    newer = symbol_rules.merge(None, report(T0 + timedelta(seconds=2), spec(volume_step=0.1, volume_min=0.1)))
    assert newer is not None
    assert symbol_rules.merge(newer, report(T0, spec())) is None
    mixed = symbol_rules.merge(newer, report(T0 + timedelta(seconds=1), spec(), spec("GBPUSD")))
    assert mixed is not None
    assert symbol_rules.find(mixed, "EURUSD") == spec(volume_step=0.1, volume_min=0.1)
    assert symbol_rules.find(mixed, "GBPUSD") == spec("GBPUSD")


LIMITS = Limits(
    delivery_timeout_s=1.0,
    max_attempts=3,
    retry_base_ms=10,
    reconcile_timeout_s=10.0,
    sync_timeout_s=1.0,
    lease_after_s=5.0,
)


def test_a_rounded_order_reports_the_rounding_in_its_result() -> None:
    request = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.129, action_id="r-1", round_volume=True)
    built = orders.build_command(request, T0)
    screened = symbol_rules.screen_open(spec(), "A1", "BUY", request.volume, round_volume=True)
    assert isinstance(screened, Allowed)
    assert screened.volume is not None
    command = msgspec.structs.replace(built, volume=screened.volume)
    rounded = orders.rounded_from(request, command)
    assert rounded == 0.129
    run = OrderRun(command, 0.0, 5.0, 1.0, LIMITS, rounded_from=rounded)
    run.start(0.0)
    run.on_delivery(DeliveryAck(delivered=True, session_id="s"), 0.01)
    report_ = OpenedEvent(
        timestamp=T0,
        account_id="A1",
        position_id=command.position_id,
        action_id="r-1",
        mt_ticket="7",
        price=1.1,
        volume=0.12,
        status="SUCCESS",
    )
    assert run.offer_report(report_)
    actions = run.on_wake(0.02, T0)
    (answer,) = [a for a in actions if isinstance(a, act.Answer)]
    result = answer.result
    assert (result.status, result.volume, result.requested_volume, result.rounded_from) == ("FILLED", 0.12, 0.12, 0.129)
    assert result.message == "executed; volume 0.129 rounded down to 0.12 (the symbol's step)"
    (record,) = [a for a in actions if isinstance(a, act.Record)]
    assert record.result == result  # recorded as answered: a repeat returns it too


def test_only_a_volume_changed_by_rounding_counts_as_rounded() -> None:
    asked = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.3, round_volume=True)
    assert orders.rounded_from(asked, orders.build_command(asked, T0)) is None
    close = CloseOrder(account_id="A1", mt_ticket="7", round_volume=True)
    assert orders.rounded_from(close, orders.build_command(close, T0)) is None
    plain = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.3)
    result = orders.failure("FILLED", "", "executed", orders.build_command(plain, T0), 1.0)
    assert orders.noted(None, 0.3, result) is result


def test_the_nearest_volumes_named_are_tradable_ones() -> None:
    # a minimum off the step: the multiple below it is not offered
    odd = refused(symbol_rules.screen_open(spec(volume_min=0.05, volume_step=0.1), "A1", "BUY", 0.07))
    assert "volume 0.07 is not a multiple of the volume step 0.1" in odd.message
    assert "(the nearest is 0.1; roundVolume" in odd.message
    # a maximum off the step: neither neighbour is tradable
    none = refused(symbol_rules.screen_open(spec(volume_min=0.6, volume_max=0.9, volume_step=0.5), "A1", "BUY", 0.7))
    assert "(roundVolume rounds down to the step)" in none.message


def test_rules_are_kept_and_found_by_the_broker_name() -> None:
    mapped = msgspec.structs.replace(spec("EURUSD"), broker_symbol="EURUSD.m")
    first = symbol_rules.merge(None, report(T0, mapped, spec("GBPUSD")))
    assert first is not None
    assert symbol_rules.find(first, "EURUSD.m") == mapped
    assert symbol_rules.find(first, "EURUSD") is None  # the trade server knows it as EURUSD.m
    assert first.changed_at == {"EURUSD.m": T0, "GBPUSD": T0}
    # the map changed (EURUSD.m is now reported under another canonical name): one entry for the broker symbol
    renamed = msgspec.structs.replace(spec("EUR"), broker_symbol="EURUSD.m")
    later = T0 + timedelta(seconds=1)
    second = symbol_rules.merge(first, report(later, renamed))
    assert second is not None
    assert [s.symbol for s in second.symbols] == ["EUR", "GBPUSD"]
    assert symbol_rules.find(second, "EURUSD.m") == renamed
    assert second.changed_at == {"EURUSD.m": later, "GBPUSD": T0}


def test_a_symbol_the_terminal_does_not_know_is_invalid_naming_symbol_and_account() -> None:
    rules = symbol_rules.merge(None, report(T0, spec("EURUSD"), spec("GBPUSD")))
    assert rules is not None
    plain = symbol_rules.unknown_symbol(rules, "A1", "BTCUSD", None)
    assert plain is not None
    assert (plain.status, plain.code) == ("INVALID", errors.UNKNOWN_SYMBOL)
    assert "symbol BTCUSD is not known to the terminal of account A1" in plain.message
    assert "EURUSD, GBPUSD" in plain.message
    assert "nothing was sent" in plain.message
    mapped = symbol_rules.unknown_symbol(rules, "A1", "XAUUSD", "GOLD")
    assert mapped is not None
    assert "XAUUSD (sent as GOLD by the account's symbol map)" in mapped.message
    assert symbol_rules.unknown_symbol(AccountSymbols(account_id="A1"), "A1", "BTCUSD", None) is None
