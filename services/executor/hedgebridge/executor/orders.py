"""Order requests to commands, and terminal reports to results (pure code, no I/O)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from hedgebridge.protocol import (
    BookEntry,
    CloseCommand,
    ClosedEvent,
    CloseMetadata,
    CloseOrder,
    ErrorMessage,
    ModifiedEvent,
    ModifyCommand,
    ModifyMetadata,
    ModifyOrder,
    OpenCommand,
    OpenMetadata,
    OpenOrder,
    OrderCommand,
    OrderRecord,
    OrderRequest,
    OrderResult,
    Report,
    errors,
    order_kind,
    retcodes,
    type_name,
)
from hedgebridge.protocol.messages import OrderStatus

from .lifecycle import OrderState, Reconciled, Verdict
from .symbol_rules import number


def new_id() -> str:
    return uuid.uuid4().hex


def build_command(request: OrderRequest, now: datetime) -> OrderCommand:
    """The terminal command for ``request``. Every command carries an actionId (the request's, or a new one);
    an OPEN gets a new positionId, a CLOSE or MODIFY by ticket alone uses ``mt-<ticket>``."""
    action_id = request.action_id or new_id()
    if isinstance(request, OpenOrder):
        return OpenCommand(
            timestamp=now,
            account_id=request.account_id,
            position_id=new_id(),
            action_id=action_id,
            symbol=request.symbol,
            side=request.side,
            volume=request.volume,
            metadata=OpenMetadata(execution_type=request.execution_type, user_id=request.user_id),
            stop_loss=request.stop_loss or None,
            take_profit=request.take_profit or None,
        )
    if isinstance(request, ModifyOrder):
        return ModifyCommand(
            timestamp=now,
            account_id=request.account_id,
            position_id=request.position_id or f"mt-{request.mt_ticket}",
            action_id=action_id,
            mt_ticket=request.mt_ticket,
            stop_loss=request.stop_loss,
            take_profit=request.take_profit,
            metadata=ModifyMetadata(user_id=request.user_id),
        )
    return CloseCommand(
        timestamp=now,
        account_id=request.account_id,
        position_id=request.position_id or f"mt-{request.mt_ticket}",
        action_id=action_id,
        mt_ticket=request.mt_ticket,
        volume=request.volume,
        metadata=CloseMetadata(exit_reason=request.exit_reason, user_id=request.user_id),
    )


def new_record(request: OrderRequest, command: OrderCommand, owner: str, reply_to: str, now: datetime) -> OrderRecord:
    """The record an accepted order starts with (``hb_orders``, key = its actionId)."""
    assert command.action_id is not None
    return OrderRecord(
        action_id=command.action_id,
        request=request,
        command=command,
        state=OrderState.ACCEPTED,
        owner=owner,
        created_at=now,
        updated_at=now,
        reply_to=reply_to,
    )


def volume_of(command: OrderCommand) -> float | None:
    """The volume a command trades (None: all of a position, or a MODIFY, which trades none)."""
    return None if isinstance(command, ModifyCommand) else command.volume


def rounded_from(request: OrderRequest, command: OrderCommand) -> float | None:
    """The request's volume when the command carries it rounded down to the symbol's step (``roundVolume``)."""
    if not isinstance(request, OpenOrder | CloseOrder) or isinstance(command, ModifyCommand):
        return None
    if not request.round_volume or request.volume is None or command.volume in (None, request.volume):
        return None
    return request.volume


def noted(rounded: float | None, volume: float | None, result: OrderResult) -> OrderResult:
    """``result`` of an order whose volume was rounded down from ``rounded`` to ``volume``, saying so
    (``roundedFrom`` and the message); as it is when nothing was rounded or it says so already."""
    if rounded is None or volume is None or result.rounded_from is not None:
        return result
    note = f"volume {number(rounded)} rounded down to {number(volume)} (the symbol's step)"
    message = f"{result.message}; {note}" if result.message else note
    return msgspec.structs.replace(result, rounded_from=rounded, message=message)


def same_request(first: OrderRequest, second: OrderRequest) -> bool:
    """Whether a repeated actionId asks for the same thing (time limits aside)."""
    strip = {"timeout_ms": None, "ttl_ms": None}
    return msgspec.structs.replace(first, **strip) == msgspec.structs.replace(second, **strip)


def matches(command: OrderCommand, event: Report) -> bool:
    """Whether ``event`` is the terminal's answer to ``command``: same account and kind, and the same
    actionId when the event carries one, otherwise the same positionId."""
    if event.account_id != command.account_id:
        return False
    if order_kind(command) != order_kind(event):
        return False
    if event.action_id is not None:
        return event.action_id == command.action_id
    return event.position_id == command.position_id


def _base(command: OrderCommand) -> dict[str, object]:
    return {
        "kind": order_kind(command),
        "account_id": command.account_id,
        "position_id": command.position_id,
        "action_id": command.action_id,
        "mt_ticket": None if isinstance(command, OpenCommand) else command.mt_ticket,
        "symbol": command.symbol if isinstance(command, OpenCommand) else None,
        "side": command.side if isinstance(command, OpenCommand) else None,
        "requested_volume": None if isinstance(command, ModifyCommand) else command.volume,
    }


def _stops(command: OrderCommand, report: Report, filled: bool) -> dict[str, float | None]:
    """The position's stops after the order: what the report states, else (executed) what the command set."""
    if isinstance(report, ClosedEvent) or isinstance(command, CloseCommand):
        return {}
    asked = (command.stop_loss, command.take_profit) if filled else (None, None)
    stated = (report.stop_loss, report.take_profit)
    sl, tp = (have if have is not None else want for have, want in zip(stated, asked, strict=True))
    return {"stop_loss": sl, "take_profit": tp}


def result_of(
    command: OrderCommand,
    report: Report,
    verdict: Verdict,
    state: str,
    attempts: int,
    elapsed_ms: float,
) -> OrderResult:
    """The result a terminal's report leads to."""
    fields = _base(command)
    filled = report.status == "SUCCESS"
    message = "executed" if filled else report.error_message or "the terminal reported the order as failed"
    if verdict.status == "PARTIALLY_FILLED" and not isinstance(report, ModifiedEvent):
        message = f"partially filled: {report.volume:g} of {volume_of(command):g}; the rest was not sent again"
    if verdict.retcode_class is retcodes.RetcodeClass.NO_CHANGES:
        message = "no changes: the position has these stops already (NO_CHANGES)"
        filled = True
    if verdict.code is not None and not filled:
        message = f"{message} ({retcodes.name(report.error_code)})"
    price, volume = (None, None) if isinstance(report, ModifiedEvent) else (report.price, report.volume)
    fields.update(
        status=verdict.status,
        message=message,
        code=verdict.code,
        mt_ticket=report.mt_ticket or fields["mt_ticket"],
        position_id=report.position_id,
        price=price,
        volume=volume if filled else None,
        profit=report.profit if isinstance(report, ClosedEvent) else None,
        retcode=report.error_code,
        retcode_class=None if verdict.retcode_class is None else str(verdict.retcode_class),
        state=state,
        attempts=attempts,
        event=report,
        elapsed_ms=elapsed_ms,
        **_stops(command, report, filled),
    )
    return OrderResult(**fields)  # type: ignore[arg-type]


def refused(command: OrderCommand, error: ErrorMessage, state: str, attempts: int, elapsed_ms: float) -> OrderResult:
    """The result of a command the terminal answered with an ERROR instead of executing it (an older EA that
    does not know MODIFY): REJECTED with TERMINAL_REFUSED, nothing executed."""
    kind = type_name(command)
    message = (
        f"the terminal refused {kind} without executing it ({error.code}: {error.message}); an EA that does not "
        f"know {kind} must be upgraded"
        if error.code == errors.UNKNOWN_TYPE
        else f"the terminal refused {kind} without executing it ({error.code}: {error.message})"
    )
    return failure("REJECTED", errors.TERMINAL_REFUSED, message, command, elapsed_ms, state=state, attempts=attempts)


def refers_to(error: ErrorMessage, command: OrderCommand) -> bool:
    """Whether a terminal's ERROR is about ``command``: the same type, and its actionId or positionId (an EA
    that cannot read a command names only its type: the terminal handles one command at a time, and the
    executor sends one order at a time to a terminal, so it is the one awaited)."""
    if error.ref_type != type_name(command) or (error.account_id not in (None, command.account_id)):
        return False
    return error.ref_id in (None, "", command.action_id, command.position_id)


def failure(
    status: OrderStatus,
    code: str,
    message: str,
    command: OrderCommand | None,
    elapsed_ms: float,
    *,
    state: str = "",
    attempts: int = 0,
    account_id: str = "",
) -> OrderResult:
    if command is None:
        return OrderResult(
            status=status, message=message, code=code, account_id=account_id, state=state, elapsed_ms=elapsed_ms
        )
    fields = _base(command)
    fields.update(status=status, message=message, code=code, state=state, attempts=attempts, elapsed_ms=elapsed_ms)
    return OrderResult(**fields)  # type: ignore[arg-type]


def reconciled_result(
    command: OrderCommand, outcome: Reconciled, state: str, attempts: int, elapsed_ms: float = 0.0
) -> OrderResult:
    fields = _base(command)
    position = outcome.position
    if outcome.status == "REJECTED":
        message = "reconciled: the terminal reports no trace of this order; it did not execute"
    else:
        message = "reconciled from the terminal's positions"
    if outcome.code == errors.ALREADY_CLOSED:
        message = "reconciled: the position is gone (closed); its stops did not change"
    opening = isinstance(command, OpenCommand)
    fields.update(
        status=outcome.status,
        message=message,
        code=outcome.code,
        state=state,
        attempts=attempts,
        reconciled=True,
        elapsed_ms=elapsed_ms,
    )
    if position is not None and opening and outcome.status != "REJECTED":
        fields.update(mt_ticket=position.mt_ticket, price=position.open_price, volume=position.volume)
    if isinstance(command, ModifyCommand):
        if position is not None:
            fields.update(
                mt_ticket=position.mt_ticket,
                stop_loss=position.stop_loss or 0.0,
                take_profit=position.take_profit or 0.0,
            )
        return OrderResult(**fields)  # type: ignore[arg-type]
    if not opening and outcome.status == "FILLED":
        fields.update(volume=command.volume)
    return OrderResult(**fields)  # type: ignore[arg-type]


def book_entry(result: OrderResult, command: OpenCommand, now: datetime) -> BookEntry | None:
    """The position a filled OPEN leaves open, for the book."""
    if result.mt_ticket is None or result.volume is None or result.price is None:
        return None
    return BookEntry(
        account_id=command.account_id,
        mt_ticket=result.mt_ticket,
        position_id=command.position_id,
        action_id=command.action_id,
        symbol=command.symbol,
        side=command.side,
        volume=result.volume,
        open_price=result.price,
        opened_at=now,
    )


def book_key(account_id: str, mt_ticket: str) -> str:
    return f"{account_id}.{mt_ticket}"
