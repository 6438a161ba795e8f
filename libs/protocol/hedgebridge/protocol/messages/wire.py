"""The EA wire: commands (gateway → terminal), events (terminal → gateway), and frames both ways."""

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
    Status,
    Symbol,
    Text,
    TraceParent,
    UserId,
    Volume,
    _Body,
)

# --- commands (gateway -> terminal) ------------------------------------------------------------------------


class OpenMetadata(_Body, frozen=True, kw_only=True):
    execution_type: Literal["ENTRY", "EXIT"]
    user_id: UserId


class CloseMetadata(_Body, frozen=True, kw_only=True):
    exit_reason: Text
    user_id: UserId


class ModifyMetadata(_Body, frozen=True, kw_only=True):
    user_id: UserId


# A stop loss or take profit price: absent keeps what the position has, 0 means none (removes it).
StopPrice = PriceValue

# An order command's fence: the terminal link (gateway or MT5 bridge) writes the command to the terminal only
# until then, else refuses it unsent (its sender's lease on the order may have lapsed: another executor may own
# it). Absent: no fence. The EA ignores it (the link has checked it before writing the frame).
NotAfter = datetime


class OpenCommand(Message, frozen=True, kw_only=True, tag="OPEN"):
    """Open a market position. ``actionId`` is the idempotency key: a terminal that already executed it
    answers with the first result and ``alreadyExecuted`` true instead of executing again. ``attempt``
    counts sends of the same actionId after a retryable refusal (requote, price changed…)."""

    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: ActionId | None = None
    symbol: Symbol
    side: Side
    volume: Volume
    metadata: OpenMetadata
    attempt: Annotated[int, Meta(ge=0, le=100)] = 0
    traceparent: TraceParent | None = None
    not_after: NotAfter | None = None
    stop_loss: StopPrice | None = None  # set on the position as it opens (absent or 0: none)
    take_profit: StopPrice | None = None


class CloseCommand(Message, frozen=True, kw_only=True, tag="CLOSE"):
    """Close a position, found by ``mtTicket`` when given, else by ``positionId``. ``volume`` closes part
    of it; absent, the whole position is closed. With ``mtTicket`` the ``positionId`` may be one the terminal
    never issued (``mt-<ticket>`` when the request named only the ticket): the terminal echoes it as given."""

    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: ActionId | None = None
    mt_ticket: Ident | None = None
    volume: Volume | None = None
    metadata: CloseMetadata
    attempt: Annotated[int, Meta(ge=0, le=100)] = 0
    traceparent: TraceParent | None = None
    not_after: NotAfter | None = None


class ModifyCommand(Message, frozen=True, kw_only=True, tag="MODIFY"):
    """Set a position's stop loss and take profit (MT5's TRADE_ACTION_SLTP), the position found as for CLOSE:
    by ``mtTicket`` when given, else by ``positionId``. ``stopLoss`` / ``takeProfit``: absent keeps the
    position's, ``0`` removes it, a price sets it; at least one is given. Answered by MODIFIED."""

    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: ActionId | None = None
    mt_ticket: Ident | None = None
    stop_loss: StopPrice | None = None
    take_profit: StopPrice | None = None
    metadata: ModifyMetadata
    attempt: Annotated[int, Meta(ge=0, le=100)] = 0
    traceparent: TraceParent | None = None
    not_after: NotAfter | None = None

    def __post_init__(self) -> None:
        if self.stop_loss is None and self.take_profit is None:
            raise ValueError("`stopLoss` or `takeProfit` is required")


class SyncCommand(Message, frozen=True, kw_only=True, tag="SYNC"):
    """Ask a terminal for a fresh POSITION_UPDATE and ACCOUNT_UPDATE. ``syncId`` is optional: when given, the
    POSITION_UPDATE echoes it unchanged; without it (the gateway's own SYNCs) the snapshot carries none. A
    terminal handles commands one at a time, so the snapshot shows the effect of every command sent before
    it."""

    timestamp: datetime
    account_id: AccountId
    sync_id: Ident | None = None
    reason: Text = ""
    traceparent: TraceParent | None = None


# --- events (terminal -> gateway) --------------------------------------------------------------------------


def _require_on_success(status: str, **fields: object) -> None:
    for name, value in fields.items():
        if status == "SUCCESS" and value is None:
            raise ValueError(f"`{name}` is required when status is SUCCESS")


