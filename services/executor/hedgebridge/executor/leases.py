"""Leases on the orders this replica runs (``hb_inflight``) and the take-over of orders whose owner is gone.

- An order still running ``lease_after_ms`` after its first send gets a lease (its run decides:
  ``OrderRun.on_lease_timer``); most orders end sooner and never write one. One waiting for its terminal's
  previous order gets it after ``lease_after_ms`` plus half a lease (``Limits.queued_grace_s``): half a lease
  before another replica may find it orphaned, and under load the wait costs no lease writes.
- The leases held are renewed every third of ``lease_ms``; a lease that lapsed belongs to a replica that went
  silent: this one takes the order over (compare-and-set, one replica wins) and reconciles it. That replica may
  be an earlier run of this one under the same name (a fixed ``HEDGEBRIDGE_EXECUTOR_ID``): an order this run
  does not run is taken over whatever name its lease holds.
- A running order with no lease at all (its owner died before writing one) is taken over when its actionId is
  asked again (``orphaned``).
- Lease lost: a replica that was only paused (a long GC, SIGSTOP, a stalled loop) may wake up after another one
  took its order over. Every lease write is therefore compare-and-set on the revision this run last wrote (a
  create for its first, the take-over's revision for a taken-over run), and a run past ``lease_after_ms``
  holds its lease (``hold``, which also finds the order's record unchanged) before each send. A write that
  fails means another replica owns the order: the order is told (``lose_lease``: it is woken, and its driver
  feeds ``OrderRun.on_lease_lost``), never sends again and records nothing. A command already on its way when
  the replica paused carries its fence (``fence``: ``notAfter``, a margin before the lease could lapse): the
  terminal link refuses it unsent once that moment passed.

``may_be_orphaned`` is the pure rule; the rest is the thin I/O around ``Records``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any, Protocol

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from hedgebridge.common import logs
from hedgebridge.protocol import FINAL_STATUSES, InflightMark, OrderRecord, unpack

from .order_run import OrderRun
from .records import Records, Stored

log = logs.get("executor")


class Running(Protocol):
    """What the upkeep needs of a running order: its run (which decides on its lease), its record, the revision
    of its lease (None: none written yet), the lock that orders its lease writes, and how to tell it it lost."""

    run: OrderRun
    stored: Stored
    lease_revision: int | None
    lease_lock: asyncio.Lock

    def lose_lease(self) -> None: ...


def may_be_orphaned(record: OrderRecord, now: datetime, lease_after_ms: int, lease_ms: int) -> bool:
    """Whether a running order's owner had time to write or renew its lease and may be gone."""
    age_ms = (now - record.updated_at).total_seconds() * 1000
    return age_ms >= lease_after_ms + lease_ms


