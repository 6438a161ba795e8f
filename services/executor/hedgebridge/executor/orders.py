"""Order requests to commands, and terminal reports to results (pure code, no I/O)."""

from __future__ import annotations

import uuid
from datetime import datetime

from hedgebridge.protocol import (
    CloseCommand,
    ClosedEvent,
    CloseMetadata,
    CloseOrder,
    Command,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    OpenOrder,
    OrderRequest,
    OrderResult,
    errors,
)
from hedgebridge.protocol.messages import OrderStatus


def new_id() -> str:
    return uuid.uuid4().hex


def build_command(request: OrderRequest, now: datetime) -> Command:
    """The terminal command for ``request``. Every command carries an actionId (the caller's, or a new one);
    an OPEN gets a new positionId, a CLOSE by ticket alone uses ``mt-<ticket>`` as its positionId."""
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
        )
    assert isinstance(request, CloseOrder)
    return CloseCommand(
        timestamp=now,
        account_id=request.account_id,
        position_id=request.position_id or f"mt-{request.mt_ticket}",
        action_id=action_id,
        mt_ticket=request.mt_ticket,
        metadata=CloseMetadata(exit_reason=request.exit_reason, user_id=request.user_id),
    )


def matches(command: Command, event: OpenedEvent | ClosedEvent) -> bool:
    """Whether ``event`` is the terminal's answer to ``command``: same account and kind, and the same
    actionId when the event carries one, otherwise the same positionId."""
    if event.account_id != command.account_id:
        return False
    if isinstance(command, OpenCommand) != isinstance(event, OpenedEvent):
        return False
    if event.action_id is not None:
        return event.action_id == command.action_id
    return event.position_id == command.position_id


def result_of(command: Command, event: OpenedEvent | ClosedEvent, elapsed_ms: float) -> OrderResult:
    if event.status == "SUCCESS":
        return OrderResult(
            status="SUCCESS",
            message="executed",
            account_id=command.account_id,
            position_id=event.position_id,
            action_id=command.action_id,
            event=event,
            elapsed_ms=elapsed_ms,
        )
    return OrderResult(
        status="FAILED",
        message=event.error_message or "the terminal reported the order as failed",
        code=errors.ORDER_FAILED,
        account_id=command.account_id,
        position_id=event.position_id,
        action_id=command.action_id,
        event=event,
        elapsed_ms=elapsed_ms,
    )


def failure(
    status: OrderStatus,
    code: str,
    message: str,
    command: Command | None,
    elapsed_ms: float,
    account_id: str = "",
) -> OrderResult:
    return OrderResult(
        status=status,
        message=message,
        code=code,
        account_id=command.account_id if command else account_id,
        position_id=command.position_id if command else None,
        action_id=command.action_id if command else None,
        elapsed_ms=elapsed_ms,
    )
