"""Planning an action (pure code, no I/O): its first state and legs from the request and the resolved
targets, the answer to a refused request, and the executor order that runs each leg."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from hedgebridge.protocol import (
    ActionRequest,
    ActionState,
    CloseOrder,
    LegState,
    OpenOrder,
    Position,
    errors,
)
from hedgebridge.protocol.messages import ActionKind, ActionStateName

from .model import is_final, open_legs, order_action_id, same_request
from .validation import ActionInvalid


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


def mismatch(stored: ActionRequest, request: ActionRequest, action_id: str, now: datetime) -> ActionState | None:
    """A repeated actionId: DUPLICATE_MISMATCH when ``request`` asks for something else than the ``stored``
    one did; None when it asks for the same (it then gets the first action's state)."""
    if same_request(stored, request):
        return None
    message = f"actionId {action_id} was already used for a different action"
    return rejected(action_id, errors.DUPLICATE_MISMATCH, message, now, request=request)


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
            stop_loss=leg.stop_loss or None,
            take_profit=leg.take_profit or None,
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
            stop_loss=leg.stop_loss,
            take_profit=leg.take_profit,
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