class OpenedEvent(Message, frozen=True, kw_only=True, tag="OPENED"):
    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: ActionId | None = None
    mt_ticket: Ident | None = None
    price: PriceValue | None = None
    volume: Volume | None = None  # the filled volume; below the requested volume for a partial fill
    status: Status
    error_message: Text | None = None
    error_code: Code | None = None  # MT5 trade server return code (retcode)
    already_executed: bool = False  # the actionId had been executed before: this is the first result again
    symbol: Symbol | None = None  # the position's, so that a report alone describes it
    broker_symbol: Symbol | None = None  # the broker's name of ``symbol`` when the account's symbol map renames it
    side: Side | None = None
    traceparent: TraceParent | None = None  # the command's, echoed
    stop_loss: StopPrice | None = None  # the position's stops as it opened (absent or 0: none)
    take_profit: StopPrice | None = None

    def __post_init__(self) -> None:
        _require_on_success(self.status, mtTicket=self.mt_ticket, price=self.price)


class ClosedEvent(Message, frozen=True, kw_only=True, tag="CLOSED"):
    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: ActionId | None = None
    mt_ticket: Ident | None = None
    price: PriceValue | None = None
    profit: float | None = None
    volume: Volume | None = None  # the closed volume
    remaining_volume: Annotated[float, Meta(ge=0)] | None = None  # left open after a partial close
    status: Status
    error_message: Text | None = None
    error_code: Code | None = None
    already_executed: bool = False
    # why the position closed when no command asked for it (stop loss, take profit, stop out, manual)
    reason: Annotated[str, Meta(max_length=64)] | None = None
    traceparent: TraceParent | None = None  # the command's, echoed

    def __post_init__(self) -> None:
        _require_on_success(self.status, mtTicket=self.mt_ticket, price=self.price, profit=self.profit)


class ModifiedEvent(Message, frozen=True, kw_only=True, tag="MODIFIED"):
    """The answer to MODIFY: the position's stops after it (``0``: none), or why they did not change
    (``errorCode``: the trade server's retcode, e.g. 10016 invalid stops, 10025 no changes, 10036 the position
    is gone)."""

    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: ActionId | None = None
    mt_ticket: Ident | None = None
    stop_loss: StopPrice | None = None
    take_profit: StopPrice | None = None
    status: Status
    error_message: Text | None = None
    error_code: Code | None = None
    already_executed: bool = False
    traceparent: TraceParent | None = None  # the command's, echoed

    def __post_init__(self) -> None:
        _require_on_success(self.status, mtTicket=self.mt_ticket)


class AccountUpdate(Message, frozen=True, kw_only=True, tag="ACCOUNT_UPDATE"):
    timestamp: datetime
    account_id: AccountId
    balance: float
    equity: float
    margin: Annotated[float, Meta(ge=0)]
    free_margin: float
    margin_level: float | None = None  # percent; None while no margin is used
    currency: Annotated[str, Meta(max_length=8)] | None = None


class Position(_Body, frozen=True, kw_only=True):
    mt_ticket: Ident
    position_id: Ident | None = None  # the hedge system's id, when the position was opened through it
    action_id: ActionId | None = None
    symbol: Symbol
    broker_symbol: Symbol | None = None  # the broker's name of ``symbol`` when the account's symbol map renames it
    side: Side
    volume: Volume
    open_price: PriceValue
    current_price: PriceValue
    profit: float
    open_time: datetime | None = None
    stop_loss: StopPrice | None = None  # absent or 0: none
    take_profit: StopPrice | None = None


class PositionUpdate(Message, frozen=True, kw_only=True, tag="POSITION_UPDATE"):
    """The complete list of the account's open positions (a snapshot, not a delta)."""

    timestamp: datetime
    account_id: AccountId
    positions: Annotated[list[Position], Meta(max_length=10_000)]
    sync_id: Ident | None = None  # the SYNC this snapshot answers


class PriceTick(Message, frozen=True, kw_only=True, tag="PRICE"):
    account_id: AccountId
    symbol: Symbol
    broker_symbol: Symbol | None = None  # the broker's name of ``symbol`` when the account's symbol map renames it
    bid: PriceValue
    ask: PriceValue
    time: datetime


SymbolTradeMode = Literal["DISABLED", "LONG_ONLY", "SHORT_ONLY", "CLOSE_ONLY", "FULL"]  # MT5's SYMBOL_TRADE_MODE_*
FillingMode = Literal["FOK", "IOC", "BOC"]  # the flags of MT5's SYMBOL_FILLING_MODE


