"""The executor's queue of cache writes (``cache_batch.PendingWrites``): what waits, in which order, and what
coalescing keeps and counts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hedgebridge.common.cache_batch import PendingWrites, cache_key
from hedgebridge.protocol import AccountUpdate, OpenedEvent, PositionUpdate, PriceTick

T = datetime(2026, 12, 6, tzinfo=UTC)


def price(symbol: str, bid: float) -> PriceTick:
    return PriceTick(account_id="A1", symbol=symbol, bid=bid, ask=bid + 0.0001, time=T)


def balance(account: str, equity: float) -> AccountUpdate:
    return AccountUpdate(timestamp=T, account_id=account, balance=1.0, equity=equity, margin=0.0, free_margin=1.0)


def test_without_coalescing_every_event_waits_in_order_and_take_empties_the_queue() -> None:
    pending = PendingWrites(coalesce=False)
    events: list[PriceTick | AccountUpdate] = [
        price("EURUSD", 1.1),
        price("EURUSD", 1.2),
        balance("A1", 5.0),
        price("GBPUSD", 1.3),
    ]
    for event in events:
        assert pending.add(event)
    assert len(pending) == 4
    assert pending.take() == events
    assert len(pending) == 0
    assert pending.take() == []
    assert pending.coalesced == 0


def test_coalescing_keeps_the_latest_event_of_each_key_and_counts_the_replaced() -> None:
    pending = PendingWrites(coalesce=True)
    for bid in (1.1, 1.2, 1.3):
        pending.add(price("EURUSD", bid))
    pending.add(balance("A1", 5.0))
    pending.add(balance("A2", 6.0))
    pending.add(balance("A1", 7.0))
    snapshot = PositionUpdate(timestamp=T, account_id="A1", positions=[])
    pending.add(snapshot)
    taken = pending.take()
    assert price("EURUSD", 1.3) in taken
    assert price("EURUSD", 1.1) not in taken
    assert balance("A1", 7.0) in taken
    assert balance("A1", 5.0) not in taken
    assert {cache_key(e) for e in taken} == {
        ("price", "EURUSD"),
        ("balance", "A1"),
        ("balance", "A2"),
        ("positions", "A1"),
    }
    assert len(taken) == 4
    assert pending.coalesced == 3


def test_a_price_of_one_symbol_never_replaces_another_symbols() -> None:
    pending = PendingWrites(coalesce=True)
    pending.add(price("EURUSD", 1.1))
    pending.add(price("EURUSD.m", 1.2))
    assert len(pending.take()) == 2
    assert pending.coalesced == 0


def test_without_coalescing_a_backlog_at_the_limit_is_compacted_latest_wins() -> None:
    pending = PendingWrites(coalesce=False, limit=4)
    for event in (price("EURUSD", 1.1), price("GBPUSD", 1.5), price("EURUSD", 1.2)):
        pending.add(event)
    assert len(pending) == 3
    pending.add(price("EURUSD", 1.3))  # the 4th: compacted to one per key
    assert pending.coalesced == 2
    assert pending.take() == [price("GBPUSD", 1.5), price("EURUSD", 1.3)]


def test_events_without_anything_for_the_cache_are_not_queued() -> None:
    pending = PendingWrites(coalesce=True)
    report = OpenedEvent(timestamp=T, account_id="A1", position_id="p-1", status="FAILED")
    assert cache_key(report) is None
    assert not pending.add(report)
    assert len(pending) == 0
    with pytest.raises(ValueError, match="limit"):
        PendingWrites(coalesce=False, limit=0)
