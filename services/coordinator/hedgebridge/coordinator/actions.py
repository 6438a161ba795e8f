"""The action state machine (pure code, no I/O).

An action moves through these states (``ActionState.state``); every change returns a new ActionState whose
``seq`` is one above the previous one::

    ACCEPTED ──start──> RUNNING ──every leg final──> COMPLETED                      (every leg filled)
                           │                      ├─> FAILED (LEG_FAILED)           (no leg filled)
                           │                      ├─> PARTIAL (LEG_FAILED)          (some filled; KEEP, or a close)
                           │                      └─> COMPENSATING ──> COMPENSATED  (some filled; COMPENSATE)
                           │                                       └─> FAILED (COMPENSATION_FAILED)
                           └─ a leg's outcome unknown ──> UNSETTLED ── reconciled result ──> (as above)
    (validation) ──> REJECTED

Legs and their executor orders (the order's actionId is the leg's idempotency key)::

    HEDGE_ENTRY  one OPEN per leg                      <actionId>-E<i>
    EXIT         one CLOSE per open leg of the target   <actionId>-X<i>
    CLOSE_ALL    one CLOSE per open position            <actionId>-X<i>
    compensation one CLOSE per filled entry leg         <actionId>-C<i>   (i: the entry leg's index)

Rules:

- A HEDGE_ENTRY has at most one leg per (account, symbol, side): two such legs cannot be told apart in the
  terminal's report, and one leg with the summed volume does the same.
- A PARTIALLY_FILLED leg counts as filled for its filled volume; the action says so (code PARTIAL_FILL).
- A close that finds its position already closed (REJECTED with ALREADY_CLOSED) did what it was for.
- A leg whose outcome is unknown keeps the action UNSETTLED until the reconciled result arrives; results
  never change once final.
- Policies apply to HEDGE_ENTRY: COMPENSATE closes the filled legs when some failed, KEEP keeps them (PARTIAL).
  Closes cannot be compensated: an EXIT or CLOSE_ALL whose closes partly failed is PARTIAL whatever the policy.

This module holds the transitions; the record and the ids (``model.py``), validation (``validation.py``) and
planning (``planning.py``) are re-exported here, so ``actions.<name>`` names the whole state machine.
``run.py`` drives it for one action.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from hedgebridge.protocol import ActionState, LegState, OrderResult, errors

from .model import (
    FILLED_LEG,
    FINAL_LEG,
    OPEN_LEG,
    ROLE_LETTER,
    ActionRecord,
    closed,
    is_final,
    moment,
    open_legs,
    order_action_id,
    parent_action_id,
    same_request,
    take_over,
)
from .planning import (
    check_target,
    mismatch,
    order_for,
    plan_close_all,
    plan_entry,
    plan_exit,
    rejected,
    unsettled,
)
from .validation import valid_action_id, validate

__all__ = [
    "FILLED_LEG",
    "FINAL_LEG",
    "OPEN_LEG",
    "ROLE_LETTER",
    "ActionRecord",
    "active_legs",
    "apply",
    "check_target",
    "is_final",
    "mismatch",
    "moment",
    "open_legs",
    "order_action_id",
    "order_for",
    "parent_action_id",
    "plan_close_all",
    "plan_entry",
    "plan_exit",
    "rejected",
    "same_request",
    "settle",
    "start",
    "take_over",
    "timed_out",
    "unsettled",
    "valid_action_id",
    "validate",
]


def _next(current: ActionState, now: datetime, /, **changes: object) -> ActionState:
    return msgspec.structs.replace(current, seq=current.seq + 1, timestamp=now, duplicate=False, **changes)


def start(state: ActionState, now: datetime) -> ActionState:
    """ACCEPTED -> RUNNING: every leg is about to be sent."""
    if state.state != "ACCEPTED":
        raise ValueError(f"cannot start an action that is {state.state}")
    legs = [msgspec.structs.replace(leg, status="RUNNING") if leg.status == "PENDING" else leg for leg in state.legs]
    return _next(state, now, state="RUNNING", legs=legs)


def apply(state: ActionState, result: OrderResult, now: datetime) -> ActionState | None:
    """Record an executor result for one of the legs; None when it changes nothing (an unknown order, a
    repeated answer, an answer for a leg already final, IN_FLIGHT)."""
    if is_final(state):
        return None
    position = next((i for i, leg in enumerate(state.legs) if leg.order_action_id == result.action_id), None)
    if position is None:
        return None
    leg = state.legs[position]
    if leg.status in FINAL_LEG or result.status == "IN_FLIGHT":
        return None
    if result.status == "OUTCOME_UNKNOWN" and leg.status == "OUTCOME_UNKNOWN":
        return None
    filled = result.status in FILLED_LEG
    updated = msgspec.structs.replace(
        leg,
        status=result.status,
        mt_ticket=result.mt_ticket or leg.mt_ticket,
        position_id=result.position_id or leg.position_id,
        price=result.price if filled else leg.price,
        filled_volume=result.volume if filled else None,
        code=result.code,
        message=result.message,
    )
    legs = list(state.legs)
    legs[position] = updated
    return _next(state, now, legs=legs)


def _done(leg: LegState) -> bool:
    """A main leg that did its job (for a close: the position is gone, or was closed for a part)."""
    if leg.role == "ENTRY":
        return leg.status in FILLED_LEG
    return closed(leg) or leg.status == "PARTIALLY_FILLED"


def _describe(legs: Iterable[LegState]) -> str:
    parts = []
    for leg in legs:
        why = f" {leg.code}" if leg.code else ""
        text = f": {leg.message}" if leg.message else ""
        parts.append(f"leg {leg.index} ({leg.account_id}) {leg.status}{why}{text}")
    return "; ".join(parts)


def settle(state: ActionState, now: datetime) -> ActionState | None:
    """The next state once the legs say so; None while legs are still running or nothing changes."""
    if is_final(state) or state.state == "ACCEPTED":
        return None
    compensation = [leg for leg in state.legs if leg.role == "COMPENSATION"]
    phase = compensation or [leg for leg in state.legs if leg.role != "COMPENSATION"]
    if any(leg.status in OPEN_LEG for leg in phase):
        return None
    unknown = [leg for leg in phase if leg.status == "OUTCOME_UNKNOWN"]
    if unknown:
        if state.state == "UNSETTLED":
            return None
        return _next(
            state,
            now,
            state="UNSETTLED",
            code=errors.OUTCOME_UNKNOWN,
            message=f"waiting for reconciliation: {_describe(unknown)}",
        )
    if compensation:
        return _settle_compensation(state, compensation, now)
    return _settle_main(state, phase, now)


def _settle_main(state: ActionState, legs: list[LegState], now: datetime) -> ActionState:
    if not legs:
        return _next(state, now, state="COMPLETED", code=None, message="nothing to close")
    done = [leg for leg in legs if _done(leg)]
    failed = [leg for leg in legs if not _done(leg)]
    partial = [leg for leg in done if leg.status == "PARTIALLY_FILLED"]
    if not failed:
        if partial:
            return _next(
                state, now, state="COMPLETED", code=errors.PARTIAL_FILL, message=f"partly filled: {_describe(partial)}"
            )
        return _next(state, now, state="COMPLETED", code=None, message="")
    if not done:
        return _next(state, now, state="FAILED", code=errors.LEG_FAILED, message=f"no leg filled: {_describe(failed)}")
    if state.kind == "HEDGE_ENTRY" and state.policy == "COMPENSATE":
        untraceable = [leg for leg in done if leg.mt_ticket is None and leg.position_id is None]
        if untraceable:
            return _next(
                state,
                now,
                state="FAILED",
                code=errors.COMPENSATION_FAILED,
                message=f"cannot close filled legs without a ticket: {_describe(untraceable)}",
            )
        added = [
            LegState(
                index=leg.index,
                role="COMPENSATION",
                account_id=leg.account_id,
                order_action_id=order_action_id(state.action_id, "COMPENSATION", leg.index),
                status="RUNNING",
                symbol=leg.symbol,
                side=leg.side,
                volume=leg.filled_volume if leg.filled_volume is not None else leg.volume,
                mt_ticket=leg.mt_ticket,
                position_id=leg.position_id,
            )
            for leg in done
        ]
        return _next(
            state,
            now,
            state="COMPENSATING",
            legs=[*state.legs, *added],
            code=errors.LEG_FAILED,
            message=f"closing the filled legs: {_describe(failed)}",
        )
    return _next(state, now, state="PARTIAL", code=errors.LEG_FAILED, message=f"legs failed: {_describe(failed)}")


def _settle_compensation(state: ActionState, legs: list[LegState], now: datetime) -> ActionState:
    failed_entries = [leg for leg in state.legs if leg.role == "ENTRY" and leg.status not in FILLED_LEG]
    not_closed = [leg for leg in legs if not closed(leg)]
    if not_closed:
        return _next(
            state,
            now,
            state="FAILED",
            code=errors.COMPENSATION_FAILED,
            message=f"compensation failed, positions may be unhedged: {_describe(not_closed)}",
        )
    return _next(
        state,
        now,
        state="COMPENSATED",
        code=errors.LEG_FAILED,
        message=f"filled legs closed again after: {_describe(failed_entries)}",
    )


def timed_out(state: ActionState, now: datetime) -> ActionState | None:
    """The action's timeout passed before it became final: UNSETTLED (its legs keep being settled)."""
    if is_final(state) or state.state == "UNSETTLED":
        return None
    running = [leg for leg in state.legs if leg.status not in FINAL_LEG]
    return _next(
        state,
        now,
        state="UNSETTLED",
        code=errors.IN_FLIGHT,
        message=f"not settled within the action's timeout: {_describe(running)}",
    )


def active_legs(state: ActionState) -> list[LegState]:
    """Legs that still wait for an executor answer (sent, or to be sent again: the order's actionId makes
    that safe), or for a reconciled result."""
    if is_final(state) or state.state == "ACCEPTED":
        return []
    compensation = [leg for leg in state.legs if leg.role == "COMPENSATION"]
    phase = compensation or state.legs
    return [leg for leg in phase if leg.status not in FINAL_LEG]