class SymbolSpec(_Body, frozen=True, kw_only=True):
    """One symbol's trading rules as the terminal's trade server states them (MT5's SymbolInfoDouble/Integer:
    SYMBOL_VOLUME_MIN/MAX/STEP, SYMBOL_TRADE_CONTRACT_SIZE, SYMBOL_DIGITS, SYMBOL_TRADE_MODE, SYMBOL_FILLING_MODE).
    A volume is tradable when it lies in [volumeMin, volumeMax] and is a multiple of volumeStep."""

    symbol: Symbol
    broker_symbol: Symbol | None = None  # the broker's name of ``symbol`` when the account's symbol map renames it
    volume_min: Annotated[float, Meta(ge=0)]
    volume_max: Annotated[float, Meta(gt=0)]
    volume_step: Annotated[float, Meta(gt=0)]
    contract_size: Annotated[float, Meta(ge=0)]
    digits: Annotated[int, Meta(ge=0, le=16)]
    trade_mode: SymbolTradeMode
    filling_modes: Annotated[list[FillingMode], Meta(max_length=3)] = []

    def __post_init__(self) -> None:
        if self.volume_min > self.volume_max:
            raise ValueError("`volumeMin` is above `volumeMax`")


class SymbolSpecs(Message, frozen=True, kw_only=True, tag="SYMBOL_SPECS"):
    """The rules of the symbols a terminal quotes or trades: sent after WELCOME (every such symbol) and again
    when any of them changes (at least the changed ones). A symbol not listed keeps the rules reported last."""

    timestamp: datetime
    account_id: AccountId
    symbols: Annotated[list[SymbolSpec], Meta(min_length=1, max_length=1000)]


# --- both ways ---------------------------------------------------------------------------------------------


class Heartbeat(Message, frozen=True, kw_only=True, tag="HEARTBEAT"):
    """Liveness. The receiver of a heartbeat with ``reply`` false answers at once with the same ``seq``
    and ``reply`` true; terminals send one every ``heartbeatIntervalMs`` from WELCOME."""

    timestamp: datetime
    seq: Count = 0
    reply: bool = False
    account_id: AccountId | None = None


class ErrorMessage(Message, frozen=True, kw_only=True, tag="ERROR"):
    code: Annotated[str, Meta(max_length=64)]
    message: Text
    field: Annotated[str, Meta(max_length=256)] | None = None  # the offending field's path, when known
    ref_type: Annotated[str, Meta(max_length=64)] | None = None  # the offending message's type
    ref_id: Annotated[str, Meta(max_length=128)] | None = None  # its actionId or positionId
    account_id: AccountId | None = None
    timestamp: datetime | None = None


class Welcome(Message, frozen=True, kw_only=True, tag="WELCOME"):
    """First frame after the handshake: what the gateway expects of this terminal."""

    protocol_version: Count
    account_id: AccountId
    session_id: Ident
    heartbeat_interval_ms: Count
    heartbeat_timeout_ms: Count
    max_frame_bytes: Count
    server_time: datetime


# The one union decoded from the EA wire.
Frame = (
    OpenCommand
    | CloseCommand
    | ModifyCommand
    | SyncCommand
    | OpenedEvent
    | ClosedEvent
    | ModifiedEvent
    | AccountUpdate
    | PositionUpdate
    | PriceTick
    | SymbolSpecs
    | Heartbeat
    | ErrorMessage
    | Welcome
)
Command = OpenCommand | CloseCommand | ModifyCommand | SyncCommand
OrderCommand = OpenCommand | CloseCommand | ModifyCommand
Report = OpenedEvent | ClosedEvent | ModifiedEvent  # a terminal's answer to an order command
Event = OpenedEvent | ClosedEvent | ModifiedEvent | AccountUpdate | PositionUpdate | PriceTick | SymbolSpecs

COMMAND_TYPES: tuple[type[Message], ...] = (OpenCommand, CloseCommand, ModifyCommand, SyncCommand)
REPORT_TYPES: tuple[type[Message], ...] = (OpenedEvent, ClosedEvent, ModifiedEvent)
EVENT_TYPES: tuple[type[Message], ...] = (
    OpenedEvent,
    ClosedEvent,
    ModifiedEvent,
    AccountUpdate,
    PositionUpdate,
    PriceTick,
    SymbolSpecs,
)
# What a terminal may send to the gateway, and what the gateway may send to a terminal.
FROM_TERMINAL: tuple[type[Message], ...] = (*EVENT_TYPES, Heartbeat, ErrorMessage)
TO_TERMINAL: tuple[type[Message], ...] = (*COMMAND_TYPES, Heartbeat, ErrorMessage, Welcome)


def type_name(cls: type[Message] | Message) -> str:
    """The wire tag (``type``) of a message class or instance."""
    klass = cls if isinstance(cls, type) else type(cls)
    tag = klass.__struct_config__.tag
    assert isinstance(tag, str)
    return tag
