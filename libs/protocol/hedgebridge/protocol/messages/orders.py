"""Backbone messages of the order path: terminal status, delivery acks, order requests, results, records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from .base import (
    AccountId,
    ActionId,
    Code,
    Count,
    Ident,
    Message,
    PriceValue,
    Side,
    Symbol,
    Text,
    UserId,
    Volume,
    _Body,
)
from .wire import (
    CloseCommand,
    ClosedEvent,
    ModifiedEvent,
    ModifyCommand,
    OpenCommand,
    OpenedEvent,
    StopPrice,
    SymbolSpec,
)

# --- backbone-only messages (msgpack on NATS) --------------------------------------------------------------


class TerminalStatus(Message, frozen=True, kw_only=True, tag="TERMINAL_STATUS"):
    """Published by a gateway when a terminal connects or its connection ends."""

    timestamp: datetime
    account_id: AccountId
    status: Literal["CONNECTED", "DISCONNECTED"]
    session_id: Ident
    gateway_id: Ident
    reason: Text = ""
    protocol_version: Count = 0
    remote: Annotated[str, Meta(max_length=128)] = ""


class DeliveryAck(_Body, frozen=True, kw_only=True):
    """A gateway's reply to a command published on an account's command subject."""

    delivered: bool
    uncertain: bool = False  # not confirmed, but the frame may have reached the terminal (lost mid-send)
    session_id: str = ""
    reason: str = ""


# DeliveryAck.reason of a command refused unsent because its ``notAfter`` had passed (the sender asks again under
# its lease, or stops when the order is no longer its own)
FENCED = "the command's notAfter passed before it could be written to the terminal; not sent"


class OpenOrder(Message, frozen=True, kw_only=True, tag="OPEN_ORDER"):
    """Open a market position. ``actionId`` is the idempotency key end to end: a second request with the
    same actionId never sends a second command. ``ttlMs`` bounds how long the order may wait for its
    account to be reachable before it expires unsent. ``roundVolume``: a volume off the symbol's step is
    rounded down to it (and the result says so) instead of being INVALID. ``stopLoss`` / ``takeProfit``:
    prices set on the position as it opens (absent or 0: none)."""

    account_id: AccountId
    symbol: Symbol
    side: Side
    volume: Volume
    action_id: ActionId | None = None
    user_id: UserId = ""
    execution_type: Literal["ENTRY", "EXIT"] = "ENTRY"
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None
    ttl_ms: Annotated[int, Meta(ge=0, le=600_000)] | None = None
    round_volume: bool = False
    stop_loss: StopPrice | None = None
    take_profit: StopPrice | None = None


class CloseOrder(Message, frozen=True, kw_only=True, tag="CLOSE_ORDER"):
    """Close a position by ``positionId`` or MT5 ``mtTicket``; ``volume`` closes part of it (``roundVolume``
    as for OPEN_ORDER)."""

    account_id: AccountId
    position_id: Ident | None = None
    mt_ticket: Ident | None = None
    volume: Volume | None = None
    action_id: ActionId | None = None
    user_id: UserId = ""
    exit_reason: Text = ""
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None
    ttl_ms: Annotated[int, Meta(ge=0, le=600_000)] | None = None
    round_volume: bool = False

    def __post_init__(self) -> None:
        if self.position_id is None and self.mt_ticket is None:
            raise ValueError("`positionId` or `mtTicket` is required")


class ModifyOrder(Message, frozen=True, kw_only=True, tag="MODIFY_ORDER"):
    """Set the stop loss and take profit of a position named by ``positionId`` or ``mtTicket``:
    ``stopLoss`` / ``takeProfit`` absent keeps the position's, ``0`` removes it, a price sets it (at least one
    is given). FILLED when the position has the asked stops afterwards (also when it had them already: MT5's
    10025 NO_CHANGES); REJECTED with INVALID_STOPS (10016), ALREADY_CLOSED (the position is gone) or
    TERMINAL_REFUSED (a terminal that does not know MODIFY)."""

    account_id: AccountId
    position_id: Ident | None = None
    mt_ticket: Ident | None = None
    stop_loss: StopPrice | None = None
    take_profit: StopPrice | None = None
    action_id: ActionId | None = None
    user_id: UserId = ""
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None
    ttl_ms: Annotated[int, Meta(ge=0, le=600_000)] | None = None

    def __post_init__(self) -> None:
        if self.position_id is None and self.mt_ticket is None:
            raise ValueError("`positionId` or `mtTicket` is required")
        if self.stop_loss is None and self.take_profit is None:
            raise ValueError("`stopLoss` or `takeProfit` is required: nothing to modify")


class BatchItem(_Body, frozen=True, kw_only=True):
    account_id: AccountId
    position_id: Ident | None = None
    mt_ticket: Ident | None = None
    volume: Volume | None = None

    def __post_init__(self) -> None:
        if self.position_id is None and self.mt_ticket is None:
            raise ValueError("`positionId` or `mtTicket` is required")


class CloseBatch(Message, frozen=True, kw_only=True, tag="CLOSE_BATCH"):
    """Close many positions (on one or more accounts) at once; each gets its own result. Item ``i`` runs
    with the actionId ``<actionId>-<i>``, so a repeated batch never closes anything twice."""

    action_id: ActionId | None = None
    items: Annotated[list[BatchItem], Meta(min_length=1, max_length=1000)]
    user_id: UserId = ""
    exit_reason: Text = ""
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None
    ttl_ms: Annotated[int, Meta(ge=0, le=600_000)] | None = None
    round_volume: bool = False  # each item's volume, as CLOSE_ORDER's


OrderRequest = OpenOrder | CloseOrder | ModifyOrder

OrderKind = Literal["OPEN", "CLOSE", "MODIFY"]


def order_kind(
    item: OpenOrder
    | CloseOrder
    | ModifyOrder
    | OpenCommand
    | CloseCommand
    | ModifyCommand
    | OpenedEvent
    | ClosedEvent
    | ModifiedEvent,
) -> OrderKind:
    """The kind of order a request, a command or a terminal's report is about."""
    if isinstance(item, OpenOrder | OpenCommand | OpenedEvent):
        return "OPEN"
    if isinstance(item, CloseOrder | CloseCommand | ClosedEvent):
        return "CLOSE"
    return "MODIFY"


