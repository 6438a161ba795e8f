"""When a running order may have lost its owner (``leases.may_be_orphaned``), and how a lease check before a
send treats a failed KV request, with no server (``Records`` answers from the test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from nats.js.kv import KeyValue

from hedgebridge.executor import orders
from hedgebridge.executor.driver import RunningOrder
from hedgebridge.executor.leases import Leases, may_be_orphaned
from hedgebridge.executor.lifecycle import OrderState
from hedgebridge.executor.order_run import Limits, OrderRun
from hedgebridge.executor.records import Records, Stored
from hedgebridge.protocol import CloseOrder, OrderRecord

T = datetime(2026, 11, 28, tzinfo=UTC)
REQUEST = CloseOrder(account_id="A1", mt_ticket="7", action_id="c-1")
LIMITS = Limits(
    delivery_timeout_s=2.0,
    max_attempts=3,
    retry_base_ms=50,
    reconcile_timeout_s=300.0,
    sync_timeout_s=2.0,
    lease_after_s=0.02,
)
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


class FlakyRecords(Records):
    """``Records`` whose lease writes fail ``failures`` times (record reads ``read_failures`` times) before they
    answer: the next revision, or None for a lost compare-and-set (``lost``)."""

    def __init__(self, failures: int, *, lost: bool = False, read_failures: int = 0) -> None:
        super().__init__(cast(KeyValue, None), cast(KeyValue, None), "ex-1", 5.0)
        self.failures = failures
        self.read_failures = read_failures
        self.lost = lost
        self.writes: list[int | None] = []

    async def mark(self, action_id: str, account_id: str, last: int | None) -> int | None:
        self.writes.append(last)
        if self.failures:
            self.failures -= 1
            raise TimeoutError("kv request timed out")
        return None if self.lost else (last or 0) + 1

    async def get(self, action_id: str) -> Stored | None:
        if self.read_failures:
            self.read_failures -= 1
            raise TimeoutError("kv request timed out")
        return Stored(RECORD, 1)


def leased_order() -> RunningOrder:
    run = OrderRun(orders.build_command(REQUEST, T), 0.0, 10.0, 60.0, LIMITS)
    run.leased = True
    return RunningOrder(run=run, stored=Stored(RECORD, 1), lease_revision=1)


def leases_on(records: Records, lease_ms: int) -> Leases:
    return Leases(
        records, cast(KeyValue, None), {}, lambda stored, revision: None, lease_ms=lease_ms, lease_after_ms=20
    )


async def test_a_failed_lease_check_is_asked_again_and_then_holds() -> None:
    order = leased_order()
    records = FlakyRecords(failures=2)
    assert await leases_on(records, lease_ms=5000).hold_before_send(order)
    assert records.writes == [1, 1, 1]  # the same revision each time: a failed request changed nothing
    assert (order.lease_revision, order.lost.is_set()) == (2, False)


async def test_a_lease_that_cannot_be_verified_for_a_lease_period_is_lost() -> None:
    order = leased_order()
    assert not await leases_on(FlakyRecords(failures=1000), lease_ms=120).hold_before_send(order)
    assert order.lost.is_set()  # the order stops: it never sends unverified


async def test_a_lost_compare_and_set_is_not_asked_again() -> None:
    order = leased_order()
    records = FlakyRecords(failures=0, lost=True)
    assert not await leases_on(records, lease_ms=5000).hold_before_send(order)
    assert (records.writes, order.lost.is_set()) == ([1], True)


async def test_a_lease_written_before_a_failed_record_read_is_renewed_from_its_new_revision() -> None:
    order = leased_order()
    records = FlakyRecords(failures=0, read_failures=1)
    assert await leases_on(records, lease_ms=5000).hold_before_send(order)
    assert records.writes == [1, 2]  # the second write continues from the first one's revision
    assert order.lease_revision == 3
