"""The coordinator's I/O layer.

- Serves action requests on ``hb.coord.action`` (queue group: replicas share the work). Each action is
  validated, its targets resolved (EXIT: the target action's record; CLOSE_ALL: the accounts' positions from
  the cache, never from an incomplete one), then recorded in JetStream KV ``hb_actions`` under its actionId
  with an atomic create: a repeated actionId never runs twice, it gets the first action's state (waiting
  for it to become final within the request's timeout). The reply is the final ActionState, or the latest
  one (UNSETTLED) when the action's timeout passes first.
- Legs run concurrently, each as one executor order whose actionId is the leg's (``<actionId>-E0`` …), so
  asking again — after a timeout, or after this replica died — never executes anything twice. Results of
  legs whose outcome was unknown arrive reconciled on ``hb.exec.result.*``.
- Every state change is written to the record (a compare-and-set on its revision, so only the owner writes)
  and published on ``hb.action.<actionId>`` through JetStream with ``Nats-Msg-Id = <actionId>:<seq>``: the
  action sync channel every subscribed system listens to, kept in HB_EVENTS.
- The record holds its owner's lease. Every replica looks for actions whose lease ran out (their
  coordinator died) on start and then every half lease, takes them over and drives them on.
- Consistency: every POSITION_UPDATE (debounced per account) and every reconcile interval compares the book
  (``hb_book``) with the terminal's snapshot; new conflicts are published on ``hb.consistency.conflict``
  (de-duplicated by ``kind:account:ticket``) and resolved per configuration, and a ConsistencyStatus is
  published on ``hb.consistency.status`` after each pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from hedgebridge.common import bus, logs, streams
from hedgebridge.common.cache import RealtimeCache, RedisCache
from hedgebridge.common.obs import tracing
from hedgebridge.common.tasks import cancel_all
from hedgebridge.protocol import (
    ActionRequest,
    ActionState,
    BookEntry,
    CloseOrder,
    Conflict,
    ConsistencyStatus,
    LegState,
    OrderResult,
    Position,
    PositionUpdate,
    ProtocolError,
    SyncCommand,
    errors,
    pack,
    subjects,
    unpack,
    utcnow,
)

from . import actions, consistency, telemetry
from .actions import ActionRecord
from .config import CoordinatorConfig
from .errors import ActionInvalid, LeaseLost

log = logs.get("coordinator")

_KINDS = ("HEDGE_ENTRY", "EXIT", "CLOSE_ALL")
_REPLY_MARGIN_S = 5.0  # how long past the deadline a request waits for a driver stuck in a write
_PUBLISH_ATTEMPTS = 3


@dataclass(eq=False)
class Run:
    """One action this replica drives."""

    request: ActionRequest
    state: ActionState
    revision: int
    deadline: float  # epoch seconds
    created_at: datetime
    resumed: bool  # taken over from another replica (or an earlier life of this one)
    lease_until: float = 0.0
    timed_out: bool = False
    results: asyncio.Queue[OrderResult] = field(default_factory=asyncio.Queue)
    legs: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # final, or its timeout passed


class Coordinator:
    def __init__(self, config: CoordinatorConfig, cache: RealtimeCache | None = None) -> None:
        self.config = config
        self.id = config.coordinator_id
        self.cache: RealtimeCache = cache if cache is not None else RedisCache(config.redis_url)
        self.lease_s = config.lease_ms / 1000
        self._nats: NatsClient | None = None
        self._state: streams.State | None = None
        self._runs: dict[str, Run] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drivers: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._requests: Subscription | None = None
        # consistency
        self._snapshots: dict[str, PositionUpdate] = {}
        self._conflicts: dict[str, Conflict] = {}
        self._due: set[str] = set()
        self._check_lock = asyncio.Lock()
        self.passes = 0
        self.obs = telemetry.attach(self)  # /healthz, /readyz, /metrics (health_port), tracing

    @property
    def nats(self) -> NatsClient:
        assert self._nats is not None, "coordinator not started"
        return self._nats

    @property
    def state(self) -> streams.State:
        assert self._state is not None, "coordinator not started"
        return self._state

    @property
    def open_conflicts(self) -> list[Conflict]:
        return list(self._conflicts.values())

    async def start(self) -> None:
        await self.obs.start()  # first: liveness answers while NATS is still being reached
        self._nats = await bus.connect(
            self.config.nats_url, name=self.id, startup_timeout_s=self.config.nats_startup_timeout_s
        )
        self._state = await streams.ensure(self.nats, replicas=self.config.stream_replicas)
        await self.nats.subscribe(subjects.ALL_RESULTS, cb=self._on_result)
        await self.nats.subscribe(subjects.event_any_account("POSITION_UPDATE"), cb=self._on_snapshot)
        self._requests = await self.nats.subscribe(
            subjects.ACTION_REQUEST, queue=subjects.COORDINATOR_QUEUE, cb=self._on_request
        )
        await self.nats.flush()
        self._background = [
            asyncio.create_task(self._takeover_loop()),
            asyncio.create_task(self._reconcile_loop()),
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

    # --- action requests ------------------------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        self._spawn(self._serve(msg))

    async def _serve(self, msg: Msg) -> None:
        span = telemetry.action_started(msg)  # the action's span, current in this task (None: tracing off)
        try:
            state = await self.handle(msg.data)
        except Exception:
            log.exception("action failed inside the coordinator")
            state = actions.rejected("", errors.INTERNAL, "internal coordinator error", utcnow())
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
        stored = await self._load(action_id)
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
        await self.state.running_actions.put(action_id, repr(time.time()).encode())
        try:
            revision = await self.state.actions.create(action_id, pack(record))
        except KeyWrongLastSequenceError:
            stored = await self._load(action_id)
            if stored is None:
                return actions.rejected(action_id, errors.IN_FLIGHT, "the action record changed; ask again", now)
            return await self._duplicate(request, stored[0], deadline)
        run = Run(
            request=request,
            state=planned,
            revision=revision,
            deadline=deadline,
            created_at=now,
            resumed=False,
            lease_until=record.lease_until,
        )
        log.info("action accepted", action=action_id, kind=request.kind, legs=len(planned.legs))
        self._runs[action_id] = run
        await self.publish_state(planned)
        self._drive_in_background(run)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.answered.wait(), max(deadline - time.time(), 0.0) + _REPLY_MARGIN_S)
        return run.state

    async def _plan(self, request: ActionRequest, action_id: str, deadline: float) -> ActionState:
        now = utcnow()
        if request.kind == "HEDGE_ENTRY":
            return actions.plan_entry(request, action_id, now)
        if request.kind == "EXIT":
            assert request.target_action_id is not None
            target = await self._load(request.target_action_id)
            return actions.plan_exit(request, action_id, target[0].state if target else None, now)
        positions = await self._positions(request.account_ids, deadline)
        return actions.plan_close_all(request, action_id, positions, now)

    async def _positions(self, accounts: list[str], deadline: float) -> dict[str, list[Position]]:
        """Every account's complete list of open positions, from the cache. An account the cache has no
        complete picture of is asked for a fresh snapshot (SYNC); still none by the deadline: CACHE_INCOMPLETE."""
        until = min(deadline, time.time() + self.config.sync_timeout_ms / 1000)

        async def one(i: int, account: str) -> list[Position]:
            found = await self._cached_positions(account)
            if found is not None:
                return found
            await self._sync(account, "close-all")
            while time.time() < until:
                await asyncio.sleep(0.05)
                found = await self._cached_positions(account)
                if found is not None:
                    return found
            raise ActionInvalid(
                f"the cache has no complete picture of account {account} (no snapshot since it was last emptied, "
                "and none came in answer to SYNC); nothing was closed",
                code=errors.CACHE_INCOMPLETE,
                field=f"accountIds[{i}]",
            )

        lists = await asyncio.gather(*(one(i, a) for i, a in enumerate(accounts)))
        return dict(zip(accounts, lists, strict=True))

    async def _cached_positions(self, account: str) -> list[Position] | None:
        try:
            return await self.cache.positions(account)
        except Exception as exc:  # an unreachable cache is an incomplete one
            log.warning("cache read failed", account=account, error=f"{type(exc).__name__}: {exc}")
            return None

    async def _sync(self, account: str, reason: str) -> bool:
        """Ask the account's terminal for a fresh snapshot; False when no gateway holds it."""
        command = SyncCommand(timestamp=utcnow(), account_id=account, sync_id=uuid.uuid4().hex, reason=reason)
        try:
            await self.nats.request(subjects.command(account), pack(command), timeout=1.0)
        except (NoRespondersError, NatsTimeoutError):
            return False
        except Exception as exc:
            log.warning("sync failed", account=account, error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    async def _duplicate(self, request: ActionRequest, record: ActionRecord, deadline: float) -> ActionState:
        """A repeated actionId: the first action's state, once final (or the latest at the deadline)."""
        action_id = record.state.action_id
        if not actions.same_request(record.request, request):
            return actions.rejected(
                action_id,
                errors.DUPLICATE_MISMATCH,
                f"actionId {action_id} was already used for a different action",
                utcnow(),
                request=request,
            )
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
                stored = await self._load(action_id)  # a change may have come before the subscription
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

    def _drive_in_background(self, run: Run) -> None:
        task = asyncio.create_task(self._drive(run))
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _drive(self, run: Run) -> None:
        action_id = run.state.action_id
        fields = {"action": action_id, "kind": run.state.kind}
        try:
            if run.resumed:
                await self._republish_if_missing(run.state)
            if run.state.state == "ACCEPTED":
                await self._commit(run, actions.start(run.state, utcnow()))
            while True:
                settled = actions.settle(run.state, utcnow())
                if settled is not None:
                    await self._commit(run, settled)
                if actions.is_final(run.state):
                    break
                for leg in actions.active_legs(run.state):
                    task = run.legs.get(leg.order_action_id)
                    if task is None or task.done():
                        run.legs[leg.order_action_id] = self._spawn(self._run_leg(run, leg))
                if not run.resumed and not run.timed_out and time.time() >= run.deadline:
                    run.timed_out = True
                    late = actions.timed_out(run.state, utcnow())
                    if late is not None:
                        await self._commit(run, late)
                    log.warning("action not settled in time", state=run.state.state, **fields)
                    run.answered.set()
                    continue
                await self._apply_results(run)
                if run.lease_until - time.time() < self.lease_s * 2 / 3:
                    await self._commit(run, run.state, publish=False)
            log.info("action done", state=run.state.state, code=run.state.code, seq=run.state.seq, **fields)
        except LeaseLost:
            log.warning("action taken over by another coordinator", **fields)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("action driver failed; its lease will lapse and it will be taken over", **fields)
        finally:
            for task in run.legs.values():
                task.cancel()
            if self._runs.get(action_id) is run:
                del self._runs[action_id]
            run.answered.set()

    async def _apply_results(self, run: Run) -> None:
        wait_s = self.lease_s / 3
        if not run.resumed and not run.timed_out:
            wait_s = min(wait_s, max(run.deadline - time.time(), 0.0))
        try:
            first = await asyncio.wait_for(run.results.get(), wait_s)
        except TimeoutError:
            return
        results = [first]
        while not run.results.empty():
            results.append(run.results.get_nowait())
        for result in results:
            changed = actions.apply(run.state, result, utcnow())
            if changed is not None:
                await self._commit(run, changed)

    async def _commit(self, run: Run, state: ActionState, *, publish: bool = True) -> None:
        """Write ``state`` to the record (only if this replica still owns it), renew the lease, publish."""
        lease_until = time.time() + self.lease_s
        record = ActionRecord(
            request=run.request,
            state=state,
            owner=self.id,
            lease_until=lease_until,
            deadline=run.deadline,
            created_at=run.created_at,
            updated_at=utcnow(),
        )
        try:
            run.revision = await self.state.actions.update(state.action_id, pack(record), last=run.revision)
        except KeyWrongLastSequenceError:
            raise LeaseLost(f"action {state.action_id} was taken over") from None
        run.state = state
        run.lease_until = lease_until
        if publish:
            await self.publish_state(state)
        if actions.is_final(state):
            run.answered.set()
            with contextlib.suppress(Exception):  # a leftover entry is dropped by the next takeover scan
                await self.state.running_actions.delete(state.action_id)

    async def publish_state(self, state: ActionState) -> None:
        """Publish one state on the action sync channel (kept in HB_EVENTS, de-duplicated by actionId:seq)."""
        headers = {"Nats-Msg-Id": f"{state.action_id}:{state.seq}"}
        started = time.perf_counter()
        for attempt in range(_PUBLISH_ATTEMPTS):
            try:
                await self.state.js.publish(subjects.action(state.action_id), pack(state), headers=headers)
                telemetry.state_published(time.perf_counter() - started)
                return
            except Exception as exc:
                if attempt == _PUBLISH_ATTEMPTS - 1:
                    log.error("action state not published", action=state.action_id, seq=state.seq, error=repr(exc))
                    telemetry.state_not_published()
                    return
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _republish_if_missing(self, state: ActionState) -> None:
        """A previous owner may have died between writing a state and publishing it: publish it unless the
        stream has it (core subscribers would otherwise see a state twice)."""
        try:
            last = await self.state.js.get_last_msg(subjects.EVENTS_STREAM, subjects.action(state.action_id))
            if last.data is not None and unpack(last.data, ActionState).seq >= state.seq:
                return
        except NotFoundError:
            pass
        except Exception as exc:
            log.warning("cannot read the last published state", action=state.action_id, error=repr(exc))
        await self.publish_state(state)

    async def _run_leg(self, run: Run, leg: LegState) -> None:
        """Get a leg's definite result from the executor. Asking again is safe (the order's actionId is its
        idempotency key): after a transport timeout, while it is IN_FLIGHT, and while its outcome is unknown
        (until the reconciled result comes, here or on hb.exec.result)."""
        ttl_ms = self.config.leg_ttl_ms or None
        order = actions.order_for(run.state, leg, timeout_ms=self.config.leg_timeout_ms, ttl_ms=ttl_ms)
        payload = pack(order)
        wait_s = (self.config.leg_timeout_ms + (ttl_ms or 5_000)) / 1000 + 2.0
        started = time.monotonic()
        maybe_received = run.resumed  # a previous owner may have sent it already
        reported_unknown = False
        pause = 0.05
        fields = {"action": run.state.action_id, "order": leg.order_action_id, "account": leg.account_id}
        while True:
            try:
                headers = tracing.headers()  # the action's span, when tracing is on
                reply = await self.nats.request(subjects.ORDER_REQUEST, payload, timeout=wait_s, headers=headers)
            except NoRespondersError:
                if not maybe_received and time.monotonic() - started > self.config.leg_timeout_ms / 1000:
                    log.warning("no executor answered; leg not sent", **fields)
                    await run.results.put(_not_sent(leg))
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            except NatsTimeoutError:
                maybe_received = True
                log.warning("executor did not answer in time; asking again", **fields)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                maybe_received = True
                log.warning("order request failed; asking again", error=f"{type(exc).__name__}: {exc}", **fields)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            maybe_received = True
            try:
                result = unpack(reply.data, OrderResult)
            except ProtocolError as exc:
                log.error("unreadable executor answer", error=exc.message, **fields)
                await asyncio.sleep(1.0)
                continue
            if result.action_id != leg.order_action_id:
                result = msgspec.structs.replace(result, action_id=leg.order_action_id)
            if result.status == "IN_FLIGHT":
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            if result.status == "OUTCOME_UNKNOWN":
                if not reported_unknown:
                    reported_unknown = True
                    log.warning("leg outcome unknown; waiting for reconciliation", **fields)
                    await run.results.put(result)
                await asyncio.sleep(max(pause, 1.0))
                pause = min(max(pause, 1.0) * 2, 10.0)
                continue
            await run.results.put(result)
            return

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
        run = self._runs.get(parent) if parent else None
        if run is not None:
            run.results.put_nowait(result)

    # --- takeover -------------------------------------------------------------------------------------------

    async def _takeover_loop(self) -> None:
        while True:
            try:
                await self.take_over_lapsed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("takeover scan failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.lease_s / 2)

    async def take_over_lapsed(self) -> list[str]:
        """Take over every action that is not final and whose owner's lease ran out; returns their ids."""
        taken: list[str] = []
        running = await _read_bucket(self.state.running_actions, ">")
        now = time.time()
        for key, (listed_at, _) in running.items():
            if key in self._runs:
                continue
            stored = await self._load(key)
            if stored is None and now - _seconds(listed_at) < self.lease_s:
                continue  # listed a moment ago: its record is about to be created
            if stored is None or actions.is_final(stored[0].state):
                await self.state.running_actions.delete(key)
                continue
            record, revision = stored
            if record.lease_until > now:
                continue
            mine = msgspec.structs.replace(record, owner=self.id, lease_until=now + self.lease_s, updated_at=utcnow())
            try:
                new_revision = await self.state.actions.update(key, pack(mine), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica was quicker
            log.info("action taken over", action=key, previous_owner=record.owner, state=record.state.state)
            run = Run(
                request=record.request,
                state=record.state,
                revision=new_revision,
                deadline=record.deadline,
                created_at=record.created_at,
                resumed=True,
                lease_until=mine.lease_until,
            )
            self._runs[key] = run
            self._drive_in_background(run)
            taken.append(key)
        return taken

    async def _load(self, action_id: str) -> tuple[ActionRecord, int] | None:
        try:
            entry = await self.state.actions.get(action_id)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.revision is None:
            return None
        try:
            return unpack(entry.value, ActionRecord), entry.revision
        except ProtocolError:
            log.error("unreadable action record", action=action_id)
            return None

    # --- consistency ----------------------------------------------------------------------------------------

    async def _on_snapshot(self, msg: Msg) -> None:
        try:
            snapshot = unpack(msg.data, PositionUpdate)
        except ProtocolError:
            return
        previous = self._snapshots.get(snapshot.account_id)
        if previous is not None and previous.timestamp > snapshot.timestamp:
            return
        self._snapshots[snapshot.account_id] = snapshot
        if snapshot.account_id not in self._due:
            self._due.add(snapshot.account_id)
            self._spawn(self._check_later(snapshot.account_id))

    async def _check_later(self, account: str) -> None:
        await asyncio.sleep(self.config.reconcile_debounce_ms / 1000)
        self._due.discard(account)
        try:
            await self.check([account])
        except Exception as exc:
            log.warning("consistency check failed", account=account, error=f"{type(exc).__name__}: {exc}")

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconcile_interval_ms / 1000)
            try:
                await self.reconcile_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("consistency pass failed", error=f"{type(exc).__name__}: {exc}")

    async def reconcile_all(self) -> ConsistencyStatus:
        """A full pass: ask every account the book or a snapshot names for a fresh snapshot (each answer is
        checked as it comes), and check every account with a snapshot now."""
        book = await self._read_book(None)
        accounts = sorted(set(book) | set(self._snapshots))
        await asyncio.gather(*(self._sync(account, "reconcile") for account in accounts))
        return await self.check(sorted(self._snapshots), book)

    async def check(self, accounts: Iterable[str], book: dict[str, list[BookEntry]] | None = None) -> ConsistencyStatus:
        """Compare ``accounts`` (those with a snapshot) with the book; report, resolve and publish."""
        async with self._check_lock:
            wanted = [a for a in accounts if a in self._snapshots]
            if book is None:
                book = {}
                for account in wanted:
                    book.update(await self._read_book(account))
            now = utcnow()
            grace = timedelta(milliseconds=self.config.orphan_grace_ms)
            found: list[Conflict] = []
            for account in wanted:
                found += consistency.compare(account, book.get(account, []), self._snapshots[account], now, grace)
            step = consistency.update(self._conflicts, wanted, found)
            for conflict in step.new:
                outcome = await self._resolve(conflict)
                step.open[consistency.conflict_id(conflict)] = outcome
                await self._publish_conflict(outcome)
                log.warning(
                    "position conflict",
                    kind=outcome.kind,
                    account=outcome.account_id,
                    ticket=outcome.mt_ticket,
                    resolution=outcome.resolution,
                )
            for conflict in step.resolved:
                log.info(
                    "conflict resolved", kind=conflict.kind, account=conflict.account_id, ticket=conflict.mt_ticket
                )
            self._conflicts = step.open
            self.passes += 1
            status = ConsistencyStatus(
                timestamp=now,
                consistent=not step.open,
                accounts_checked=len(wanted),
                open_conflicts=len(step.open),
                conflicts=list(step.open.values()),
            )
            with contextlib.suppress(Exception):
                await self.nats.publish(subjects.CONSISTENCY_STATUS, pack(status))
            return status

    async def _resolve(self, conflict: Conflict) -> Conflict:
        mode = self.config.conflict_resolution
        if mode == "CLOSE_ORPHANS" and conflict.kind == "ORPHAN_POSITION":
            order = CloseOrder(
                account_id=conflict.account_id,
                mt_ticket=conflict.mt_ticket,
                action_id=f"orphan-{conflict.account_id}-{conflict.mt_ticket}"[:128],
                exit_reason="orphan position closed by the consistency check",
                timeout_ms=self.config.leg_timeout_ms,
            )
            try:
                reply = await self.nats.request(
                    subjects.ORDER_REQUEST, pack(order), timeout=self.config.leg_timeout_ms / 1000 + 7
                )
                result = unpack(reply.data, OrderResult)
            except Exception as exc:
                return msgspec.structs.replace(conflict, message=f"{conflict.message}; close failed: {exc!r}")
            if result.status == "FILLED" or result.code == errors.ALREADY_CLOSED:
                return msgspec.structs.replace(conflict, resolution="CLOSED")
            return msgspec.structs.replace(
                conflict, message=f"{conflict.message}; close {result.status}: {result.message}"
            )
        if mode == "DROP_MISSING" and conflict.kind == "MISSING_POSITION":
            try:
                await self.state.book.delete(consistency.book_key(conflict.account_id, conflict.mt_ticket))
            except Exception as exc:
                return msgspec.structs.replace(conflict, message=f"{conflict.message}; drop failed: {exc!r}")
            return msgspec.structs.replace(conflict, resolution="DROPPED")
        return conflict

    async def _publish_conflict(self, conflict: Conflict) -> None:
        try:
            await self.state.js.publish(
                subjects.CONFLICTS, pack(conflict), headers={"Nats-Msg-Id": consistency.conflict_id(conflict)}
            )
        except Exception as exc:
            log.error("conflict not published", error=repr(exc), kind=conflict.kind, account=conflict.account_id)

    async def _read_book(self, account: str | None) -> dict[str, list[BookEntry]]:
        """The book by account (one account's, or everything)."""
        entries = await _read_bucket(self.state.book, f"{account}.*" if account else ">")
        book: dict[str, list[BookEntry]] = {}
        for value, _revision in entries.values():
            try:
                entry = unpack(value, BookEntry)
            except ProtocolError:
                continue
            book.setdefault(entry.account_id, []).append(entry)
        return book


async def _read_bucket(kv: KeyValue, keys: str) -> dict[str, tuple[bytes, int]]:
    """The current value and revision of every key matching ``keys`` (deleted keys left out)."""
    watcher = await kv.watch(keys, ignore_deletes=True)
    found: dict[str, tuple[bytes, int]] = {}
    try:
        while True:
            entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
            if entry is None:
                break
            if entry.value is not None and entry.revision is not None:
                found[entry.key] = (entry.value, entry.revision)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return found


def _seconds(value: bytes) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def _not_sent(leg: LegState) -> OrderResult:
    return OrderResult(
        status="EXPIRED",
        code=errors.EXECUTOR_UNAVAILABLE,
        message="no executor answered within the leg timeout; the order was never sent",
        action_id=leg.order_action_id,
        account_id=leg.account_id,
    )


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
