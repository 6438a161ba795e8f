"""Every message of the EA wire and of the NATS backbone.

EA wire (JSON, ``type`` as the tag, camelCase field names, as in the design's §5):

- commands, gateway → terminal: ``OPEN``, ``CLOSE``
- events, terminal → gateway: ``OPENED``, ``CLOSED``, ``ACCOUNT_UPDATE``, ``POSITION_UPDATE``, ``PRICE``
- both ways: ``HEARTBEAT``, ``ERROR``
- gateway → terminal after the handshake: ``WELCOME``

Backbone (msgpack on NATS): the same Structs, plus ``TERMINAL_STATUS``, the delivery acknowledgement the
gateway returns for a command, and the executor's order requests and results.

Unknown fields are ignored on decode, so terminals running an older EA keep working when fields are added.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

AccountId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Symbol = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._#+-]{1,32}$")]
Ident = Annotated[str, Meta(min_length=1, max_length=128)]
Volume = Annotated[float, Meta(gt=0, le=1_000_000)]
PriceValue = Annotated[float, Meta(ge=0)]
Text = Annotated[str, Meta(max_length=1024)]
Side = Literal["BUY", "SELL"]
Status = Literal["SUCCESS", "FAILED"]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Body(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Nested objects: camelCase, unknown fields ignored."""


class Message(_Body, frozen=True, kw_only=True, tag_field="type"):
    """Base of every tagged message."""


# --- commands (gateway -> terminal) ------------------------------------------------------------------------


class OpenMetadata(_Body, frozen=True, kw_only=True):
    execution_type: Literal["ENTRY", "EXIT"]
    user_id: Annotated[str, Meta(max_length=128)]


class CloseMetadata(_Body, frozen=True, kw_only=True):
    exit_reason: Text
    user_id: Annotated[str, Meta(max_length=128)]


class OpenCommand(Message, frozen=True, kw_only=True, tag="OPEN"):
    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: Ident | None = None
    symbol: Symbol
    side: Side
    volume: Volume
    metadata: OpenMetadata


class CloseCommand(Message, frozen=True, kw_only=True, tag="CLOSE"):
    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: Ident | None = None
    mt_ticket: Ident | None = None
    metadata: CloseMetadata


# --- events (terminal -> gateway) --------------------------------------------------------------------------


def _require_on_success(status: str, **fields: object) -> None:
    for name, value in fields.items():
        if status == "SUCCESS" and value is None:
            raise ValueError(f"`{name}` is required when status is SUCCESS")


class OpenedEvent(Message, frozen=True, kw_only=True, tag="OPENED"):
    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: Ident | None = None
    mt_ticket: Ident | None = None
    price: PriceValue | None = None
    volume: Volume | None = None  # the filled volume, when the terminal reports it
    status: Status
    error_message: Text | None = None
    error_code: int | None = None  # MT5 trade server return code

    def __post_init__(self) -> None:
        _require_on_success(self.status, mtTicket=self.mt_ticket, price=self.price)


class ClosedEvent(Message, frozen=True, kw_only=True, tag="CLOSED"):
    timestamp: datetime
    account_id: AccountId
    position_id: Ident
    action_id: Ident | None = None
    mt_ticket: Ident | None = None
    price: PriceValue | None = None
    profit: float | None = None
    status: Status
    error_message: Text | None = None
    error_code: int | None = None

    def __post_init__(self) -> None:
        _require_on_success(self.status, mtTicket=self.mt_ticket, price=self.price, profit=self.profit)


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
    action_id: Ident | None = None
    symbol: Symbol
    side: Side
    volume: Volume
    open_price: PriceValue
    current_price: PriceValue
    profit: float
    open_time: datetime | None = None


class PositionUpdate(Message, frozen=True, kw_only=True, tag="POSITION_UPDATE"):
    """The complete list of the account's open positions (a snapshot, not a delta)."""

    timestamp: datetime
    account_id: AccountId
    positions: Annotated[list[Position], Meta(max_length=10_000)]


class PriceTick(Message, frozen=True, kw_only=True, tag="PRICE"):
    account_id: AccountId
    symbol: Symbol
    bid: PriceValue
    ask: PriceValue
    time: datetime


# --- both ways ---------------------------------------------------------------------------------------------


class Heartbeat(Message, frozen=True, kw_only=True, tag="HEARTBEAT"):
    """Liveness. The receiver of a heartbeat with ``reply`` false answers at once with the same ``seq``
    and ``reply`` true; terminals send one every ``heartbeatIntervalMs`` from WELCOME."""

    timestamp: datetime
    seq: Annotated[int, Meta(ge=0)] = 0
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

    protocol_version: int
    account_id: AccountId
    session_id: Ident
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    max_frame_bytes: int
    server_time: datetime


