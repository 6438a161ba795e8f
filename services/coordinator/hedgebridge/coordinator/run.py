"""One action's run (pure code, no I/O): the state its driver owns, fed events, returning what to do.

An ``ActionRun`` owns an action's state (legs, policy, compensation, seq), its lease and deadline, and how
each leg's executor order is being asked for. It never imports asyncio, NATS or a cache and reads no clock:
every call takes the time (``now``, epoch seconds). The service performs the actions it returns, in order,
and feeds it what happened:

- ``begin(now)``: the run starts (a new action, or one resumed after a takeover);
- ``feed(events, now)``: events that arrived together (a leg's result on ``hb.exec.result``, the executor's
  answer to an order request or its silence), then a look at the deadline, the lease and the retry timers;
- ``tick(now)``: nothing arrived by ``wake_at(now)``.

Asking the executor for a leg's order is safe to repeat (the order's actionId is its idempotency key):

- no executor (no responders): ask again with backoff, until the leg timeout unless the order may already
  have been received (a timeout or an answer came before, or the action was resumed); then the leg is
  EXPIRED with EXECUTOR_UNAVAILABLE (never sent);
- no reply in time: ask again at once; any other failure: ask again with backoff;
- IN_FLIGHT: ask again with backoff; OUTCOME_UNKNOWN: hand it to the action once (UNSETTLED) and keep asking
  every 1-10 s until the reconciled result comes, as an answer or on ``hb.exec.result``.

Every change of state is written to the record first (``Record``; the service's compare-and-set fails when
another replica took the action over, which ends the run) and then published (``Publish``), its seq one
above the last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import msgspec

from hedgebridge.protocol import ActionRequest, ActionState, CloseOrder, LegState, OpenOrder, OrderResult, errors

from . import actions
from .model import ActionRecord, moment

_FIRST_PAUSE_S = 0.05
_MAX_PAUSE_S = 1.0
_UNKNOWN_PAUSE_S = (1.0, 10.0)  # asking again after OUTCOME_UNKNOWN: from 1 s, doubling up to 10 s
_UNREADABLE_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    """What every run of one coordinator replica shares."""

    owner: str  # this replica's id (the record's owner)
    lease_s: float
    leg_timeout_ms: int
    leg_ttl_ms: int | None = None  # None: the executor's

    @property
    def ask_timeout_s(self) -> float:
        """How long one order request waits for the executor's answer."""
        return (self.leg_timeout_ms + (self.leg_ttl_ms or 5_000)) / 1000 + 2.0


# --- events ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reported:
    """An executor result published on ``hb.exec.result.*`` for one of the action's orders."""

    result: OrderResult


@dataclass(frozen=True, slots=True)
class Answered:
    """The executor's answer to the order request for ``order_id``."""

    order_id: str
    result: OrderResult


@dataclass(frozen=True, slots=True)
class NoExecutor:
    """No executor took the order request (no responders): nothing was sent."""

    order_id: str


@dataclass(frozen=True, slots=True)
class NoReply:
    """The order request got no answer in time: the executor may be running it."""

    order_id: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """The executor's answer did not decode."""

    order_id: str
    error: str


@dataclass(frozen=True, slots=True)
class AskFailed:
    """The order request failed otherwise (a closed connection...): it may have left."""

    order_id: str
    error: str


Event = Reported | Answered | NoExecutor | NoReply | Unreadable | AskFailed


