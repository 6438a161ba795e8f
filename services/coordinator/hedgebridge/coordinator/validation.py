"""Validation of action requests (pure code, no I/O): what a request must hold before it is planned, and the
fault (``ActionInvalid``) a request that cannot run as asked is refused with."""

from __future__ import annotations

from hedgebridge.common.faults import Final
from hedgebridge.protocol import ActionRequest, names
from hedgebridge.protocol import errors as codes


class ActionInvalid(Final):
    """The action cannot run as asked (validation, an unknown or unfinished target, an incomplete cache);
    nothing was sent. ``code`` is ACTION_INVALID, ACTION_NOT_FOUND or CACHE_INCOMPLETE; ``field`` names the
    offending part of the request when there is one."""

    code = codes.ACTION_INVALID

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


MAX_VOLUME = 1_000_000.0


def valid_action_id(value: str) -> bool:
    return names.is_action_id(value)


def validate(request: ActionRequest) -> None:
    """Raise ActionInvalid (ACTION_INVALID, with the offending field) unless the request can be planned."""
    if request.action_id is not None and not names.is_action_id(request.action_id):
        raise ActionInvalid("`actionId` must be 1-128 of A-Z a-z 0-9 _ -", field="actionId")
    if request.kind == "HEDGE_ENTRY":
        _validate_entry(request)
    elif request.kind == "EXIT":
        if request.target_action_id is None or not names.is_action_id(request.target_action_id):
            raise ActionInvalid("EXIT needs a valid `targetActionId`", field="targetActionId")
        if request.target_action_id == request.action_id:
            raise ActionInvalid("an EXIT cannot target itself", field="targetActionId")
        _unused(request, legs=True, accounts=True)
    else:
        if not request.account_ids:
            raise ActionInvalid("CLOSE_ALL needs `accountIds`", field="accountIds")
        seen: set[str] = set()
        for i, account in enumerate(request.account_ids):
            if not names.is_account_id(account):
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
        if not names.is_account_id(leg.account_id):
            raise ActionInvalid(f"`legs[{i}].accountId` is not a valid account id", field=f"legs[{i}].accountId")
        if not names.is_symbol(leg.symbol):
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