OrderStatus = Literal["FILLED", "PARTIALLY_FILLED", "REJECTED", "EXPIRED", "OUTCOME_UNKNOWN", "INVALID", "IN_FLIGHT"]
FINAL_STATUSES: frozenset[str] = frozenset({"FILLED", "PARTIALLY_FILLED", "REJECTED", "EXPIRED", "INVALID"})


class OrderResult(Message, frozen=True, kw_only=True, tag="ORDER_RESULT"):
    """The executor's definite answer to an order request.

    - FILLED: executed (for a CLOSE: closed; for a MODIFY: the position has the asked stops, ``stopLoss`` and
      ``takeProfit``, also when it had them already: ``retcode`` 10025, ``retcodeClass`` NO_CHANGES);
      ``mtTicket``, ``price`` and ``volume`` say how.
    - PARTIALLY_FILLED: executed for ``volume`` out of ``requestedVolume``; the rest is not re-sent.
    - REJECTED: the terminal or the trade server refused it; ``retcode`` and ``retcodeClass`` say why.
    - EXPIRED: not executed and nothing pending: the account stayed unreachable past the order's time-to-live
      (or, ``EXECUTOR_UNAVAILABLE``, no executor took the request). A request with the same actionId runs it
      afresh.
    - OUTCOME_UNKNOWN: sent, but no result in time. Never resend: the reconciled result follows on
      ``hb.exec.result.<account>`` (``reconciled`` true) and is what a repeated request returns.
    - INVALID: the request failed validation (a volume off the symbol's rules among others); nothing was sent.
    - IN_FLIGHT: answered to a repeated request while the first is still running; ``state`` says where.
    """

    status: OrderStatus
    message: str = ""
    code: str | None = None  # an error code from the registry when the order did not fill
    kind: Literal["OPEN", "CLOSE", "MODIFY", ""] = ""
    account_id: str = ""
    position_id: str | None = None
    action_id: str | None = None
    mt_ticket: str | None = None
    symbol: str | None = None
    broker_symbol: str | None = None  # what the OPEN was sent as, when the account's symbol map renames the symbol
    side: Side | None = None
    price: float | None = None
    volume: float | None = None  # filled (or closed) volume
    requested_volume: float | None = None  # the volume sent (after roundVolume rounded it)
    rounded_from: float | None = None  # the request's volume, when roundVolume rounded it down to the step
    profit: float | None = None
    retcode: Code | None = None  # the MT5 trade server return code, when the terminal gave one
    retcode_class: str | None = None
    state: str = ""  # the order's lifecycle state (see executor.lifecycle)
    attempts: Count = 0
    reconciled: bool = False
    duplicate: bool = False  # this answer is the recorded result of an earlier request with this actionId
    event: OpenedEvent | ClosedEvent | ModifiedEvent | None = None
    elapsed_ms: float = 0.0
    stop_loss: float | None = None  # the position's stop loss after the order (0: none), when known
    take_profit: float | None = None


class BatchResult(Message, frozen=True, kw_only=True, tag="BATCH_RESULT"):
    action_id: str
    results: list[OrderResult]
    elapsed_ms: float = 0.0


class OrderRecord(_Body, frozen=True, kw_only=True):
    """What JetStream keeps of an accepted order (KV bucket ``hb_orders``, key = actionId)."""

    action_id: ActionId
    request: OpenOrder | CloseOrder | ModifyOrder
    command: OpenCommand | CloseCommand | ModifyCommand
    state: str
    owner: str  # the executor replica that ran it
    created_at: datetime
    updated_at: datetime
    reply_to: str = ""  # the first caller's reply subject, answered by whoever finishes the order
    result: OrderResult | None = None
    # the symbol an OPEN is sent with when the account's symbol map renames ``command.symbol`` (resolved once,
    # when the order is accepted: every send of the order uses it, whatever the map says later)
    broker_symbol: Symbol | None = None


class InflightMark(_Body, frozen=True, kw_only=True):
    """An order still running (KV bucket ``hb_inflight``, key = actionId), deleted when it ends. The owner
    renews ``leaseUntil``; once it lapses another executor takes the order over and reconciles it."""

    owner: str
    lease_until: float  # epoch seconds
    account_id: str


class BookEntry(_Body, frozen=True, kw_only=True):
    """A position the system opened and believes open (KV bucket ``hb_book``, key ``<account>.<ticket>``)."""

    account_id: AccountId
    mt_ticket: Ident
    position_id: Ident
    action_id: ActionId | None = None
    symbol: Symbol
    side: Side
    volume: Volume
    open_price: PriceValue
    opened_at: datetime


class AccountSymbols(_Body, frozen=True, kw_only=True):
    """The latest rules of every symbol an account's terminals reported (KV bucket ``hb_symbols``, key = account):
    each symbol's rules are the last SYMBOL_SPECS that named it; ``changedAt`` says when they last changed."""

    account_id: AccountId
    symbols: list[SymbolSpec] = []  # sorted by broker symbol
    # broker symbol (``brokerSymbol`` or else ``symbol``) -> the timestamp of the report that set its current rules
    changed_at: dict[str, datetime] = {}
