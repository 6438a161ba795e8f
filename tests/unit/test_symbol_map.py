"""The symbol mapping core (``hedgebridge.common.symbol_map``): names both ways, changes, events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hedgebridge.common import symbol_map
from hedgebridge.common.symbol_map import Mapping, MapRefused
from hedgebridge.protocol import (
    AccountUpdate,
    OpenedEvent,
    Position,
    PositionUpdate,
    PriceTick,
    ProtocolError,
    RemoveSymbolMap,
    SetSymbolMap,
    SymbolMap,
    SymbolSpec,
    SymbolSpecs,
    errors,
    pack,
    unpack,
)
from hedgebridge.protocol.client import decode_client_frame

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _map(symbols: dict[str, str] | None = None, prefix: str = "", suffix: str = "") -> Mapping:
    return Mapping("A", dict(symbols or {}), prefix, suffix)


# --- names both ways -----------------------------------------------------------------------------------------


def test_explicit_entries_translate_both_ways() -> None:
    m = _map({"XAUUSD": "GOLD", "EURUSD": "EURUSD.m"})
    assert m.to_broker("XAUUSD") == "GOLD"
    assert m.to_broker("EURUSD") == "EURUSD.m"
    assert m.to_canonical("GOLD") == "XAUUSD"
    assert m.to_canonical("EURUSD.m") == "EURUSD"
    assert m.to_broker("GBPUSD") == "GBPUSD"  # no rule: the same name
    assert m.to_canonical("GBPUSD") == "GBPUSD"


def test_prefix_and_suffix_name_every_other_symbol() -> None:
    m = _map({"XAUUSD": "GOLD.m"}, prefix="x", suffix=".m")
    assert m.to_broker("EURUSD") == "xEURUSD.m"
    assert m.to_canonical("xEURUSD.m") == "EURUSD"
    assert m.to_broker("XAUUSD") == "GOLD.m"  # an entry wins over the rule
    assert m.to_canonical("GOLD.m") == "XAUUSD"
    assert m.to_canonical("xXAUUSD.m") == "xXAUUSD.m"  # XAUUSD has its own entry: the rule's name is unexplained
    assert m.to_canonical("EURUSD") == "EURUSD"  # without the affixes: nothing explains it
    assert m.to_canonical("x.m") == "x.m"  # nothing between the affixes


def test_every_name_sent_comes_back_as_it_was_sent() -> None:
    m = _map({"XAUUSD": "GOLD", "US30": "DJ30.cash"}, suffix=".cash")
    for canonical in ("XAUUSD", "US30", "EURUSD", "GBPUSD", "DJ30"):
        try:
            broker = m.to_broker(canonical)
        except MapRefused:
            continue
        assert m.to_canonical(broker) == canonical


def test_a_rule_name_taken_by_an_entry_is_refused() -> None:
    m = _map({"XAUUSD": "GOLD"})
    with pytest.raises(MapRefused) as refused:
        m.to_broker("GOLD")  # would reach the broker's GOLD, which is XAUUSD
    assert refused.value.code == errors.SYMBOL_MAP_CONFLICT
    assert "GOLD on account A" in refused.value.message
    assert "XAUUSD" in refused.value.message


def test_a_rule_name_past_the_symbol_pattern_is_refused() -> None:
    m = _map(prefix="P" * 16, suffix="S" * 16)
    with pytest.raises(MapRefused) as refused:
        m.to_broker("EURUSD")
    assert refused.value.code == errors.SYMBOL_MAP_CONFLICT
    assert "not a valid symbol" in refused.value.message


def test_mapping_of_a_map_that_translates_nothing_is_none() -> None:
    assert symbol_map.mapping(None) is None
    assert symbol_map.mapping(SymbolMap(account_id="A")) is None
    assert symbol_map.mapping(SymbolMap(account_id="A", symbols={"EURUSD": "EURUSD"})) is None
    built = symbol_map.mapping(SymbolMap(account_id="A", suffix=".m"))
    assert built is not None
    assert built.to_broker("EURUSD") == "EURUSD.m"


# --- changes -------------------------------------------------------------------------------------------------


def test_set_adds_and_replaces_entries_and_keeps_the_rules() -> None:
    first = symbol_map.apply_set(None, SetSymbolMap(account_id="A", symbols={"EURUSD": "EURUSD.m"}), NOW, "ops")
    assert first == SymbolMap(account_id="A", symbols={"EURUSD": "EURUSD.m"}, updated_at=NOW, updated_by="ops")
    second = symbol_map.apply_set(
        first, SetSymbolMap(account_id="A", symbols={"XAUUSD": "GOLD", "EURUSD": "EURUSD.x"}, suffix=".m"), NOW, "o"
    )
    assert second.symbols == {"EURUSD": "EURUSD.x", "XAUUSD": "GOLD"}
    assert second.suffix == ".m"
    assert second.prefix == ""
    third = symbol_map.apply_set(second, SetSymbolMap(account_id="A", prefix="p"), NOW, "o")
    assert (third.prefix, third.suffix, third.symbols) == ("p", ".m", second.symbols)
    cleared = symbol_map.apply_set(third, SetSymbolMap(account_id="A", suffix=""), NOW, "o")
    assert (cleared.prefix, cleared.suffix) == ("p", "")


def test_two_canonical_symbols_on_one_broker_symbol_are_refused() -> None:
    current = SymbolMap(account_id="A", symbols={"XAUUSD": "GOLD"})
    with pytest.raises(MapRefused) as refused:
        symbol_map.apply_set(current, SetSymbolMap(account_id="A", symbols={"GOLD1": "GOLD"}), NOW, "o")
    assert refused.value.code == errors.SYMBOL_MAP_CONFLICT
    assert "GOLD1 and XAUUSD would both be GOLD" in refused.value.message
    assert refused.value.field == "symbols.XAUUSD"
    with pytest.raises(MapRefused):  # within one request too
        symbol_map.apply_set(None, SetSymbolMap(account_id="A", symbols={"A1": "Z", "B1": "Z"}), NOW, "o")
    # moving the broker symbol to another canonical name in one request is fine when the old entry moves too
    moved = symbol_map.apply_set(
        current, SetSymbolMap(account_id="A", symbols={"XAUUSD": "XAU", "GOLD1": "GOLD"}), NOW, "o"
    )
    assert moved.symbols == {"GOLD1": "GOLD", "XAUUSD": "XAU"}


def test_remove_drops_entries_and_refuses_unknown_ones() -> None:
    current = SymbolMap(account_id="A", symbols={"XAUUSD": "GOLD", "EURUSD": "EURUSD.m"}, suffix=".x")
    after = symbol_map.apply_remove(current, RemoveSymbolMap(account_id="A", symbols=["EURUSD"]), NOW, "o")
    assert after.symbols == {"XAUUSD": "GOLD"}
    assert after.suffix == ".x"
    with pytest.raises(MapRefused) as refused:
        symbol_map.apply_remove(current, RemoveSymbolMap(account_id="A", symbols=["GBPUSD"]), NOW, "o")
    assert refused.value.code == errors.INVALID_REQUEST
    assert "GBPUSD" in refused.value.message
    assert not symbol_map.is_empty(after)
    assert symbol_map.is_empty(
        symbol_map.apply_remove(
            SymbolMap(account_id="A", symbols={"X1": "Y1"}), RemoveSymbolMap(account_id="A", symbols=["X1"]), NOW, ""
        )
    )


def test_map_entries_are_validated_with_the_symbol_pattern() -> None:
    bad = [
        '{"type":"REQUEST","requestId":"r","body":{"type":"SET_SYMBOL_MAP","accountId":"A","symbols":{"EUR USD":"E"}}}',
        '{"type":"REQUEST","requestId":"r","body":{"type":"SET_SYMBOL_MAP","accountId":"A","symbols":{"E":"E/U"}}}',
        '{"type":"REQUEST","requestId":"r","body":{"type":"SET_SYMBOL_MAP","accountId":"A","suffix":"a b"}}',
        '{"type":"REQUEST","requestId":"r","body":{"type":"SET_SYMBOL_MAP","accountId":"A","prefix":"'
        + "p" * 17
        + '"}}',
        '{"type":"REQUEST","requestId":"r","body":{"type":"REMOVE_SYMBOL_MAP","accountId":"A","symbols":[]}}',
    ]
    for frame in bad:
        with pytest.raises(ProtocolError) as raised:
            decode_client_frame(frame)
        assert raised.value.code == errors.INVALID_FIELD, frame


def test_a_map_round_trips_through_msgpack() -> None:
    stored = SymbolMap(account_id="A", symbols={"XAUUSD": "GOLD"}, suffix=".m", updated_at=NOW, updated_by="o")
    assert unpack(pack(stored), SymbolMap) == stored


# --- events --------------------------------------------------------------------------------------------------


def test_events_come_back_in_canonical_symbols_with_the_broker_name() -> None:
    m = _map({"XAUUSD": "GOLD"}, suffix=".m")
    tick = symbol_map.inbound(PriceTick(account_id="A", symbol="GOLD", bid=1, ask=2, time=NOW), m)
    assert isinstance(tick, PriceTick)
    assert (tick.symbol, tick.broker_symbol) == ("XAUUSD", "GOLD")
    opened = OpenedEvent(
        timestamp=NOW, account_id="A", position_id="p", mt_ticket="1", price=1.1, status="SUCCESS", symbol="EURUSD.m"
    )
    mapped = symbol_map.inbound(opened, m)
    assert isinstance(mapped, OpenedEvent)
    assert (mapped.symbol, mapped.broker_symbol) == ("EURUSD", "EURUSD.m")
    failed = OpenedEvent(timestamp=NOW, account_id="A", position_id="p", status="FAILED")
    assert symbol_map.inbound(failed, m) is failed  # no symbol named
    position = Position(mt_ticket="1", symbol="GOLD", side="BUY", volume=1, open_price=1, current_price=1, profit=0)
    other = Position(mt_ticket="2", symbol="BTCUSD", side="BUY", volume=1, open_price=1, current_price=1, profit=0)
    update = symbol_map.inbound(PositionUpdate(timestamp=NOW, account_id="A", positions=[position, other]), m)
    assert isinstance(update, PositionUpdate)
    assert [(p.symbol, p.broker_symbol) for p in update.positions] == [("XAUUSD", "GOLD"), ("BTCUSD", None)]
    spec = SymbolSpec(
        symbol="EURUSD.m",
        volume_min=0.01,
        volume_max=10,
        volume_step=0.01,
        contract_size=1,
        digits=5,
        trade_mode="FULL",
    )
    specs = symbol_map.inbound(SymbolSpecs(timestamp=NOW, account_id="A", symbols=[spec]), m)
    assert isinstance(specs, SymbolSpecs)
    assert (specs.symbols[0].symbol, specs.symbols[0].broker_symbol) == ("EURUSD", "EURUSD.m")
    balance = AccountUpdate(timestamp=NOW, account_id="A", balance=1, equity=1, margin=0, free_margin=1)
    assert symbol_map.inbound(balance, m) is balance


def test_events_of_an_account_without_a_map_are_unchanged() -> None:
    tick = PriceTick(account_id="A", symbol="EURUSD", bid=1, ask=2, time=NOW)
    assert symbol_map.inbound(tick, None) is tick
    same = symbol_map.inbound(tick, _map({"XAUUSD": "GOLD"}))
    assert same == tick
    assert isinstance(same, PriceTick)
    assert same.broker_symbol is None
