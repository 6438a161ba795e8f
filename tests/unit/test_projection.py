"""The book's pure rules (``projection.opened_entry``, ``reconciled_change``), with no server."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from hedgebridge.executor import orders
from hedgebridge.executor.lifecycle import OrderState, Reconciled
from hedgebridge.executor.projection import BookChange, opened_entry, reconciled_change
from hedgebridge.protocol import CloseOrder, OpenCommand, OpenedEvent, OpenOrder, errors

T = datetime(2026, 11, 28, tzinfo=UTC)
_OPEN = orders.build_command(OpenOrder(account_id="A1", symbol="EURUSD", side="SELL", volume=1.0, action_id="a-1"), T)
assert isinstance(_OPEN, OpenCommand)
OPEN: OpenCommand = _OPEN
CLOSE = orders.build_command(CloseOrder(account_id="A1", mt_ticket="7", action_id="c-1"), T)


def report(symbol: str | None = "GBPUSD", side: str | None = "BUY") -> OpenedEvent:
    return OpenedEvent(
        timestamp=T,
        account_id="A1",
        position_id=OPEN.position_id,
        action_id="a-1",
        mt_ticket="7",
        price=1.1,
        volume=0.5,
        status="SUCCESS",
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
    )


def test_a_report_that_describes_its_position_is_booked_as_reported() -> None:
    entry = opened_entry(report(), None)
    assert entry is not None
    assert (entry.symbol, entry.side, entry.volume, entry.mt_ticket) == ("GBPUSD", "BUY", 0.5, "7")


def test_a_report_without_symbol_takes_it_from_the_command_or_is_not_booked() -> None:
    entry = opened_entry(report(symbol=None), OPEN)
    assert entry is not None
    assert (entry.symbol, entry.side) == ("EURUSD", "SELL")
    assert opened_entry(report(side=None), None) is None


def test_a_reconciled_open_puts_its_position_and_a_reconciled_close_removes_it() -> None:
    filled = orders.reconciled_result(OPEN, _reconciled("FILLED"), OrderState.RECONCILED, 1)
    filled = msgspec.structs.replace(filled, mt_ticket="7", volume=1.0, price=1.2)
    change = reconciled_change(OPEN, filled, T)
    assert change is not None
    assert change.key == "A1.7"
    assert change.entry is not None
    assert (change.entry.volume, change.entry.open_price) == (1.0, 1.2)
    closed = orders.reconciled_result(CLOSE, _reconciled("FILLED"), OrderState.RECONCILED, 1)
    assert reconciled_change(CLOSE, closed, T) == BookChange("A1.7", None)


def test_a_partial_close_or_an_order_that_did_not_execute_changes_nothing() -> None:
    partial = orders.reconciled_result(CLOSE, _reconciled("PARTIALLY_FILLED"), OrderState.RECONCILED, 1)
    assert reconciled_change(CLOSE, partial, T) is None
    rejected = orders.reconciled_result(OPEN, _reconciled("REJECTED"), OrderState.RECONCILED, 1)
    assert reconciled_change(OPEN, rejected, T) is None


def _reconciled(status: str) -> Reconciled:
    return Reconciled(status, errors.PARTIAL_FILL if status == "PARTIALLY_FILLED" else None, None)