class Leases:
    def __init__(
        self,
        records: Records,
        inflight: KeyValue,
        running: Mapping[str, Running],
        take_over: Callable[[Stored, int], None],
        *,
        lease_ms: int,
        lease_after_ms: int,
    ) -> None:
        self.records = records
        self.inflight = inflight
        self.running = running  # actionId -> the run of each order this replica runs
        self.take_over = take_over  # start reconciling an order this replica took over (with its lease revision)
        self.lease_ms = lease_ms
        self.lease_after_ms = lease_after_ms

    async def hold(self, order: Running, *, record_unchanged: bool = False) -> bool:
        """Write the order's lease by compare-and-set (create the first); with ``record_unchanged``, also find
        its record as this replica last wrote it. False when it no longer runs here; when another replica's
        mark or record is there, the order is told it lost its lease."""
        run = order.run
        async with order.lease_lock:
            if run.done or not run.leased:
                return False  # ended, or its lease dropped: nothing to write
            revision = await self.records.mark(run.action_id, run.command.account_id, order.lease_revision)
            if revision is None:
                order.lose_lease()
                return False
            order.lease_revision = revision  # kept before the record is read: a failed read leaves it right
            if record_unchanged:
                current = await self.records.get(run.action_id)
                if current is None or current.revision != order.stored.revision:
                    order.lose_lease()
                    return False
            return True

    async def hold_before_send(self, order: Running) -> bool:
        """``hold`` before a (re)send. A failed KV request (not a lost compare-and-set) is asked again with
        backoff; when the lease cannot be verified for a whole lease period, another replica may own the order
        by now, so the order is told it lost its lease: a command is never sent unverified."""
        give_up = time.monotonic() + self.lease_ms / 1000
        pause = 0.05
        while True:
            try:
                return await self.hold(order, record_unchanged=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                fields = {"action": order.run.action_id, "error": repr(exc)}
                if time.monotonic() + pause >= give_up:
                    log.warning("lease not verified for a whole lease period: the order stops", **fields)
                    order.lose_lease()
                    return False
                log.warning("lease check failed; asking again", **fields)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def drop(self, order: Running) -> None:
        """The order's final result is recorded: its lease is over."""
        async with order.lease_lock:
            await self.records.unmark(order.run.action_id)
            order.lease_revision = None

    def when_slow(
        self, action_id: str, spawn: Callable[[Coroutine[Any, Any, None]], None], after_s: float | None = None
    ) -> asyncio.TimerHandle:
        """Put a lease on the order ``action_id`` if it still runs after ``after_s`` (``lease_after_ms`` unless
        given): a timer on the loop (most orders end sooner, so no task is started for them), the lease written
        by a task ``spawn`` starts."""

        def due() -> None:
            order = self.running.get(action_id)
            if order is not None and order.run.on_lease_timer():
                spawn(self._hold_slow(order))

        return asyncio.get_running_loop().call_later(self.lease_after_ms / 1000 if after_s is None else after_s, due)

    async def _hold_slow(self, order: Running) -> None:
        await self.hold(order)

    async def keep(self) -> None:
        """Renew the leases of the orders this replica runs; take over orders whose owner went silent."""
        interval = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                for order in list(self.running.values()):
                    if order.run.on_renew():
                        await self.hold(order)  # a renewal that fails tells the order it lost its lease
                await self.take_over_lapsed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease upkeep failed", error=repr(exc))

    async def take_over_lapsed(self) -> None:
        try:
            keys = await self.inflight.keys()
        except Exception:  # nats-py raises NoKeysError when the bucket is empty
            return
        for action_id in keys:
            if action_id in self.running:
                continue
            try:
                entry = await self.inflight.get(action_id)
            except KeyNotFoundError:
                continue
            if entry.value is None or entry.revision is None:
                continue
            mark = unpack(entry.value, InflightMark)  # this replica's own name too: an earlier run of it held
            revision = await self.records.take_over(action_id, mark, entry.revision)
            if revision is None:
                continue
            stored = await self.records.get(action_id)
            if stored is None:
                await self.records.unmark(action_id)
                continue
            if stored.record.result is not None and stored.record.result.status in FINAL_STATUSES:
                await self.records.unmark(action_id)
                continue
            log.warning("taking over an order", action=action_id, previous_owner=mark.owner)
            self.take_over(stored, revision)

    async def orphaned(self, stored: Stored, now: datetime) -> int | None:
        """Whether a running order has no live owner (it died before its lease was written, or the lease
        lapsed); if so, this replica takes it over (compare-and-set: one replica wins) and returns the revision
        of its lease, else None."""
        record = stored.record
        if record.action_id in self.running or not may_be_orphaned(record, now, self.lease_after_ms, self.lease_ms):
            return None  # running here, or its owner may still be about to write or renew the lease
        try:
            entry = await self.inflight.get(record.action_id)
        except KeyNotFoundError:
            entry = None
        if entry is not None and entry.value and entry.revision is not None:
            return await self.records.take_over(record.action_id, unpack(entry.value, InflightMark), entry.revision)
        return await self.records.claim_mark(record.action_id, record.command.account_id)