# --- actions -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ask:
    """Ask the executor for ``order`` (wait up to ``timeout_s``) and feed back what came of it."""

    order: OpenOrder | CloseOrder
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Record:
    """Write the record (compare-and-set on the revision: only the owner writes); the lease is renewed."""

    record: ActionRecord


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish the state on the action sync channel (``Nats-Msg-Id = <actionId>:<seq>``)."""

    state: ActionState


@dataclass(frozen=True, slots=True)
class RepublishIfMissing:
    """A previous owner may have died between writing and publishing ``state``: publish it unless the stream
    has it already."""

    state: ActionState


@dataclass(frozen=True, slots=True)
class Respond:
    """The request may be answered now with the current state (it is final, or its timeout passed)."""


@dataclass(frozen=True, slots=True)
class Finished:
    """The action is final: it leaves the list of running actions."""

    state: ActionState


@dataclass(frozen=True, slots=True)
class Note:
    """A log event."""

    level: Literal["info", "warning", "error"]
    event: str
    fields: dict[str, Any]


Action = Ask | Record | Publish | RepublishIfMissing | Respond | Finished | Note


# --- the run -----------------------------------------------------------------------------------------------


@dataclass
class _Asking:
    """How one leg's order is being asked for."""

    leg: LegState
    order: OpenOrder | CloseOrder
    started: float
    maybe_received: bool  # the executor may have it: never give up as "not sent"
    pause: float = _FIRST_PAUSE_S
    reported_unknown: bool = False
    waiting: bool = True  # a request is out, its outcome not fed yet
    retry_at: float | None = None
    finished: bool = False  # its result went to the action

    def fields(self, action_id: str) -> dict[str, Any]:
        return {"action": action_id, "order": self.leg.order_action_id, "account": self.leg.account_id}

    def backoff(self, now: float, delay: float | None = None) -> None:
        self.retry_at = now + (self.pause if delay is None else delay)
        if delay is None:
            self.pause = min(self.pause * 2, _MAX_PAUSE_S)