# The one union decoded from the EA wire.
Frame = (
    OpenCommand
    | CloseCommand
    | OpenedEvent
    | ClosedEvent
    | AccountUpdate
    | PositionUpdate
    | PriceTick
    | Heartbeat
    | ErrorMessage
    | Welcome
)
Command = OpenCommand | CloseCommand
Event = OpenedEvent | ClosedEvent | AccountUpdate | PositionUpdate | PriceTick

COMMAND_TYPES: tuple[type[Message], ...] = (OpenCommand, CloseCommand)
EVENT_TYPES: tuple[type[Message], ...] = (OpenedEvent, ClosedEvent, AccountUpdate, PositionUpdate, PriceTick)
# What a terminal may send to the gateway, and what the gateway may send to a terminal.
FROM_TERMINAL: tuple[type[Message], ...] = (*EVENT_TYPES, Heartbeat, ErrorMessage)
TO_TERMINAL: tuple[type[Message], ...] = (*COMMAND_TYPES, Heartbeat, ErrorMessage, Welcome)


def type_name(cls: type[Message] | Message) -> str:
    """The wire tag (``type``) of a message class or instance."""
    klass = cls if isinstance(cls, type) else type(cls)
    tag = klass.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


# --- backbone-only messages (msgpack on NATS) --------------------------------------------------------------


class TerminalStatus(Message, frozen=True, kw_only=True, tag="TERMINAL_STATUS"):
    """Published by a gateway when a terminal connects or its connection ends."""

    timestamp: datetime
    account_id: AccountId
    status: Literal["CONNECTED", "DISCONNECTED"]
    session_id: Ident
    gateway_id: Ident
    reason: Text = ""
    protocol_version: int = 0
    remote: Annotated[str, Meta(max_length=128)] = ""


class DeliveryAck(_Body, frozen=True, kw_only=True):
    """A gateway's reply to a command published on an account's command subject."""

    delivered: bool
    uncertain: bool = False  # not confirmed, but the frame may have reached the terminal (lost mid-send)
    session_id: str = ""
    reason: str = ""


class OpenOrder(Message, frozen=True, kw_only=True, tag="OPEN_ORDER"):
    account_id: AccountId
    symbol: Symbol
    side: Side
    volume: Volume
    action_id: Ident | None = None
    user_id: Annotated[str, Meta(max_length=128)] = ""
    execution_type: Literal["ENTRY", "EXIT"] = "ENTRY"
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None


class CloseOrder(Message, frozen=True, kw_only=True, tag="CLOSE_ORDER"):
    account_id: AccountId
    position_id: Ident | None = None
    mt_ticket: Ident | None = None
    action_id: Ident | None = None
    user_id: Annotated[str, Meta(max_length=128)] = ""
    exit_reason: Text = ""
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None

    def __post_init__(self) -> None:
        if self.position_id is None and self.mt_ticket is None:
            raise ValueError("`positionId` or `mtTicket` is required")


OrderRequest = OpenOrder | CloseOrder

OrderStatus = Literal["SUCCESS", "FAILED", "NOT_SENT", "OUTCOME_UNKNOWN", "INVALID"]


class OrderResult(_Body, frozen=True, kw_only=True):
    """The executor's definite answer to an order request.

    - SUCCESS: the terminal executed the order; ``event`` holds its OPENED/CLOSED.
    - FAILED: the terminal refused or failed the order; ``event`` holds its report.
    - NOT_SENT: the command never reached a terminal (account offline); safe to retry.
    - OUTCOME_UNKNOWN: the command was delivered but no result came in time: reconcile, do not resend.
    - INVALID: the request itself was rejected by validation.
    """

    status: OrderStatus
    message: str = ""
    code: str | None = None  # an error code from the registry when status is not SUCCESS
    account_id: str = ""
    position_id: str | None = None
    action_id: str | None = None
    event: OpenedEvent | ClosedEvent | None = None
    elapsed_ms: float = 0.0


def to_builtins(msg: Struct) -> object:
    """The JSON-ready form of a message (camelCase keys, ISO timestamps)."""
    return msgspec.to_builtins(msg)


class TerminalView(_Body, frozen=True, kw_only=True):
    """The monitor's view of one terminal."""

    account_id: str
    connected: bool
    session_id: str
    gateway_id: str
    since: datetime
    reason: str = ""
    last_event: datetime | None = None
    balance: float | None = None
    equity: float | None = None
    margin_level: float | None = None
    open_positions: int = 0


class MonitorSnapshot(_Body, frozen=True, kw_only=True):
    """The monitor's live picture, answered on ``hb.monitor.status``."""

    started_at: datetime
    terminals: list[TerminalView]
    orders_succeeded: int = 0
    orders_failed: int = 0
