"""The executor's I/O loop: it performs what each order's run (``order_run``) asks and feeds it what happened.

- Serves order requests on ``hb.exec.order`` and batch closes on ``hb.exec.batch`` (queue group: replicas
  share the work). Each order is first recorded in JetStream KV under its actionId (an atomic create: a
  repeated actionId never sends a second command, it gets the first one's result or its state, see
  ``repeat``), then sent to the account's terminal, then answered with one definite OrderResult.
- An order whose outcome is unknown is never sent again: it is reconciled from a snapshot the terminal sends
  in answer to SYNC (or from its late report), and the reconciled result is published and recorded.
- A running order carries its owner's lease in ``hb_inflight``; when a replica dies, another one takes its
  orders over and reconciles them, answering the original caller if it still waits (``leases``). A replica
  that finds its lease lost stops the order at once and leaves the caller's inbox to the new owner. An order
  whose replica died before writing its lease is found by the search for orders nobody owns (``orphans``).
- Terminal events are projected into the realtime cache and the book (``projection``; queue group: each
  event is applied once); the symbols' rules they report are kept in ``hb_symbols`` and every order is named by
  its account's symbol map (``hb_symbol_map``) and checked against them before anything is recorded or sent
  (``symbols``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hedgebridge.common import bus, logs, streams
from hedgebridge.common.cache import RealtimeCache, RedisCache
from hedgebridge.common.jetstream import LeanJetStream
from hedgebridge.common.symbol_maps import MapMirror
from hedgebridge.common.tasks import acquire_by, cancel_all
from hedgebridge.protocol import (
    BatchResult,
    CloseBatch,
    ModifyCommand,
    ModifyOrder,
    OrderCommand,
    OrderRequest,
    OrderResult,
    subjects,
    utcnow,
)

from . import answers, batches, orders, telemetry
from .answers import Answering, HandedOver
from .config import ExecutorConfig
from .driver import Driver, RunningOrder
from .errors import InvalidOrder
from .leases import Leases
from .order_run import OrderRun
from .orphans import OrphanSearch
from .projection import Projection
from .records import Records, Stored
from .repeat import CheckOrphan, Repeat, Rerun
from .run_actions import (
    Action,
    Answer,
)
from .symbols import Screened, SymbolBook

log = logs.get("executor")


CACHE_QUEUE = "hb-cache"
_RESULT_SUBJECTS = ("opened", "closed", "modified")


class Executor:
    def __init__(self, config: ExecutorConfig, cache: RealtimeCache | None = None) -> None:
        self.config = config
        self.cache: RealtimeCache = cache if cache is not None else RedisCache(config.redis_url)
        self.id = config.executor_id
        self.limits = config.limits
        self._nats: NatsClient | None = None
        self._lean: LeanJetStream | None = None
        self._state: streams.State | None = None
        self._records: Records | None = None
        self._leases: Leases | None = None
        self.orphans: OrphanSearch | None = None  # the search for orders nobody owns, once started
        self._running: dict[str, RunningOrder] = {}  # actionId -> the orders this replica runs
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._requests: list[Subscription] = []
        self.symbols = SymbolBook(lambda: self.state.symbols)
        self.maps = MapMirror()  # every account's symbol map (hb_symbol_map), watched
        self.projection = Projection(
            self.cache,
            self.id,
            lambda: self.state.book,
            lambda: self.records,
            lambda: self.nats,
            self._awaited,
            self.symbols.record,
        )
        self.driver = Driver(
            self.id,
            self._running,
            lambda: self.nats,
            lambda: self.records,
            lambda: self.lean,
            lambda: self.leases,
            self.projection,
        )
        self.obs = telemetry.attach(config, self)  # /healthz, /readyz, /metrics (health_port), tracing

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "executor not started"
        return self._nats

    @property
    def lean(self) -> LeanJetStream:
        assert self._lean is not None, "executor not started"
        return self._lean

    @property
    def records(self) -> Records:
        assert self._records is not None, "executor not started"
        return self._records

    @property
    def state(self) -> streams.State:
        assert self._state is not None, "executor not started"
        return self._state

    @property
    def leases(self) -> Leases:
        assert self._leases is not None, "executor not started"
        return self._leases

    @property
    def rebuilds(self) -> int:
        return self.projection.rebuilds

    # --- what telemetry reads (``telemetry.Served``) ------------------------------------------------------

    def connection(self) -> NatsClient | None:
        return self._nats

    def realtime_cache(self) -> RealtimeCache:
        return self.cache

    def serving(self) -> bool:
        return bool(self._requests)

    def pending_orders(self) -> int:
        return len(self._running)

    def cache_rebuilds(self) -> int:
        return self.rebuilds

    # --- start and stop -----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.obs.start()  # first: liveness answers while NATS is still being reached
        self._nats = await bus.connect(
            self.config.nats_url, name=self.id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        # the records', leases', results' and book's writes, and the commands' requests: see ``jetstream``
        self._lean = LeanJetStream(self.nats)
        self._state = await streams.ensure_within(
            self.nats, self.config.nats_startup_timeout_s, replicas=self.config.stream_replicas, js=self._lean
        )
        await self.symbols.start()  # every account's rules before the first order is checked
        await self.maps.start(self.nats, self.config.stream_replicas)  # and every account's symbol map
        self._records = Records(
            self.state.orders, self.state.inflight, self.id, self.config.lease_ms / 1000, js=self.state.js
        )
        self._leases = Leases(
            self.records,
            self.state.inflight,
            self._running,
            self._take_over,
            lease_ms=self.config.lease_ms,
            lease_after_ms=self.config.lease_after_ms,
        )
        for kind in _RESULT_SUBJECTS:
            await self.nats.subscribe(f"{subjects.PREFIX}.ea.*.evt.{kind}", cb=self.driver.on_report)
        await self.nats.subscribe(subjects.ALL_REFUSED, cb=self.driver.on_refusal)
        await self.nats.subscribe(subjects.ALL_STATUS, cb=self.driver.on_status)
        await self.nats.subscribe(subjects.ALL_EVENTS, queue=CACHE_QUEUE, cb=self.projection.on_event)
        for subject, handler in ((subjects.ORDER_REQUEST, self._serve), (subjects.BATCH_REQUEST, self._serve_batch)):
            self._requests.append(
                await self.nats.subscribe(subject, queue=subjects.EXECUTOR_QUEUE, cb=self._spawner(handler))
            )
        await self.nats.flush()
        await self.projection.check_cache()  # once before "ready": a rebuild at start is asked for by now
        self.orphans = OrphanSearch(self.nats.jetstream(), self.leases, self.config.orphan_lookback_ms)
        self._background = [
            asyncio.create_task(self.leases.keep()),
            asyncio.create_task(self.orphans.keep()),
            asyncio.create_task(self.projection.watch_cache(self.config.cache_check_ms / 1000)),
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
        await self.symbols.stop()
        await self.maps.stop()
        await self.projection.writer.close()
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()
            self._nats = None
        await self.cache.close()
        await self.obs.stop()
        telemetry.detach(self)

    def _spawner(self, handler: Callable[[Msg], Coroutine[Any, Any, None]]) -> Callable[[Msg], Awaitable[None]]:
        async def spawn(msg: Msg) -> None:
            self._spawn(handler(msg), guarded=False)

        return spawn

    def _spawn(self, work: Coroutine[Any, Any, None], *, guarded: bool = True) -> None:
        async def run() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background order work failed")

        task = asyncio.create_task(run() if guarded else work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: work.close())  # cancelled before it began: ``work`` was never awaited

    # --- order requests -------------------------------------------------------------------------------------

    async def _serve(self, msg: Msg) -> None:
        await answers.serve(
            msg, lambda data, started, reply_to, answer: self.submit(data, started, reply_to, answer=answer)
        )

    async def submit(
        self, data: bytes, started: float, reply_to: str = "", *, answer: Answering | None = None
    ) -> OrderResult:
        try:
            request = orders.parse_request(data)
        except ValueError as exc:
            return orders.failure("INVALID", InvalidOrder.code, str(exc), None, _ms(started))
        return await self.execute(request, started, reply_to=reply_to, answer=answer)

    async def execute(
        self, request: OrderRequest, started: float, *, reply_to: str = "", answer: Answering | None = None
    ) -> OrderResult:
        """Run ``request`` once per actionId and return its definite result (``HandedOver`` when its lease was
        lost before an answer: the new owner answers ``reply_to``). With ``answer``, a sent order's result is
        given to it as soon as it is known, and the record is written before this returns (see ``_run``)."""
        screened = await self._screen(request, started)
        if isinstance(screened, OrderResult):  # refused by the symbol's rules: nothing recorded, nothing sent
            known = request.action_id is not None and await self.records.get(request.action_id) is not None
            return await self._repeat(request.action_id or "", request, started, reply_to) if known else screened
        record = orders.new_record(request, screened.command, self.id, reply_to, utcnow(), screened.broker_symbol)
        stored = await self.records.claim(record)
        if stored is None:
            return await self._repeat(record.action_id, request, started, reply_to)
        return await self._run(stored, request, started, reply_to, answer)

    async def _screen(self, request: OrderRequest, started: float) -> Screened | OrderResult:
        """The command named by the account's symbol map (``maps``) and checked against its symbol's rules, or the
        refusal (a MODIFY trades no volume and names no symbol: the trade server checks its stops)."""
        command, mapping = orders.build_command(request, utcnow()), self.maps.mapping(request.account_id)
        if isinstance(command, ModifyCommand) or isinstance(request, ModifyOrder):
            return Screened(command)
        return await self.symbols.screen(request, command, self.projection.position_symbol, _ms(started), mapping)

    async def _run(
        self, stored: Stored, request: OrderRequest, started: float, reply_to: str, answer: Answering | None = None
    ) -> OrderResult:
        """Send the recorded order and answer it (the record was just claimed, or renewed for a rerun). With
        ``answer`` the caller is answered and the record written in this task, one after the other in one step:
        the reply, the record and the result leave in one socket write; without, the record is written by a
        task of its own after this returns."""
        command, action_id = stored.record.command, stored.record.action_id
        timeout_s = (request.timeout_ms or self.config.order_timeout_ms) / 1000
        ttl_s = (request.ttl_ms if request.ttl_ms is not None else self.config.command_ttl_ms) / 1000
        rounded = orders.rounded_from(request, command)
        run = OrderRun(command, started, timeout_s, ttl_s, self.limits, reply_to=reply_to, rounded_from=rounded)
        run.recorded_at = stored.record.updated_at  # the fence of its sends with no lease held
        order = RunningOrder(run, stored)
        self._running[action_id] = order
        # a lease for an order still waiting for its terminal's previous order, then for one still running
        timers = [self.leases.when_slow(action_id, self._spawn, self.limits.lease_after_s + self.limits.queued_grace_s)]
        settling = False
        try:
            lock = self._locks[command.account_id]  # one order at a time per terminal
            if not await acquire_by(lock, started + min(ttl_s, timeout_s)):  # queued past its time-to-live: EXPIRED
                why = f"queued behind other orders to account {command.account_id} past its time-to-live"
                reached, rest = await self.driver.drive(order, run.expire(time.perf_counter(), why))
            else:
                timers.append(self.leases.when_slow(action_id, self._spawn))  # from its turn
                try:
                    reached, rest = await self.driver.drive(order, run.start(time.perf_counter()))
                finally:
                    lock.release()
            assert reached is not None
            # the caller is answered first; the record is written right after (a repeat waits for it; after a
            # crash in between, the replica that takes the order over reconciles the same outcome)
            settling = True
            if answer is None or reached.handed_over:
                self._spawn(self._settle(order, rest, timers))
                if reached.handed_over:
                    raise HandedOver(reached.result)
                return reached.result
            await answer(reached.result)
            try:
                await self._settle(order, rest, timers)
            except Exception:
                log.exception("background order work failed")
            return reached.result
        finally:
            if not settling:  # failed inside: the lease lapses and another replica reconciles the order
                for timer in timers:
                    timer.cancel()
                self.driver.forget(order)

    async def _settle(self, order: RunningOrder, actions: list[Action], timers: list[asyncio.TimerHandle]) -> None:
        try:
            await self._drive_to_end(order, actions)
        finally:
            for timer in timers:
                timer.cancel()

    async def _drive_to_end(self, order: RunningOrder, actions: list[Action]) -> None:
        """Drive a run after its answer (its record, its reconciliation) to its end. A run that fails inside (a
        JetStream request that did not answer) is forgotten all the same: nothing drives it any more, so its
        lease must not be renewed; once it lapses (at once when it had none: the search for orders nobody owns),
        this replica or another takes the order over and reconciles it."""
        try:
            await self.driver.drive(order, actions)
        finally:
            self.driver.forget(order)

    def _awaited(self, action_id: str) -> OrderCommand | None:
        return self.driver.awaited(action_id)

    async def _repeat(self, action_id: str, request: OrderRequest, started: float, reply_to: str) -> OrderResult:
        """A second request with a known actionId: the first one's result, or its state while it runs; an order
        that had expired before it came runs again."""
        timeout_s = (request.timeout_ms or self.config.order_timeout_ms) / 1000
        repeat = Repeat(action_id, request, started, time.perf_counter() + timeout_s)
        while True:
            stored = await self.records.get(action_id)
            for action in repeat.on_record(stored.record if stored else None, time.perf_counter()):
                if isinstance(action, Rerun):
                    assert stored is not None
                    screened = await self._screen(request, started)
                    if isinstance(screened, OrderResult):  # the rules refuse it now: it stays expired
                        return screened
                    fresh = orders.new_record(
                        request, screened.command, self.id, reply_to, utcnow(), screened.broker_symbol
                    )
                    renewed = await self.records.save(stored, **{f: getattr(fresh, f) for f in orders.RERUN_FIELDS})
                    if renewed is not None:
                        log.info("running an expired order again", action=action_id)
                        return await self._run(renewed, request, started, reply_to)
                elif isinstance(action, CheckOrphan):
                    assert stored is not None
                    revision = await self.leases.orphaned(stored, utcnow())
                    if revision is not None:
                        owner = action.record.owner
                        log.warning("taking over an order whose executor is gone", action=action_id, owner=owner)
                        self._take_over(stored, revision)
                elif isinstance(action, Answer):
                    return action.result
                else:
                    await asyncio.sleep(action.delay_s)

    def _take_over(self, stored: Stored, lease_revision: int) -> None:
        """Reconcile an order this replica now owns (its lease taken over, or it had none)."""
        record = stored.record
        run = OrderRun.taken_over(record.command, record.reply_to, self.limits, time.perf_counter())
        run.rounded_from = orders.rounded_from(record.request, record.command)
        order = RunningOrder(run, stored, lease_revision)
        self._running[run.action_id] = order

        async def reconcile() -> None:
            await self._drive_to_end(order, run.begin_reconcile(time.perf_counter()))

        self._spawn(reconcile())

    async def _serve_batch(self, msg: Msg) -> None:
        await batches.serve(self.execute, msg)

    async def close_batch(self, batch: CloseBatch, started: float) -> BatchResult:
        """Close every item concurrently (one at a time per terminal); item ``i`` runs as ``<actionId>-<i>``."""
        return await batches.close_batch(self.execute, batch, started)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
