"""When a running order may have lost its owner (``leases.may_be_orphaned``), with no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hedgebridge.executor import orders
from hedgebridge.executor.leases import may_be_orphaned
from hedgebridge.executor.lifecycle import OrderState
from hedgebridge.protocol import CloseOrder, OrderRecord

T = datetime(2026, 11, 28, tzinfo=UTC)
REQUEST = CloseOrder(account_id="A1", mt_ticket="7", action_id="c-1")
RECORD = OrderRecord(
    action_id="c-1",
    request=REQUEST,
    command=orders.build_command(REQUEST, T),
    state=OrderState.SENT,
    owner="ex-1",
    created_at=T,
    updated_at=T,
)


def test_an_owner_that_may_still_write_its_lease_is_not_orphaned() -> None:
    assert not may_be_orphaned(RECORD, T + timedelta(milliseconds=5019), lease_after_ms=20, lease_ms=5000)


def test_an_order_older_than_lease_after_and_the_lease_may_be_orphaned() -> None:
    assert may_be_orphaned(RECORD, T + timedelta(milliseconds=5020), lease_after_ms=20, lease_ms=5000)