@dataclass
class ActionRun:
    """One action this replica drives (see the module's docstring)."""

    request: ActionRequest
    state: ActionState
    deadline: float  # epoch seconds: the request's timeout
    created_at: datetime
    settings: Settings
    resumed: bool = False  # taken over from another replica (or an earlier life of this one)
    lease_until: float = 0.0
    timed_out: bool = False
    answered: bool = False  # final, or its timeout passed
    done: bool = False  # final: nothing more to do
    _asks: dict[str, _Asking] = field(default_factory=dict, repr=False)

    @classmethod
    def resume(cls, record: ActionRecord, settings: Settings) -> ActionRun:
        """The run of an action taken over (its ``record`` as this replica wrote it when taking it)."""
        return cls(
            request=record.request,
            state=record.state,
            deadline=record.deadline,
            created_at=record.created_at,
            settings=settings,
            resumed=True,
            lease_until=record.lease_until,
        )

    @property
    def action_id(self) -> str:
        return self.state.action_id

    def begin(self, now: float) -> list[Action]:
        out: list[Action] = []
        if self.resumed:
            out.append(RepublishIfMissing(self.state))
        if self.state.state == "ACCEPTED":
            self._commit(out, actions.start(self.state, moment(now)), now)
        self._advance(out, now)
        return out

    def feed(self, events: Iterable[Event], now: float) -> list[Action]:
        out: list[Action] = []
        results: list[OrderResult] = []
        for event in events:
            results += self._transport(event, now, out)
        for result in results:
            changed = actions.apply(self.state, result, moment(now))
            if changed is not None:
                self._commit(out, changed, now)
        if not self.done and self.lease_until - now < self.settings.lease_s * 2 / 3:
            self._commit(out, self.state, now, publish=False)  # renew the lease
        self._advance(out, now)
        return out

    def tick(self, now: float) -> list[Action]:
        return self.feed((), now)

    def wake_at(self, now: float) -> float:
        """When to ``tick`` if nothing arrives: a retry, the deadline, or a third of the lease."""
        at = now + self.settings.lease_s / 3
        if not self.resumed and not self.timed_out:
            at = min(at, max(self.deadline, now))
        for asking in self._asks.values():
            if asking.retry_at is not None and not asking.finished:
                at = min(at, max(asking.retry_at, now))
        return at

    # --- inside ---------------------------------------------------------------------------------------------

    def _commit(self, out: list[Action], state: ActionState, now: float, *, publish: bool = True) -> None:
        lease_until = now + self.settings.lease_s
        record = ActionRecord(
            request=self.request,
            state=state,
            owner=self.settings.owner,
            lease_until=lease_until,
            deadline=self.deadline,
            created_at=self.created_at,
            updated_at=moment(now),
        )
        out.append(Record(record))
        self.state = state
        self.lease_until = lease_until
        if publish:
            out.append(Publish(state))
        if actions.is_final(state):
            self.answered = True
            out += [Respond(), Finished(state)]

    def _advance(self, out: list[Action], now: float) -> None:
        if self.done:
            return
        settled = actions.settle(self.state, moment(now))
        if settled is not None:
            self._commit(out, settled, now)
        fields = {"action": self.action_id, "kind": self.state.kind}
        if actions.is_final(self.state):
            self.done = True
            self._asks.clear()
            done = {"state": self.state.state, "code": self.state.code, "seq": self.state.seq}
            out.append(Note("info", "action done", {**done, **fields}))
            return
        self._ask(out, now)
        if not self.resumed and not self.timed_out and now >= self.deadline:
            self.timed_out = True
            late = actions.timed_out(self.state, moment(now))
            if late is not None:
                self._commit(out, late, now)
            out.append(Note("warning", "action not settled in time", {"state": self.state.state, **fields}))
            self.answered = True
            out.append(Respond())

    def _ask(self, out: list[Action], now: float) -> None:
        """An order request for every active leg not being asked for, and for every retry that is due."""
        active = {leg.order_action_id: leg for leg in actions.active_legs(self.state)}
        for order_id in [k for k in self._asks if k not in active]:
            del self._asks[order_id]  # final (its result came, here or on hb.exec.result)
        for order_id, leg in active.items():
            asking = self._asks.get(order_id)
            if asking is None or asking.finished:
                order = actions.order_for(
                    self.state, leg, timeout_ms=self.settings.leg_timeout_ms, ttl_ms=self.settings.leg_ttl_ms
                )
                self._asks[order_id] = _Asking(leg=leg, order=order, started=now, maybe_received=self.resumed)
                out.append(Ask(order, self.settings.ask_timeout_s))
            elif not asking.waiting and asking.retry_at is not None and asking.retry_at <= now:
                asking.waiting, asking.retry_at = True, None
                out.append(Ask(asking.order, self.settings.ask_timeout_s))

    def _transport(self, event: Event, now: float, out: list[Action]) -> list[OrderResult]:
        """What one event means for its leg; the results to hand to the action."""
        if isinstance(event, Reported):
            return [event.result]
        asking = self._asks.get(event.order_id)
        if asking is None or asking.finished or not asking.waiting:
            return []  # an answer for a leg that is final by now
        asking.waiting = False
        fields = asking.fields(self.action_id)
        if isinstance(event, NoExecutor):
            timeout_s = self.settings.leg_timeout_ms / 1000
            if not asking.maybe_received and now - asking.started > timeout_s:
                out.append(Note("warning", "no executor answered; leg not sent", fields))
                asking.finished = True
                return [not_sent(asking.leg)]
            asking.backoff(now)
            return []
        asking.maybe_received = True
        if isinstance(event, NoReply):
            out.append(Note("warning", "executor did not answer in time; asking again", fields))
            asking.retry_at = now
            return []
        if isinstance(event, AskFailed):
            out.append(Note("warning", "order request failed; asking again", {"error": event.error, **fields}))
            asking.backoff(now)
            return []
        if isinstance(event, Unreadable):
            out.append(Note("error", "unreadable executor answer", {"error": event.error, **fields}))
            asking.backoff(now, _UNREADABLE_PAUSE_S)
            return []
        return self._answered(asking, event.result, now, out)

    def _answered(self, asking: _Asking, result: OrderResult, now: float, out: list[Action]) -> list[OrderResult]:
        order_id = asking.leg.order_action_id
        if result.action_id != order_id:
            result = _with_action_id(result, order_id)
        if result.status == "IN_FLIGHT":
            asking.backoff(now)
            return []
        if result.status == "OUTCOME_UNKNOWN":
            first, most = _UNKNOWN_PAUSE_S
            asking.retry_at = now + max(asking.pause, first)
            asking.pause = min(max(asking.pause, first) * 2, most)
            if asking.reported_unknown:
                return []
            asking.reported_unknown = True
            fields = asking.fields(self.action_id)
            out.append(Note("warning", "leg outcome unknown; waiting for reconciliation", fields))
            return [result]
        asking.finished = True
        return [result]


def _with_action_id(result: OrderResult, order_id: str) -> OrderResult:
    return msgspec.structs.replace(result, action_id=order_id)


def not_sent(leg: LegState) -> OrderResult:
    """The result of a leg no executor took within the leg timeout."""
    return OrderResult(
        status="EXPIRED",
        code=errors.EXECUTOR_UNAVAILABLE,
        message="no executor answered within the leg timeout; the order was never sent",
        action_id=leg.order_action_id,
        account_id=leg.account_id,
    )
