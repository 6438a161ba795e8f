"""Driving order runs: this replica's running orders, and the I/O that performs each run's actions.

``Driver.drive`` performs what an ``OrderRun`` asks (requests on the account's command subject, waits, the
record in ``hb_orders`` and the result on ``hb.exec.result.<account>`` with its ``Nats-Msg-Id``, leases, the book,
metrics and logs) and feeds the run each outcome with the current time. The run speaks canonical symbols; an
OPEN is sent under the broker symbol its record holds (``OrderRecord.brokerSymbol``), and its results name it.
Terminal reports and snapshots (taken only while a SYNC is out) are offered to the run they belong to
(``on_report``, ``on_snapshot``; a terminal's ERROR about a command it did not execute, ``on_refusal``), which
wakes the run's Wait; so is a terminal's new session (``on_status``): a run waiting for a report its old session
can no longer send reconciles at once.

A run whose lease is lost (a compare-and-set lease write failed: another replica took the order over) is woken
from its Pause or Wait and fed ``on_lease_lost`` before any further action: nothing it asked for is performed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.common import logs
from hedgebridge.common.jetstream import LeanJetStream
from hedgebridge.common.obs import metrics, tracing
from hedgebridge.protocol import (
    ClosedEvent,
    DeliveryAck,
    ErrorMessage,
    ModifiedEvent,
    OpenedEvent,
    OrderCommand,
    PositionUpdate,
    ProtocolError,
    SyncCommand,
    TerminalStatus,
    pack,
    subjects,
    unpack,
    unpack_event,
    utcnow,
)

from . import orders
from . import run_actions as act
from .leases import Leases
from .order_run import OrderRun
from .projection import Projection
from .records import Records, Stored

log = logs.get("executor")
T = TypeVar("T")

# the histograms' children, looked up once (``labels`` takes a lock and a dict lookup per call)
_HOPS = {
    "delivery": metrics.HOP_LATENCY.labels(metrics.HOP_EXECUTOR_DELIVERY),
    "report": metrics.HOP_LATENCY.labels(metrics.HOP_EXECUTOR_REPORT),
    "sync": metrics.SYNC_DURATION.labels("snapshot"),
}


@dataclass(eq=False, slots=True)
class RunningOrder:
    """A run this replica drives, with its record's and its lease's last revisions and the signals that end a
    Wait (``wake``) or a Pause too (``lost``: another replica took the order over)."""

    run: OrderRun
    stored: Stored
    lease_revision: int | None = None  # this run's mark in ``hb_inflight`` (None: none written)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    lease_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sync_id: str | None = None  # the SYNC registered for it in ``Driver.syncs``

    def lose_lease(self) -> None:
        self.lost.set()
        self.wake.set()


class Driver:
    def __init__(
        self,
        owner: str,
        running: dict[str, RunningOrder],
        nats: Callable[[], NatsClient],
        records: Callable[[], Records],
        js: Callable[[], LeanJetStream],
        leases: Callable[[], Leases],
        projection: Projection,
    ) -> None:
        self.owner = owner
        self.running = running  # actionId -> the orders this replica runs
        self.syncs: dict[str, RunningOrder] = {}  # syncId -> the order waiting for that snapshot
        self._snapshots: Subscription | None = None  # POSITION_UPDATE, subscribed only while a SYNC is out
        self._watching = asyncio.Lock()
        self._unsubscribing: set[asyncio.Task[None]] = set()
        self._nats = nats
        self._records = records
        self._js = js
        self._leases = leases
        self.projection = projection

    def forget(self, order: RunningOrder) -> None:
        if self.running.get(order.run.action_id) is order:
            del self.running[order.run.action_id]

    def awaited(self, action_id: str) -> OrderCommand | None:
        """The command of an order this replica runs and takes a report for (the book reads its symbol)."""
        order = self.running.get(action_id)
        return order.run.command if order is not None and order.run.listening else None

    async def drive(self, order: RunningOrder, actions: list[act.Action]) -> tuple[act.Answer | None, list[act.Action]]:
        """Perform ``actions`` and the ones they lead to, up to an Answer (returned with the actions after it)."""
        pending = list(actions)
        try:
            while pending or (order.lost.is_set() and not order.run.done):
                if order.lost.is_set() and not order.run.done:
                    answer = [a for a in pending if isinstance(a, act.Answer)]  # the caller still gets it
                    pending = [*answer, *order.run.on_lease_lost(time.perf_counter())]  # nothing else asked
                    continue
                action = _named(pending.pop(0), order.stored.record.broker_symbol)
                if isinstance(action, act.Answer):
                    return action, pending
                pending[:0] = await self._perform(order, action)
                if order.sync_id is not None and order.sync_id != order.run.sync_id:
                    self._end_sync(order)
        except BaseException:
            if order.sync_id is not None:
                self._end_sync(order)
            raise
        return None, []

    async def _watch_snapshots(self) -> None:
        """Take POSITION_UPDATE while a SYNC is out (subscribed before the SYNC is sent, on the same connection:
        its answer cannot come first); the cache's projection takes every one of them anyway."""
        async with self._watching:
            if self._snapshots is None:
                subject = subjects.event_any_account("POSITION_UPDATE")
                self._snapshots = await self._nats().subscribe(subject, cb=self.on_snapshot)

    def _end_sync(self, order: RunningOrder) -> None:
        self.syncs.pop(order.sync_id or "", None)
        order.sync_id = None
        if not self.syncs and self._snapshots is not None:  # no SYNC out: no snapshot is awaited here
            subscription, self._snapshots = self._snapshots, None
            task = asyncio.ensure_future(_unsubscribe(subscription))
            self._unsubscribing.add(task)
            task.add_done_callback(self._unsubscribing.discard)

    async def _perform(self, order: RunningOrder, action: act.Action) -> list[act.Action]:
        run = order.run
        if isinstance(action, act.Send | act.SendSync):
            return await self._send(order, action)
        if isinstance(action, act.Pause):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(action.delay_s):
                    await order.lost.wait()  # only a lost lease ends a pause early
            return [] if order.lost.is_set() else run.on_wake(time.perf_counter(), utcnow())
        if isinstance(action, act.Wait):
            order.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(action.until - time.perf_counter(), 0.0)):
                    await order.wake.wait()
            return [] if order.lost.is_set() else run.on_wake(time.perf_counter(), utcnow())
        if isinstance(action, act.ReadVolume):
            expected = await self.projection.expected_volume(action.command)
            return run.on_volume(expected, time.perf_counter())
        if isinstance(action, act.Record):
            await self._record(order, action)
            return run.on_recorded(time.perf_counter())
        if isinstance(action, act.HoldLease):  # the lease written runs until no earlier than ``until`` (the fence)
            until = self._records().lease()
            held = await self._leases().hold_before_send(order)
            return run.on_lease_held(time.perf_counter(), until) if held else []  # else lost: the loop stops it
        if isinstance(action, act.PutLease):
            await self._leases().hold(order)
        elif isinstance(action, act.ApplyToBook):
            await self.projection.apply_reconciled(action.command, action.result)
        elif isinstance(action, act.Observe):
            _HOPS[action.hop].observe(action.seconds)
        elif isinstance(action, act.Log):
            getattr(log, action.level)(action.event, **action.fields)
        elif isinstance(action, act.Done):
            self.forget(order)
        elif isinstance(action, act.Reply):
            with contextlib.suppress(Exception):
                await self._nats().publish(action.reply_to, pack(action.result))
        return []

    async def _send(self, order: RunningOrder, action: act.Send | act.SendSync) -> list[act.Action]:
        """One request on the account's command subject; the run decides what no responders or no ack means."""
        command: OrderCommand | SyncCommand
        if isinstance(action, act.SendSync):
            command = SyncCommand(
                timestamp=utcnow(), account_id=action.account_id, sync_id=action.sync_id, reason="reconcile"
            )
            order.sync_id = action.sync_id
            self.syncs[action.sync_id] = order
            await self._watch_snapshots()
        else:  # an OPEN goes out under the broker's name the record holds (fixed when the order was accepted)
            command = orders.outbound(action.command, order.stored.record.broker_symbol)
        try:
            reply = await self._js().request(
                subjects.command(command.account_id), pack(command), action.timeout_s, headers=tracing.headers()
            )
        except NoRespondersError:
            ack = None
        except NatsTimeoutError:
            return order.run.on_unconfirmed(time.perf_counter())
        else:
            ack = unpack(reply.data, DeliveryAck)
        return order.run.on_delivery(ack, time.perf_counter())

    async def _record(self, order: RunningOrder, action: act.Record) -> None:
        """Record the result and publish it (HB_EVENTS keeps it) together: both writes leave in one flush and
        their acks come back together. The lease ends after the record is written, unless still reconciling."""
        stored, state, result = order.stored, action.state, action.result
        action_id = stored.record.action_id
        published = await _started(  # in the outgoing buffer now: it leaves in the record's socket write
            self._js().send(
                subjects.result(result.account_id),
                pack(result),
                headers={"Nats-Msg-Id": f"{action_id}:{state}:{result.status}"},
            )
        )
        changes = {"state": str(state), "result": result, "owner": self.owner}
        try:
            saved = await self._save(order, stored, changes)
        except BaseException:
            published.cancel()  # not recorded: the order is reconciled when its actionId is asked again
            raise
        ops: list[Awaitable[object]] = [published]
        if not action.keep_lease and order.run.release_lease():
            ops.append(self._leases().drop(order))
        outcomes = await asyncio.gather(*ops, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.warning("recording a result failed", action=action_id, error=repr(outcome))
        if isinstance(outcomes[0], BaseException):
            metrics.JETSTREAM_PUBLISH_FAILURES.labels("result").inc()
        order.stored = saved or stored

    async def _save(self, order: RunningOrder, stored: Stored, changes: dict[str, object]) -> Stored | None:
        """Write the order's result into its record, asking again (with backoff) while JetStream does not answer:
        the caller may have its answer already, so the record must follow. Ends when written, or when the lease
        is lost (the order's new owner records it)."""
        records = self._records()
        action_id = stored.record.action_id
        pause = 0.05
        while True:
            try:
                saved = await records.save(stored, updated_at=utcnow(), **changes)
                if saved is None:  # written meanwhile (a takeover, or a write whose answer was lost): write over it
                    fresh = await records.get(action_id)
                    saved = await records.save(fresh, updated_at=utcnow(), **changes) if fresh is not None else None
                return saved
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if order.lost.is_set():
                    log.warning("recording a result failed and the lease is lost", action=action_id, error=repr(exc))
                    return None
                log.warning("recording a result failed; writing it again", action=action_id, error=repr(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def on_report(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError as exc:
            log.warning("undecodable event", subject=msg.subject, error=exc.message)
            return
        if not isinstance(event, OpenedEvent | ClosedEvent | ModifiedEvent) or event.action_id is None:
            return
        order = self.running.get(event.action_id)
        if order is not None and order.run.offer_report(event):
            order.wake.set()

    async def on_refusal(self, msg: Msg) -> None:
        """A terminal's ERROR about a command it did not execute: the run awaiting that command's report."""
        try:
            error = unpack(msg.data, ErrorMessage)
        except ProtocolError:
            return
        account = subjects.account_of(msg.subject)
        for order in list(self.running.values()):
            if order.run.command.account_id == account and order.run.offer_refusal(error):
                order.wake.set()
                return

    async def on_status(self, msg: Msg) -> None:
        try:
            event = unpack(msg.data, TerminalStatus)
        except ProtocolError:
            return
        if event.status != "CONNECTED":
            return
        for order in list(self.running.values()):
            if order.run.command.account_id == event.account_id and order.run.offer_session(event.session_id):
                order.wake.set()

    async def on_snapshot(self, msg: Msg) -> None:
        if not self.syncs:
            return
        try:
            event = unpack(msg.data, PositionUpdate)
        except ProtocolError:
            return
        order = self.syncs.get(event.sync_id or "")
        if order is not None and order.run.offer_snapshot(event):
            order.wake.set()


def _named(action: act.Action, broker_symbol: str | None) -> act.Action:
    """An action carrying a result, the result naming the broker symbol the OPEN was sent as."""
    if broker_symbol is None or not isinstance(action, act.Answer | act.Record | act.Reply):
        return action
    return dataclasses.replace(action, result=orders.named(action.result, broker_symbol))


async def _started(sending: Awaitable[asyncio.Future[T]]) -> asyncio.Future[T]:
    """The future of a write ``sending`` starts; a write that could not start is a failed future (the record
    is written all the same)."""
    try:
        return await sending
    except Exception as exc:
        failed: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed


async def _unsubscribe(subscription: Subscription) -> None:
    with contextlib.suppress(Exception):  # closed meanwhile: nothing left to remove
        await subscription.unsubscribe()
