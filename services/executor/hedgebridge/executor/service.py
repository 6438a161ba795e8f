"""The executor's I/O layer.

- Serves order requests on ``hb.exec.order`` and batch closes on ``hb.exec.batch`` (queue group: replicas
  share the work). Each order is first recorded in JetStream KV under its actionId (an atomic create: a
  repeated actionId never sends a second command, it gets the first one's result or its state), then sent to
  the account's terminal, then answered with one definite OrderResult (see ``lifecycle``).
- An order whose outcome is unknown is never sent again: it is reconciled from a snapshot the terminal sends
  in answer to SYNC (or from its late report), and the reconciled result is published and recorded.
- A running order carries its owner's lease in ``hb_inflight``; when a replica dies, another one takes its
  orders over and reconciles them, answering the original caller if it still waits.
- Projects terminal events into the realtime cache and keeps the book of positions the system believes
  open (queue group: each event is applied once). When the cache was flushed, it asks every terminal for
  fresh snapshots; accounts are known again one by one as their snapshots arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError

from hedgebridge.common import bus, logs, streams
from hedgebridge.common.cache import RealtimeCache, RedisCache
from hedgebridge.common.obs import metrics, tracing
from hedgebridge.common.tasks import cancel_all
from hedgebridge.protocol import (
    FINAL_STATUSES,
    BatchResult,
    BookEntry,
    CloseBatch,
    CloseCommand,
    ClosedEvent,
    CloseOrder,
    DeliveryAck,
    Event,
    InflightMark,
    OpenCommand,
    OpenedEvent,
    OrderCommand,
    OrderRecord,
    OrderRequest,
    OrderResult,
    PositionUpdate,
    ProtocolError,
    SyncCommand,
    errors,
    pack,
    subjects,
    type_name,
    unpack,
    unpack_event,
    unpack_order_request,
    utcnow,
)

from . import lifecycle, orders, telemetry
from .config import ExecutorConfig
from .errors import AccountOffline, DeliveryUnconfirmed, InvalidOrder
from .lifecycle import OrderState, Trigger
from .records import Records, Stored

log = logs.get("executor")

CACHE_QUEUE = "hb-cache"
CACHE_CHECK_TIMEOUT_S = 2.0
_RESULT_SUBJECTS = ("opened", "closed")


class Executor:
    def __init__(self, config: ExecutorConfig, cache: RealtimeCache | None = None) -> None:
        self.config = config
        self.cache: RealtimeCache = cache if cache is not None else RedisCache(config.redis_url)
        self.id = config.executor_id
        self._nats: NatsClient | None = None
        self._state: streams.State | None = None
        self._records: Records | None = None
        self._reports: dict[str, tuple[OrderCommand, asyncio.Future[OpenedEvent | ClosedEvent]]] = {}
        self._syncs: dict[str, asyncio.Future[PositionUpdate]] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._running: dict[str, str] = {}  # actionId -> account of the orders this replica runs
        self._marked: set[str] = set()  # those of them holding a lease in hb_inflight (renewed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._requests: list[Subscription] = []
        self._cache_warned = 0.0
        self.rebuilds = 0
        self.obs = telemetry.attach(self)  # /healthz, /readyz, /metrics (health_port), tracing

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "executor not started"
        return self._nats

    @property
    def records(self) -> Records:
        assert self._records is not None, "executor not started"
        return self._records

    @property
    def state(self) -> streams.State:
        assert self._state is not None, "executor not started"
        return self._state

    async def start(self) -> None:
        await self.obs.start()  # first: liveness answers while NATS is still being reached
        self._nats = await bus.connect(
            self.config.nats_url, name=self.id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        self._state = await streams.ensure(self.nats, replicas=self.config.stream_replicas)
        self._records = Records(self.state.orders, self.state.inflight, self.id, self.config.lease_ms / 1000)
        for kind in _RESULT_SUBJECTS:
            await self.nats.subscribe(f"{subjects.PREFIX}.ea.*.evt.{kind}", cb=self._on_report)
        await self.nats.subscribe(f"{subjects.PREFIX}.ea.*.evt.position_update", cb=self._on_snapshot)
        await self.nats.subscribe(subjects.ALL_EVENTS, queue=CACHE_QUEUE, cb=self._on_event_for_cache)
        for subject, handler in ((subjects.ORDER_REQUEST, self._serve), (subjects.BATCH_REQUEST, self._serve_batch)):
            self._requests.append(
                await self.nats.subscribe(subject, queue=subjects.EXECUTOR_QUEUE, cb=self._spawner(handler))
            )
        await self.nats.flush()
        await self._check_cache()  # once before "ready": a rebuild at start is asked for by now
        self._background = [
            asyncio.create_task(self._keep_leases()),
            asyncio.create_task(self._watch_cache()),
        ]
        log.info("ready", executor=self.id)

    async def stop(self) -> None:
        """Stop taking requests, answer the ones in flight (bounded by the order timeout), then disconnect."""
        for sub in self._requests:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._requests = []
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.config.order_timeout_ms / 1000 + 1)
        await self.kill()

    async def kill(self) -> None:
        """Stop at once, abandoning running orders (what a crash does; their leases lapse)."""
        await cancel_all([*self._background, *self._tasks], log)
        self._background = []
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()
            self._nats = None
        await self.cache.close()
        await self.obs.stop()
        telemetry.detach(self)

    def _spawner(self, handler: Callable[[Msg], Coroutine[Any, Any, None]]) -> Callable[[Msg], Awaitable[None]]:
        async def spawn(msg: Msg) -> None:
            task = asyncio.create_task(handler(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return spawn

    # --- order requests -------------------------------------------------------------------------------------

    async def _serve(self, msg: Msg) -> None:
        started = time.perf_counter()
        span = telemetry.order_started(msg)  # the order's span, current in this task (None: tracing off)
        try:
            result = await self.submit(msg.data, started, reply_to=msg.reply or "")
        except Exception:
            log.exception("order failed inside the executor")
            result = orders.failure("OUTCOME_UNKNOWN", errors.INTERNAL, "internal executor error", None, _ms(started))
        telemetry.order_done(span, result, started)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(pack(result))

    async def submit(self, data: bytes, started: float, reply_to: str = "") -> OrderResult:
        try:
            request = _parse(data)
        except InvalidOrder as exc:
            return orders.failure("INVALID", exc.code, str(exc), None, _ms(started))
        return await self.execute(request, started, reply_to=reply_to)

    async def execute(self, request: OrderRequest, started: float, *, reply_to: str = "") -> OrderResult:
        """Run ``request`` once per actionId and return its definite result."""
        now = utcnow()
        command = orders.build_command(request, now)
        assert command.action_id is not None
        timeout_s = (request.timeout_ms or self.config.order_timeout_ms) / 1000
        record = OrderRecord(
            action_id=command.action_id,
            request=request,
            command=command,
            state=OrderState.ACCEPTED,
            owner=self.id,
            created_at=now,
            updated_at=now,
            reply_to=reply_to,
        )
        stored = await self.records.claim(record)
        if stored is None:
            return await self._repeat(command.action_id, request, timeout_s, started)
        self._running[command.action_id] = command.account_id
        self._spawn(self._lease_when_slow(command.action_id))
        settling = False
        try:
            ttl_s = (request.ttl_ms if request.ttl_ms is not None else self.config.command_ttl_ms) / 1000
            async with self._locks[command.account_id]:  # one order at a time per terminal
                result, state, unknown = await self._run(command, timeout_s, ttl_s, started)
            # the caller is answered first; the record is written right after (a repeat waits for it; after a
            # crash in between, the replica that takes the order over reconciles the same outcome)
            self._spawn(self._settle(stored, state, result, unknown))
            settling = True
            return result
        finally:
            if not settling:  # failed inside: the lease lapses and another replica reconciles the order
                self._running.pop(command.action_id, None)

    async def _settle(self, stored: Stored, state: OrderState, result: OrderResult, unknown: bool) -> None:
        if unknown:
            stored = await self._finish(stored, state, result, keep_running=True)
            await self._reconcile(stored, report_first=True)
        else:
            try:
                await self._finish(stored, state, result)
            finally:
                self._running.pop(stored.record.action_id, None)

    async def _lease_when_slow(self, action_id: str) -> None:
        """Put a lease on an order still running after ``lease_after_ms``. Most orders end sooner and never
        write one; one whose executor dies before is recovered when its actionId is asked again."""
        await asyncio.sleep(self.config.lease_after_ms / 1000)
        await self._lease(action_id)

    async def _lease(self, action_id: str) -> None:
        account = self._running.get(action_id)
        if account is not None and action_id not in self._marked:
            self._marked.add(action_id)
            await self.records.mark(action_id, account)

    async def _repeat(self, action_id: str, request: OrderRequest, timeout_s: float, started: float) -> OrderResult:
        """A second request with a known actionId: the first one's result, or its state while it runs."""
        deadline = time.perf_counter() + timeout_s
        while True:
            stored = await self.records.get(action_id)
            if stored is None:  # expired from the bucket between the create and this read
                return orders.failure("INVALID", errors.DUPLICATE_MISMATCH, "actionId already used", None, 0)
            record = stored.record
            if not orders.same_request(record.request, request):
                return orders.failure(
                    "INVALID",
                    errors.DUPLICATE_MISMATCH,
                    f"actionId {action_id} was already used for a different request",
                    record.command,
                    _ms(started),
                )
            result = record.result
            if (result is None or result.status not in FINAL_STATUSES) and await self._orphaned(stored):
                log.warning("taking over an order whose executor is gone", action=action_id, owner=record.owner)
                self._spawn(self._reconcile(stored, report_first=False))
            if result is not None and (result.status in FINAL_STATUSES or time.perf_counter() > deadline):
                return msgspec.structs.replace(result, duplicate=True, elapsed_ms=_ms(started))
            if time.perf_counter() > deadline:
                return orders.failure(
                    "IN_FLIGHT",
                    errors.IN_FLIGHT,
                    "an order with this actionId is running; ask again for its result",
                    record.command,
                    _ms(started),
                    state=record.state,
                )
            await asyncio.sleep(0.02)

    async def _orphaned(self, stored: Stored) -> bool:
        """Whether a running order has no live owner (it died before its lease was written, or the lease
        lapsed); if so, this replica takes it over (compare-and-set: one replica wins) and returns True."""
        record = stored.record
        age_ms = (utcnow() - record.updated_at).total_seconds() * 1000
        if record.action_id in self._running or age_ms < self.config.lease_after_ms + self.config.lease_ms:
            return False  # running here, or its owner may still be about to write or renew the lease
        try:
            entry = await self.state.inflight.get(record.action_id)
        except KeyNotFoundError:
            entry = None
        if entry is not None and entry.value and entry.revision is not None:
            return await self.records.take_over(record.action_id, unpack(entry.value, InflightMark), entry.revision)
        return await self.records.claim_mark(record.action_id, record.command.account_id)

    async def _run(
        self, command: OrderCommand, timeout_s: float, ttl_s: float, started: float
    ) -> tuple[OrderResult, OrderState, bool]:
        """Send ``command`` (again after a retryable refusal) until a definite outcome.
        Returns the result, the final state, and whether the outcome is unknown (to reconcile)."""
        assert command.action_id is not None
        action_id = command.action_id
        fields = {"account": command.account_id, "action": action_id, "type": type_name(command)}
        state = OrderState.ACCEPTED
        attempt = 0
        while True:
            future: asyncio.Future[OpenedEvent | ClosedEvent] = asyncio.get_running_loop().create_future()
            self._reports[action_id] = (command, future)
            try:
                reply = await self._deliver(command, ttl_s, timeout_s)
            except AccountOffline as exc:
                state = lifecycle.advance(state, Trigger.TTL_OVER)
                log.info("account unreachable until the order's time-to-live ran out", **fields)
                del self._reports[action_id]
                expired = orders.failure("EXPIRED", errors.EXPIRED, str(exc), command, _ms(started), state=state)
                return expired, state, False
            except DeliveryUnconfirmed as exc:
                state = lifecycle.advance(state, Trigger.DELIVERY_UNCERTAIN)
                log.warning("delivery not confirmed", **fields)
                return self._unknown(command, exc.code, str(exc), state, attempt, started), state, True
            ack = unpack(reply.data, DeliveryAck)
            if ack.uncertain:
                state = lifecycle.advance(state, Trigger.DELIVERY_UNCERTAIN)
                log.warning("delivery uncertain", reason=ack.reason, **fields)
                result = self._unknown(command, errors.DELIVERY_FAILED, ack.reason, state, attempt, started)
                return result, state, True
            state = lifecycle.advance(state, Trigger.DELIVERED)
            delivered_at = time.perf_counter()
            remaining = timeout_s - (delivered_at - started)
            try:
                async with asyncio.timeout(max(remaining, 0.0)):
                    report = await asyncio.shield(future)  # kept for a late report after the timeout
                metrics.HOP_LATENCY.labels(metrics.HOP_EXECUTOR_REPORT).observe(time.perf_counter() - delivered_at)
            except TimeoutError:
                state = lifecycle.advance(state, Trigger.TIMED_OUT)
                log.warning("no result in time", timeout_s=timeout_s, **fields)
                message = f"sent, but no result within {timeout_s:g}s: reconciling (never resent)"
                result = self._unknown(command, errors.OUTCOME_UNKNOWN, message, state, attempt, started)
                return result, state, True
            verdict = lifecycle.judge(command, report, attempt, self.config.max_attempts)
            state = lifecycle.advance(state, verdict.trigger)
            if verdict.trigger is Trigger.RETRY:
                delay = lifecycle.retry_delay_s(attempt, self.config.retry_base_ms)
                log.info("retrying", retcode=report.error_code, attempt=attempt + 1, delay_s=delay, **fields)
                await asyncio.sleep(delay)
                attempt += 1
                command = msgspec.structs.replace(command, attempt=attempt, timestamp=utcnow())
                continue
            result = orders.result_of(command, report, verdict, state, attempt + 1, _ms(started))
            if state is OrderState.OUTCOME_UNKNOWN:  # the trade server itself did not know (timeout, error)
                log.warning("trade server outcome unknown", retcode=report.error_code, **fields)
                return result, state, True
            del self._reports[action_id]
            log.info("order done", status=result.status, elapsed_ms=round(result.elapsed_ms, 3), **fields)
            return result, state, False

    def _unknown(
        self, command: OrderCommand, code: str, message: str, state: OrderState, attempt: int, started: float
    ) -> OrderResult:
        return orders.failure(
            "OUTCOME_UNKNOWN", code, message, command, _ms(started), state=state, attempts=attempt + 1
        )

    async def _deliver(self, command: OrderCommand | SyncCommand, ttl_s: float, timeout_s: float) -> Msg:
        """Send the command to the gateway holding the account and return its DeliveryAck message.

        "No responders" (or a gateway that no longer holds the terminal) means nothing was sent, so it is
        safe to ask again: until the time-to-live runs out an account whose terminal is reconnecting still
        gets the command. Raises AccountOffline when it runs out, DeliveryUnconfirmed when a gateway took
        the command but did not answer in time."""
        subject = subjects.command(command.account_id)
        payload = pack(command)
        delivery_s = min(self.config.delivery_timeout_ms / 1000, timeout_s)
        started = time.perf_counter()
        pause = 0.01
        while True:
            try:
                reply = await self.nats.request(subject, payload, delivery_s, headers=tracing.headers())
            except NoRespondersError:
                reply = None
            except NatsTimeoutError:
                raise DeliveryUnconfirmed(
                    "the gateway did not confirm delivery in time; reconciling (never resent)"
                ) from None
            if reply is not None:
                ack = unpack(reply.data, DeliveryAck)
                if ack.delivered or ack.uncertain:
                    metrics.HOP_LATENCY.labels(metrics.HOP_EXECUTOR_DELIVERY).observe(time.perf_counter() - started)
                    return reply
            if time.perf_counter() - started + pause > ttl_s:
                raise AccountOffline(f"account {command.account_id} unreachable for {ttl_s:g}s; not sent")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def _finish(
        self, stored: Stored, state: OrderState, result: OrderResult, *, keep_running: bool = False
    ) -> Stored:
        """Record the result, publish it (HB_EVENTS keeps it), and end the lease unless still reconciling."""
        action_id = stored.record.action_id
        saved = await self.records.save(stored, state=str(state), result=result, updated_at=utcnow(), owner=self.id)
        if saved is None:  # written meanwhile (a takeover after a long pause): read and write over it
            fresh = await self.records.get(action_id)
            saved = (
                await self.records.save(fresh, state=str(state), result=result, updated_at=utcnow(), owner=self.id)
                if fresh is not None
                else None
            )
        ops: list[Awaitable[object]] = [
            self.state.js.publish(
                subjects.result(result.account_id),
                pack(result),
                headers={"Nats-Msg-Id": f"{action_id}:{state}:{result.status}"},
            )
        ]
        if not keep_running and action_id in self._marked:
            self._marked.discard(action_id)
            ops.append(self.records.unmark(action_id))
        outcomes = await asyncio.gather(*ops, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                log.warning("recording a result failed", action=action_id, error=repr(outcome))
        if isinstance(outcomes[0], BaseException):
            metrics.JETSTREAM_PUBLISH_FAILURES.labels("result").inc()
        return saved or stored

    # --- reconciliation -------------------------------------------------------------------------------------

    async def _reconcile(self, stored: Stored, *, report_first: bool) -> None:
        """Settle an order whose outcome is unknown: from the terminal's late report, or from a snapshot
        that answers a SYNC sent after the command (the terminal handles commands in order)."""
        record = stored.record
        command = record.command
        assert command.action_id is not None
        action_id = command.action_id
        self._running[action_id] = command.account_id
        self._marked.add(action_id)  # reconciling can take long: keep a lease (a takeover holds one already)
        await self.records.mark(action_id, command.account_id)
        entry = self._reports.get(action_id) if report_first else None
        if entry is None:
            entry = (command, asyncio.get_running_loop().create_future())
            self._reports[action_id] = entry
        report_future = entry[1]
        deadline = time.perf_counter() + self.config.reconcile_timeout_ms / 1000
        pause = 0.1
        result: OrderResult | None = None
        try:
            while result is None and time.perf_counter() < deadline:
                if report_future.cancelled():
                    report_future = asyncio.get_running_loop().create_future()
                    self._reports[action_id] = (command, report_future)
                if report_future.done():
                    report = report_future.result()
                    verdict = lifecycle.judge(command, report, 0, 1)
                    result = orders.result_of(command, report, verdict, OrderState.RECONCILED, 1, 0.0)
                    if result.status not in FINAL_STATUSES:  # the server itself did not know: ask the terminal
                        result = None
                        report_future = asyncio.get_running_loop().create_future()
                        self._reports[action_id] = (command, report_future)
                    else:
                        result = msgspec.structs.replace(result, reconciled=True)
                    continue
                snapshot = await self._snapshot(command.account_id, report_future)
                if snapshot is None:
                    if not report_future.done():
                        await asyncio.sleep(pause)
                        pause = min(pause * 2, 5.0)
                    continue
                expected = await self._expected_volume(command)
                outcome = lifecycle.reconcile(command, snapshot.positions, expected)
                result = orders.reconciled_result(command, outcome, OrderState.RECONCILED, 1)
        finally:
            self._reports.pop(action_id, None)
        if result is None:
            log.error("order still unreconciled", action=action_id, account=command.account_id)
            self._running.pop(action_id, None)
            return
        log.info("order reconciled", action=action_id, account=command.account_id, status=result.status)
        await self._apply_to_book(command, result)
        await self._finish(stored, OrderState.RECONCILED, result)
        self._running.pop(action_id, None)
        if record.reply_to and not report_first:  # a takeover: the first caller may still be waiting
            with contextlib.suppress(Exception):
                await self.nats.publish(record.reply_to, pack(result))

    async def _snapshot(
        self, account_id: str, report: asyncio.Future[OpenedEvent | ClosedEvent]
    ) -> PositionUpdate | None:
        """Ask the terminal for a snapshot and wait for it (or for the report); None when it did not come."""
        sync_id = uuid.uuid4().hex
        future: asyncio.Future[PositionUpdate] = asyncio.get_running_loop().create_future()
        self._syncs[sync_id] = future
        try:
            command = SyncCommand(timestamp=utcnow(), account_id=account_id, sync_id=sync_id, reason="reconcile")
            timeout_s = self.config.sync_timeout_ms / 1000
            try:
                await self._deliver(command, 0.0, timeout_s)
            except (AccountOffline, DeliveryUnconfirmed):
                return None
            waiting: list[asyncio.Future[Any]] = [future, report]
            asked = time.perf_counter()
            await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if future.done():
                metrics.SYNC_DURATION.labels("snapshot").observe(time.perf_counter() - asked)
            return future.result() if future.done() else None
        finally:
            self._syncs.pop(sync_id, None)

    async def _apply_to_book(self, command: OrderCommand, result: OrderResult) -> None:
        """Reconciled fills never came as reports, so the book learns of them here."""
        if result.status not in ("FILLED", "PARTIALLY_FILLED"):
            return
        try:
            if isinstance(command, OpenCommand):
                entry = orders.book_entry(result, command, utcnow())
                if entry is not None:
                    await self.state.book.put(orders.book_key(entry.account_id, entry.mt_ticket), pack(entry))
            elif command.mt_ticket is not None and result.status == "FILLED":
                await self.state.book.delete(orders.book_key(command.account_id, command.mt_ticket))
        except Exception as exc:
            log.warning("book update failed", error=repr(exc))

    async def _keep_leases(self) -> None:
        """Renew the leases of the orders this replica runs; take over orders whose owner went silent."""
        interval = self.config.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            try:
                for action_id in list(self._marked):
                    account = self._running.get(action_id)
                    if account is not None:
                        await self.records.mark(action_id, account)
                await self._take_over_lapsed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("lease upkeep failed", error=repr(exc))

    async def _take_over_lapsed(self) -> None:
        try:
            keys = await self.state.inflight.keys()
        except Exception:  # nats-py raises NoKeysError when the bucket is empty
            return
        for action_id in keys:
            if action_id in self._running:
                continue
            try:
                entry = await self.state.inflight.get(action_id)
            except KeyNotFoundError:
                continue
            if entry.value is None or entry.revision is None:
                continue
            mark = unpack(entry.value, InflightMark)
            if mark.owner == self.id or not await self.records.take_over(action_id, mark, entry.revision):
                continue
            stored = await self.records.get(action_id)
            if stored is None:
                await self.records.unmark(action_id)
                continue
            if stored.record.result is not None and stored.record.result.status in FINAL_STATUSES:
                await self.records.unmark(action_id)
                continue
            log.warning("taking over an order", action=action_id, previous_owner=mark.owner)
            self._spawn(self._reconcile(stored, report_first=False))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background order work failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expected_volume(self, command: OrderCommand) -> float | None:
        """The volume of the position a CLOSE targets, as the book knows it (for reconciling a partial)."""
        if not isinstance(command, CloseCommand) or command.mt_ticket is None:
            return None
        try:
            entry = await self.state.book.get(orders.book_key(command.account_id, command.mt_ticket))
        except KeyNotFoundError:
            return None
        return unpack(entry.value, BookEntry).volume if entry.value else None

    # --- batch close ----------------------------------------------------------------------------------------

    async def _serve_batch(self, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            batch = unpack(msg.data, CloseBatch)
        except ProtocolError as exc:
            result = BatchResult(
                action_id="", results=[orders.failure("INVALID", errors.INVALID_REQUEST, exc.message, None, 0)]
            )
        else:
            result = await self.close_batch(batch, started)
        telemetry.batch_done(result.results, started)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(pack(result))

    async def close_batch(self, batch: CloseBatch, started: float) -> BatchResult:
        """Close every item concurrently (one at a time per terminal); item ``i`` runs as ``<actionId>-<i>``."""
        batch_id = batch.action_id or orders.new_id()
        requests = [
            CloseOrder(
                account_id=item.account_id,
                position_id=item.position_id,
                mt_ticket=item.mt_ticket,
                volume=item.volume,
                action_id=f"{batch_id}-{i}",
                user_id=batch.user_id,
                exit_reason=batch.exit_reason,
                timeout_ms=batch.timeout_ms,
                ttl_ms=batch.ttl_ms,
            )
            for i, item in enumerate(batch.items)
        ]
        results = await asyncio.gather(*(self.execute(r, started) for r in requests))
        return BatchResult(action_id=batch_id, results=list(results), elapsed_ms=_ms(started))

    # --- terminal reports -----------------------------------------------------------------------------------

    async def _on_report(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError as exc:
            log.warning("undecodable event", subject=msg.subject, error=exc.message)
            return
        if not isinstance(event, OpenedEvent | ClosedEvent) or event.action_id is None:
            return
        entry = self._reports.get(event.action_id)
        if entry is None:
            return
        command, future = entry
        if orders.matches(command, event) and not future.done():
            future.set_result(event)

    async def _on_snapshot(self, msg: Msg) -> None:
        if not self._syncs:
            return
        try:
            event = unpack(msg.data, PositionUpdate)
        except ProtocolError:
            return
        future = self._syncs.get(event.sync_id or "")
        if future is not None and not future.done():
            future.set_result(event)

    # --- realtime cache and book ----------------------------------------------------------------------------

    async def _on_event_for_cache(self, msg: Msg) -> None:
        try:
            event = unpack_event(msg.data)
        except ProtocolError:
            return
        try:
            if isinstance(event, OpenedEvent | ClosedEvent):
                await self._book(event)
            else:
                await self.cache.apply(event)
        except Exception as exc:  # the cache is rebuildable: a failed write must not stop the executor
            now = time.monotonic()
            if now - self._cache_warned > 5:
                self._cache_warned = now
                log.warning("cache or book write failed", error=f"{type(exc).__name__}: {exc}")

    async def _book(self, event: Event) -> None:
        """Keep the book of positions the system believes open from the terminals' trade reports."""
        if isinstance(event, OpenedEvent) and event.status == "SUCCESS" and event.mt_ticket is not None:
            request = self._reports.get(event.action_id or "")
            command = request[0] if request is not None else None
            if isinstance(command, OpenCommand) or command is None:
                await self._book_open(event, command)
        elif isinstance(event, ClosedEvent) and event.status == "SUCCESS" and event.mt_ticket is not None:
            key = orders.book_key(event.account_id, event.mt_ticket)
            if event.remaining_volume:
                try:
                    entry = await self.state.book.get(key)
                except KeyNotFoundError:
                    return
                if entry.value:
                    book = unpack(entry.value, BookEntry)
                    await self.state.book.put(key, pack(msgspec.structs.replace(book, volume=event.remaining_volume)))
            else:
                await self.state.book.delete(key)

    async def _book_open(self, event: OpenedEvent, command: OpenCommand | None) -> None:
        if event.mt_ticket is None or event.price is None or event.volume is None:
            return
        symbol, side = event.symbol, event.side
        if symbol is None or side is None:  # an EA that does not describe the position: ask the record
            if command is None:
                stored = await self.records.get(event.action_id or "")
                if stored is not None and isinstance(stored.record.command, OpenCommand):
                    command = stored.record.command
            if command is None:
                return
            symbol, side = command.symbol, command.side
        entry = BookEntry(
            account_id=event.account_id,
            mt_ticket=event.mt_ticket,
            position_id=event.position_id,
            action_id=event.action_id,
            symbol=symbol,
            side=side,
            volume=event.volume,
            open_price=event.price,
            opened_at=event.timestamp,
        )
        await self.state.book.put(orders.book_key(event.account_id, event.mt_ticket), pack(entry))

    async def _watch_cache(self) -> None:
        interval = self.config.cache_check_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._check_cache()

    async def _check_cache(self) -> None:
        """Notice a flushed or restarted cache and ask every terminal for fresh snapshots."""
        try:
            async with asyncio.timeout(CACHE_CHECK_TIMEOUT_S):
                rebuild = await self.cache.epoch() is None and await self.cache.mark_epoch(f"{self.id}:{time.time()}")
            if rebuild:
                self.rebuilds += 1
                log.warning("cache empty: asking every terminal for snapshots", executor=self.id)
                await self.nats.publish(subjects.GATEWAY_SYNC, b"cache rebuild")
                await self.nats.flush()
        except Exception as exc:
            now = time.monotonic()
            if now - self._cache_warned > 5:
                self._cache_warned = now
                log.warning("cache check failed", error=f"{type(exc).__name__}: {exc}")


def _parse(data: bytes) -> OrderRequest:
    try:
        return unpack_order_request(data)
    except ProtocolError as exc:
        raise InvalidOrder(exc.message) from None


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
