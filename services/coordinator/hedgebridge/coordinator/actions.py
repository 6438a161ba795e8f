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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

import msgspec

from hedgebridge.protocol import (
    FINAL_ACTION_STATES,
    ActionRequest,
    ActionState,
    CloseOrder,
    LegState,
    OpenOrder,
    OrderResult,
    Position,
    errors,
)
from hedgebridge.protocol.messages import ActionKind, ActionStateName

from .errors import ActionInvalid

_ACCOUNT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9._#+-]{1,32}$")
_ACTION = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MAX_VOLUME = 1_000_000.0
VOLUME_EPSILON = 1e-9

ROLE_LETTER = {"ENTRY": "E", "EXIT": "X", "COMPENSATION": "C"}
# Leg statuses that are an answer (a leg in one of these is never sent again).
FINAL_LEG = frozenset({"FILLED", "PARTIALLY_FILLED", "REJECTED", "EXPIRED", "INVALID"})
FILLED_LEG = frozenset({"FILLED", "PARTIALLY_FILLED"})
# Leg statuses still waiting for an answer from the executor.
OPEN_LEG = frozenset({"PENDING", "RUNNING", "IN_FLIGHT"})


class ActionRecord(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """What JetStream keeps of an action (KV bucket ``hb_actions``, key = actionId)."""

    request: ActionRequest
    state: ActionState
    owner: str  # the coordinator replica driving it
    lease_until: float  # epoch seconds; past it, another replica may take the action over
    deadline: float  # epoch seconds: when the request's timeout passes
    created_at: datetime
    updated_at: datetime


def valid_action_id(value: str) -> bool:
    return bool(_ACTION.match(value))


def is_final(state: ActionState) -> bool:
    return state.state in FINAL_ACTION_STATES


def order_action_id(action_id: str, role: str, index: int) -> str:
    return f"{action_id}-{ROLE_LETTER[role]}{index}"


def parent_action_id(order_id: str) -> str | None:
    """The action an order's actionId belongs to (``<actionId>-<E|X|C><i>``), or None."""
    head, sep, tail = order_id.rpartition("-")
    if not sep or len(tail) < 2 or tail[0] not in "EXC" or not tail[1:].isdigit() or not head:
        return None
    return head


def same_request(first: ActionRequest, second: ActionRequest) -> bool:
    """Whether two requests with one actionId ask for the same thing (the timeout may differ)."""
    return msgspec.structs.replace(first, timeout_ms=None) == msgspec.structs.replace(second, timeout_ms=None)


# --- validation --------------------------------------------------------------------------------------------


def validate(request: ActionRequest) -> None:
    """Raise ActionInvalid (ACTION_INVALID, with the offending field) unless the request can be planned."""
    if request.action_id is not None and not _ACTION.match(request.action_id):
        raise ActionInvalid("`actionId` must be 1-128 of A-Z a-z 0-9 _ -", field="actionId")
    if request.kind == "HEDGE_ENTRY":
        _validate_entry(request)
    elif request.kind == "EXIT":
        if request.target_action_id is None or not _ACTION.match(request.target_action_id):
            raise ActionInvalid("EXIT needs a valid `targetActionId`", field="targetActionId")
        if request.target_action_id == request.action_id:
            raise ActionInvalid("an EXIT cannot target itself", field="targetActionId")
        _unused(request, legs=True, accounts=True)
    else:
        if not request.account_ids:
            raise ActionInvalid("CLOSE_ALL needs `accountIds`", field="accountIds")
        seen: set[str] = set()
        for i, account in enumerate(request.account_ids):
            if not _ACCOUNT.match(account):
                raise ActionInvalid(f"`accountIds[{i}]` is not a valid account id", field=f"accountIds[{i}]")
            if account in seen:
                raise ActionInvalid(f"`accountIds[{i}]` names {account} twice", field=f"accountIds[{i}]")
            seen.add(account)
        _unused(request, legs=True, target=True)


def _validate_entry(request: ActionRequest) -> None:
    if not request.legs:
        raise ActionInvalid("HEDGE_ENTRY needs `legs`", field="legs")
    seen: dict[tuple[str, str, str], int] = {}
    for i, leg in enumerate(request.legs):
        if not _ACCOUNT.match(leg.account_id):
            raise ActionInvalid(f"`legs[{i}].accountId` is not a valid account id", field=f"legs[{i}].accountId")
        if not _SYMBOL.match(leg.symbol):
            raise ActionInvalid(f"`legs[{i}].symbol` is not a valid symbol", field=f"legs[{i}].symbol")
        if leg.side not in ("BUY", "SELL"):
            raise ActionInvalid(f"`legs[{i}].side` must be BUY or SELL", field=f"legs[{i}].side")
        if not 0 < leg.volume <= MAX_VOLUME:
            raise ActionInvalid(f"`legs[{i}].volume` must be above 0 and at most 1e6", field=f"legs[{i}].volume")
        key = (leg.account_id, leg.symbol, leg.side)
        if key in seen:
            raise ActionInvalid(
                f"`legs[{i}]` repeats legs[{seen[key]}] ({leg.side} {leg.symbol} on {leg.account_id}): "
                "one leg per account, symbol and side (sum the volumes)",
                field=f"legs[{i}]",
            )
        seen[key] = i
    _unused(request, target=True, accounts=True)


def _unused(request: ActionRequest, *, legs: bool = False, target: bool = False, accounts: bool = False) -> None:
    if legs and request.legs:
        raise ActionInvalid(f"`legs` is not used by {request.kind}", field="legs")
    if target and request.target_action_id is not None:
        raise ActionInvalid(f"`targetActionId` is not used by {request.kind}", field="targetActionId")
    if accounts and request.account_ids:
        raise ActionInvalid(f"`accountIds` is not used by {request.kind}", field="accountIds")


def open_legs(target: ActionState) -> list[LegState]:
    """The entry legs of ``target`` that are (believed) open: filled and not closed again by compensation."""
    closed = {leg.index for leg in target.legs if leg.role == "COMPENSATION" and _closed(leg)}
    return [
        leg
        for leg in target.legs
        if leg.role == "ENTRY" and leg.status in FILLED_LEG and leg.mt_ticket is not None and leg.index not in closed
    ]


def check_target(target: ActionState | None, target_id: str) -> list[LegState]:
    """The legs an EXIT of ``target`` closes; raises ActionInvalid when there is nothing it may close."""
    if target is None:
        raise ActionInvalid(f"no action {target_id} is known", code=errors.ACTION_NOT_FOUND, field="targetActionId")
    if target.kind != "HEDGE_ENTRY":
        raise ActionInvalid(
            f"action {target_id} is a {target.kind}; only a HEDGE_ENTRY has legs to exit", field="targetActionId"
        )
    if not is_final(target):
        raise ActionInvalid(
            f"action {target_id} is still {target.state}; exit it once it is final", field="targetActionId"
        )
    legs = open_legs(target)
    if not legs:
        raise ActionInvalid(f"action {target_id} ({target.state}) has no open leg to close", field="targetActionId")
    return legs


# --- planning ----------------------------------------------------------------------------------------------


def _state(
    request: ActionRequest, action_id: str, name: ActionStateName, now: datetime, **fields: object
) -> ActionState:
    values: dict[str, object] = {
        "action_id": action_id,
        "kind": request.kind,
        "state": name,
        "seq": 1,
        "timestamp": now,
        "policy": request.policy,
        "user_id": request.user_id,
    }
    values.update(fields)
    return ActionState(**values)  # type: ignore[arg-type]


def rejected(
    action_id: str,
    code: str,
    message: str,
    now: datetime,
    *,
    request: ActionRequest | None = None,
    kind: ActionKind = "HEDGE_ENTRY",
) -> ActionState:
    """The answer to a request refused before anything was sent (it is not recorded). Without a readable
    request, ``kind`` is what the request claimed to be."""
    if request is None:
        return ActionState(
            action_id=action_id, kind=kind, state="REJECTED", seq=1, timestamp=now, code=code, message=message
        )
    return _state(request, action_id, "REJECTED", now, code=code, message=message, account_ids=request.accounts())


def plan_entry(request: ActionRequest, action_id: str, now: datetime) -> ActionState:
    legs = [
        LegState(
            index=i,
            role="ENTRY",
            account_id=leg.account_id,
            order_action_id=order_action_id(action_id, "ENTRY", i),
            symbol=leg.symbol,
            side=leg.side,
            volume=leg.volume,
        )
        for i, leg in enumerate(request.legs)
    ]
    return _state(request, action_id, "ACCEPTED", now, legs=legs, account_ids=request.accounts())


def plan_exit(request: ActionRequest, action_id: str, target: ActionState | None, now: datetime) -> ActionState:
    assert request.target_action_id is not None
    to_close = check_target(target, request.target_action_id)
    legs = [
        LegState(
            index=i,
            role="EXIT",
            account_id=leg.account_id,
            order_action_id=order_action_id(action_id, "EXIT", i),
            symbol=leg.symbol,
            side=leg.side,
            volume=leg.filled_volume if leg.filled_volume is not None else leg.volume,
            mt_ticket=leg.mt_ticket,
            position_id=leg.position_id,
        )
        for i, leg in enumerate(to_close)
    ]
    accounts = sorted({leg.account_id for leg in legs})
    return _state(request, action_id, "ACCEPTED", now, legs=legs, account_ids=accounts)


def plan_close_all(
    request: ActionRequest, action_id: str, positions: Mapping[str, Iterable[Position]], now: datetime
) -> ActionState:
    """Close every position in ``positions`` (account -> the complete list of its open positions)."""
    legs: list[LegState] = []
    for account in request.account_ids:
        for position in positions.get(account, ()):
            i = len(legs)
            legs.append(
                LegState(
                    index=i,
                    role="EXIT",
                    account_id=account,
                    order_action_id=order_action_id(action_id, "EXIT", i),
                    symbol=position.symbol,
                    side=position.side,
                    volume=position.volume,
                    mt_ticket=position.mt_ticket,
                    position_id=position.position_id,
                )
            )
    return _state(request, action_id, "ACCEPTED", now, legs=legs, account_ids=list(request.account_ids))


def order_for(
    state: ActionState,
    leg: LegState,
    *,
    timeout_ms: int | None = None,
    ttl_ms: int | None = None,
) -> OpenOrder | CloseOrder:
    """The executor order that runs ``leg``."""
    if leg.role == "ENTRY":
        assert leg.symbol is not None
        assert leg.side is not None
        assert leg.volume is not None
        return OpenOrder(
            account_id=leg.account_id,
            symbol=leg.symbol,
            side=leg.side,
            volume=leg.volume,
            action_id=leg.order_action_id,
            user_id=state.user_id,
            execution_type="ENTRY",
            timeout_ms=timeout_ms,
            ttl_ms=ttl_ms,
        )
    reason = "compensation" if leg.role == "COMPENSATION" else state.kind.lower()
    return CloseOrder(
        account_id=leg.account_id,
        mt_ticket=leg.mt_ticket,
        position_id=None if leg.mt_ticket is not None else leg.position_id,
        action_id=leg.order_action_id,
        user_id=state.user_id,
        exit_reason=f"{reason} of action {state.action_id}",
        timeout_ms=timeout_ms,
        ttl_ms=ttl_ms,
    )


# --- transitions -------------------------------------------------------------------------------------------


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


def _closed(leg: LegState) -> bool:
    """A close leg that left no position behind."""
    return leg.status == "FILLED" or (leg.status == "REJECTED" and leg.code == errors.ALREADY_CLOSED)


def _done(leg: LegState) -> bool:
    """A main leg that did its job (for a close: the position is gone, or was closed for a part)."""
    if leg.role == "ENTRY":
        return leg.status in FILLED_LEG
    return _closed(leg) or leg.status == "PARTIALLY_FILLED"


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
    not_closed = [leg for leg in legs if not _closed(leg)]
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
