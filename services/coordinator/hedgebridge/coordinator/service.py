"""The coordinator's I/O layer: serves action requests, drives each action's run, takes over the actions of
replicas that died, and runs the consistency checks.

- Serves action requests on ``hb.coord.action`` (queue group: replicas share the work). Each action is
  validated, its targets resolved (EXIT: the target action's record; CLOSE_ALL: the accounts' positions from
  the cache, never from an incomplete one), then recorded in JetStream KV ``hb_actions`` under its actionId
  with an atomic create: a repeated actionId never runs twice, it gets the first action's state (waiting
  for it to become final within the request's timeout). The reply is the final ActionState, or the latest
  one (UNSETTLED) when the action's timeout passes first.
- Each action is an ``ActionRun`` (``run.py``, pure: legs, policy, compensation, seq) that a ``Drive``
  (``driver.py``) performs: legs run concurrently, each as one executor order whose actionId is the leg's
  (``<actionId>-E0`` …), so asking again — after a timeout, or after this replica died — never executes
  anything twice. Results of legs whose outcome was unknown arrive reconciled on ``hb.exec.result.*``.
- Every state change is written to the record (a compare-and-set on its revision, so only the owner writes)
  and published on ``hb.action.<actionId>`` through JetStream with ``Nats-Msg-Id = <actionId>:<seq>``: the
  action sync channel every subscribed system listens to, kept in HB_EVENTS (``store.py``).
- The record holds its owner's lease. Every replica looks for actions whose lease ran out (their
  coordinator died) on start and then every half lease, takes them over and drives them on.
- Consistency (``reconciler.py``): the book against the terminals' snapshots, on every POSITION_UPDATE and
  every reconcile interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine, Iterable
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hedgebridge.common import bus, logs, streams
from hedgebridge.common.cache import RealtimeCache, RedisCache
from hedgebridge.common.tasks import cancel_all, every
from hedgebridge.protocol import (
    ActionRequest,
    ActionState,
    BookEntry,
    Conflict,
    ConsistencyStatus,
    OrderResult,
    PositionUpdate,
    ProtocolError,
    errors,
    pack,
    subjects,
    unpack,
    utcnow,
)

from . import actions, snapshots, telemetry
from .config import CoordinatorConfig
from .driver import Drive
from .errors import ActionInvalid
from .model import ActionRecord
from .reconciler import Reconciler
from .run import ActionRun, Settings
from .store import ActionStore

log = logs.get("coordinator")

_KINDS = ("HEDGE_ENTRY", "EXIT", "CLOSE_ALL")
_REPLY_MARGIN_S = 5.0  # how long past the deadline a request waits for a driver stuck in a write


class Coordinator:
    def __init__(self, config: CoordinatorConfig, cache: RealtimeCache | None = None) -> None:
        self.config = config
        self.id = config.coordinator_id
        self.cache: RealtimeCache = cache if cache is not None else RedisCache(config.redis_url)
        self.lease_s = config.lease_ms / 1000
        self.settings = Settings(
            owner=self.id,
            lease_s=self.lease_s,
            leg_timeout_ms=config.leg_timeout_ms,
            leg_ttl_ms=config.leg_ttl_ms or None,
        )
        self._nats: NatsClient | None = None
        self._store: ActionStore | None = None
        self._runs: dict[str, Drive] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drivers: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._requests: Subscription | None = None
        self.reconciler = Reconciler(config, lambda: self.nats, lambda: self.store, self._spawn)
        self.obs = telemetry.attach(  # /healthz, /readyz, /metrics (health_port), tracing
            config, nats=lambda: self._nats, cache=lambda: self.cache, serving=lambda: self._requests is not None
        )

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "coordinator not started"
        return self._nats

    @property
    def store(self) -> ActionStore:
        assert self._store is not None, "coordinator not started"
        return self._store

    @property
    def state(self) -> streams.State:
        return self.store.state

    @property
    def open_conflicts(self) -> list[Conflict]:
        return list(self.reconciler.conflicts.values())

    @property
    def passes(self) -> int:
        """Consistency passes run so far."""
        return self.reconciler.passes

    @property
    def _snapshots(self) -> dict[str, PositionUpdate]:
        return self.reconciler.snapshots

    async def start(self) -> None:
        await self.obs.start()  # first: liveness answers while NATS is still being reached
        self._nats = await bus.connect(
            self.config.nats_url, name=self.id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        state = await streams.ensure_within(
            self.nats, self.config.nats_startup_timeout_s, replicas=self.config.stream_replicas
        )
        self._store = ActionStore(state)
        await self.nats.subscribe(subjects.ALL_RESULTS, cb=self._on_result)
        await self.nats.subscribe(subjects.event_any_account("POSITION_UPDATE"), cb=self.reconciler.on_snapshot)
        self._requests = await self.nats.subscribe(
            subjects.ACTION_REQUEST, queue=subjects.COORDINATOR_QUEUE, cb=self._on_request
        )
        await self.nats.flush()
        self._background = [
            asyncio.create_task(self._takeover_loop()),
            asyncio.create_task(self.reconciler.loop()),
        ]
        log.info("ready", coordinator=self.id, resolution=self.config.conflict_resolution)

    async def stop(self) -> None:
        """Stop taking requests, let the running actions finish (bounded by a leg timeout), then disconnect."""
        if self._requests is not None:
            with contextlib.suppress(Exception):
                await self._requests.unsubscribe()
            self._requests = None
        if self._drivers:
            await asyncio.wait(self._drivers, timeout=self.config.leg_timeout_ms / 1000 + 1)
        await self.kill()

    async def kill(self) -> None:
        """Stop at once, abandoning running actions (what a crash does; their leases lapse)."""
        await cancel_all([*self._background, *self._tasks, *self._drivers], log)
        self._background = []
        if self._nats is not None:
            with contextlib.suppress(Exception):
                await self._nats.close()
            self._nats = None
        await self.cache.close()
        await self.obs.stop()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def reconcile_all(self) -> ConsistencyStatus:
        """A full consistency pass (see ``Reconciler.reconcile_all``)."""
        return await self.reconciler.reconcile_all()

    async def check(self, accounts: Iterable[str], book: dict[str, list[BookEntry]] | None = None) -> ConsistencyStatus:
        """Compare ``accounts`` (those with a snapshot) with the book; report, resolve and publish."""
        return await self.reconciler.check(accounts, book)

    async def publish_state(self, state: ActionState) -> None:
        """Publish one state on the action sync channel (kept in HB_EVENTS, de-duplicated by actionId:seq)."""
        await self.store.publish_state(state)

    # --- action requests ------------------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        self._spawn(self._serve(msg))

    async def _serve(self, msg: Msg) -> None:
        span = telemetry.action_started(msg)  # the action's span, current in this task (None: tracing off)
        try:
            state = await self.handle(msg.data)
        except Exception:
            log.exception("action failed inside the coordinator")
            action_id, kind = _loose(msg.data)
            message = "internal coordinator error: the outcome is not known; ask again with the same actionId"
            state = actions.unsettled(action_id, errors.INTERNAL, message, utcnow(), kind=kind)
        telemetry.action_done(span, state)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(pack(state))

    async def handle(self, data: bytes) -> ActionState:
        """Run the action ``data`` asks for (once per actionId) and return its final or latest state."""
        try:
            request = unpack(data, ActionRequest)
        except ProtocolError as exc:
            action_id, kind = _loose(data)
            if data:  # an empty request is a health probe
                log.info("invalid action request", field=exc.field, error=exc.message)
            return actions.rejected(action_id, errors.ACTION_INVALID, _explain(exc), utcnow(), kind=kind)
        action_id = request.action_id or uuid.uuid4().hex
        request = msgspec.structs.replace(request, action_id=action_id)
        try:
            actions.validate(request)
        except ActionInvalid as exc:
            log.info("invalid action", action=action_id, field=exc.field, error=str(exc))
            return actions.rejected(action_id, exc.code, str(exc), utcnow(), request=request)
        deadline = time.time() + (request.timeout_ms or self.config.action_timeout_ms) / 1000
        stored = await self.store.load(action_id)
        if stored is not None:
            return await self._duplicate(request, stored[0], deadline)
        try:
            planned = await self._plan(request, action_id, deadline)
        except ActionInvalid as exc:
            log.info("action refused", action=action_id, code=exc.code, error=str(exc))
            return actions.rejected(action_id, exc.code, str(exc), utcnow(), request=request)
        now = utcnow()
        record = ActionRecord(
            request=request,
            state=planned,
            owner=self.id,
            lease_until=time.time() + self.lease_s,
            deadline=deadline,
            created_at=now,
            updated_at=now,
        )
        # listed as running before the record exists, so a takeover scan can never miss it (a listed action
        # that turns out final, or never created, is dropped from the list by the scan)
        await self.store.list_running(action_id)
        revision = await self.store.create(record)
        if revision is None:
            stored = await self.store.load(action_id)
            if stored is None:
                return actions.rejected(action_id, errors.IN_FLIGHT, "the action record changed; ask again", now)
            return await self._duplicate(request, stored[0], deadline)
        run = ActionRun(
            request=request,
            state=planned,
            deadline=deadline,
            created_at=now,
            settings=self.settings,
            lease_until=record.lease_until,
        )
        log.info("action accepted", action=action_id, kind=request.kind, legs=len(planned.legs))
        drive = Drive(run, revision, self.store, lambda: self.nats)
        self._runs[action_id] = drive
        await self.publish_state(planned)
        self._drive_in_background(drive)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drive.answered.wait(), max(deadline - time.time(), 0.0) + _REPLY_MARGIN_S)
        return drive.state

    async def _plan(self, request: ActionRequest, action_id: str, deadline: float) -> ActionState:
        now = utcnow()
        if request.kind == "HEDGE_ENTRY":
            return actions.plan_entry(request, action_id, now)
        if request.kind == "EXIT":
            assert request.target_action_id is not None
            target = await self.store.load(request.target_action_id)
            return actions.plan_exit(request, action_id, target[0].state if target else None, now)
        until = min(deadline, time.time() + self.config.sync_timeout_ms / 1000)
        positions = await snapshots.positions(self.nats, self.cache, request.account_ids, until)
        return actions.plan_close_all(request, action_id, positions, now)

    async def _duplicate(self, request: ActionRequest, record: ActionRecord, deadline: float) -> ActionState:
        """A repeated actionId: the first action's state, once final (or the latest at the deadline)."""
        action_id = record.state.action_id
        mismatch = actions.mismatch(record.request, request, action_id, utcnow())
        if mismatch is not None:
            return mismatch
        latest = record.state
        if not actions.is_final(latest):
            latest = await self._await_final(action_id, latest, deadline)
        return msgspec.structs.replace(latest, duplicate=True)

    async def _await_final(self, action_id: str, latest: ActionState, deadline: float) -> ActionState:
        states: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_state(msg: Msg) -> None:
            states.put_nowait(msg.data)

        sub = await self.nats.subscribe(subjects.action(action_id), cb=on_state)
        try:
            while not actions.is_final(latest):
                stored = await self.store.load(action_id)  # a change may have come before the subscription
                if stored is not None and stored[0].state.seq > latest.seq:
                    latest = stored[0].state
                    continue
                remaining = deadline - time.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(states.get(), min(remaining, 1.0))
                    with contextlib.suppress(ProtocolError):
                        state = unpack(data, ActionState)
                        if state.seq > latest.seq:
                            latest = state
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return latest

    # --- driving an action ----------------------------------------------------------------------------------

    def _drive_in_background(self, drive: Drive) -> None:
        action_id = drive.run.action_id
        self._runs[action_id] = drive

        async def run() -> None:
            try:
                await drive.drive()
            finally:
                if self._runs.get(action_id) is drive:
                    del self._runs[action_id]

        task = asyncio.create_task(run())
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _on_result(self, msg: Msg) -> None:
        """Every executor result: the ones for legs of actions driven here go to their action (this is how
        reconciled results of legs whose outcome was unknown arrive)."""
        try:
            result = unpack(msg.data, OrderResult)
        except ProtocolError:
            return
        if result.action_id is None:
            return
        parent = actions.parent_action_id(result.action_id)
        drive = self._runs.get(parent) if parent else None
        if drive is not None:
            drive.report(result)

    # --- takeover -------------------------------------------------------------------------------------------

    async def _takeover_loop(self) -> None:
        await every(self.lease_s / 2, self.take_over_lapsed, log, "takeover scan failed")

    async def take_over_lapsed(self) -> list[str]:
        """Take over every action that is not final and whose owner's lease ran out; returns their ids."""
        taken: list[str] = []
        running = await self.store.running()
        now = time.time()
        for key, listed_at in running.items():
            if key in self._runs:
                continue
            stored = await self.store.load(key)
            if stored is None and now - listed_at < self.lease_s:
                continue  # listed a moment ago: its record is about to be created
            if stored is None or actions.is_final(stored[0].state):
                if stored is not None:  # its coordinator may have died between recording and publishing it
                    await self.store.republish_if_missing(stored[0].state)
                await self.store.unlist(key)
                continue
            record, revision = stored
            mine = actions.take_over(record, self.id, now, self.lease_s)
            if mine is None:
                continue
            new_revision = await self.store.take(mine, revision)
            if new_revision is None:
                continue  # another replica was quicker
            log.info("action taken over", action=key, previous_owner=record.owner, state=record.state.state)
            run = ActionRun.resume(mine, self.settings)
            self._drive_in_background(Drive(run, new_revision, self.store, lambda: self.nats))
            taken.append(key)
        return taken


def _loose(data: bytes) -> tuple[str, Any]:
    """The actionId and kind an unreadable request claimed, when it can be read that far."""
    try:
        raw = msgspec.msgpack.decode(data)
    except Exception:
        return "", "HEDGE_ENTRY"
    if not isinstance(raw, dict):
        return "", "HEDGE_ENTRY"
    action_id = raw.get("actionId")
    kind = raw.get("kind")
    return (
        action_id if isinstance(action_id, str) and actions.valid_action_id(action_id) else "",
        kind if kind in _KINDS else "HEDGE_ENTRY",
    )


def _explain(exc: ProtocolError) -> str:
    if exc.field and exc.field not in exc.message:
        return f"`{exc.field}`: {exc.message}"
    return exc.message
