"""Every message of the EA wire and of the NATS backbone.

EA wire (JSON, ``type`` as the tag, camelCase field names, as in the design's §5):

- commands, gateway → terminal: ``OPEN``, ``CLOSE``
- events, terminal → gateway: ``OPENED``, ``CLOSED``, ``ACCOUNT_UPDATE``, ``POSITION_UPDATE``, ``PRICE``,
  ``SYMBOL_SPECS``
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

from .names import ACCOUNT_ID_PATTERN, ACTION_ID_PATTERN, SYMBOL_PATTERN, USER_ID_MAX

AccountId = Annotated[str, Meta(pattern=ACCOUNT_ID_PATTERN)]
Symbol = Annotated[str, Meta(pattern=SYMBOL_PATTERN)]
Ident = Annotated[str, Meta(min_length=1, max_length=128)]
# An idempotency key: also a JetStream KV key and a NATS subject token, hence the restricted alphabet.
ActionId = Annotated[str, Meta(pattern=ACTION_ID_PATTERN)]
Volume = Annotated[float, Meta(gt=0, le=1_000_000)]
PriceValue = Annotated[float, Meta(ge=0)]
Text = Annotated[str, Meta(max_length=1024)]
Side = Literal["BUY", "SELL"]
Status = Literal["SUCCESS", "FAILED"]
UserId = Annotated[str, Meta(max_length=USER_ID_MAX)]
# Integers on the wire: a count, sequence number or duration is 0..2^53-1, exact in every JSON reader (a
# JavaScript client, an EA parsing numbers as doubles) and within msgpack's 64 bits; a return or error code
# (MT5 retcodes, GetLastError, the MetaTrader5 package's negative codes) is a 32-bit signed int.
MAX_SAFE_INT = 2**53 - 1
Count = Annotated[int, Meta(ge=0, le=MAX_SAFE_INT)]
Code = Annotated[int, Meta(ge=-(2**31), le=2**31 - 1)]
# W3C trace context of the order's trace: commands carry it, the terminal echoes it in its report (optional)
TraceParent = Annotated[str, Meta(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}\Z")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Body(Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Nested objects: camelCase, unknown fields ignored."""


class Message(_Body, frozen=True, kw_only=True, tag_field="type"):
    """Base of every tagged message."""


# --- commands (gateway -> terminal) ------------------------------------------------------------------------


class OpenMetadata(_Body, frozen=True, kw_only=True):
    execution_type: Literal["ENTRY", "EXIT"]
    user_id: UserId


class CloseMetadata(_Body, frozen=True, kw_only=True):
    exit_reason: Text
    user_id: UserId


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
    side: Side | None = None
    traceparent: TraceParent | None = None  # the command's, echoed

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
    sync_id: Ident | None = None  # the SYNC this snapshot answers


class PriceTick(Message, frozen=True, kw_only=True, tag="PRICE"):
    account_id: AccountId
    symbol: Symbol
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
    | SyncCommand
    | OpenedEvent
    | ClosedEvent
    | AccountUpdate
    | PositionUpdate
    | PriceTick
    | SymbolSpecs
    | Heartbeat
    | ErrorMessage
    | Welcome
)
Command = OpenCommand | CloseCommand | SyncCommand
OrderCommand = OpenCommand | CloseCommand
Event = OpenedEvent | ClosedEvent | AccountUpdate | PositionUpdate | PriceTick | SymbolSpecs

COMMAND_TYPES: tuple[type[Message], ...] = (OpenCommand, CloseCommand, SyncCommand)
EVENT_TYPES: tuple[type[Message], ...] = (
    OpenedEvent,
    ClosedEvent,
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


class OpenOrder(Message, frozen=True, kw_only=True, tag="OPEN_ORDER"):
    """Open a market position. ``actionId`` is the idempotency key end to end: a second request with the
    same actionId never sends a second command. ``ttlMs`` bounds how long the order may wait for its
    account to be reachable before it expires unsent. ``roundVolume``: a volume off the symbol's step is
    rounded down to it (and the result says so) instead of being INVALID."""

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


OrderRequest = OpenOrder | CloseOrder

OrderStatus = Literal["FILLED", "PARTIALLY_FILLED", "REJECTED", "EXPIRED", "OUTCOME_UNKNOWN", "INVALID", "IN_FLIGHT"]
FINAL_STATUSES: frozenset[str] = frozenset({"FILLED", "PARTIALLY_FILLED", "REJECTED", "EXPIRED", "INVALID"})


class OrderResult(Message, frozen=True, kw_only=True, tag="ORDER_RESULT"):
    """The executor's definite answer to an order request.

    - FILLED: executed (for a CLOSE: closed); ``mtTicket``, ``price`` and ``volume`` say how.
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
    kind: Literal["OPEN", "CLOSE", ""] = ""
    account_id: str = ""
    position_id: str | None = None
    action_id: str | None = None
    mt_ticket: str | None = None
    symbol: str | None = None
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
    event: OpenedEvent | ClosedEvent | None = None
    elapsed_ms: float = 0.0


class BatchResult(Message, frozen=True, kw_only=True, tag="BATCH_RESULT"):
    action_id: str
    results: list[OrderResult]
    elapsed_ms: float = 0.0


class OrderRecord(_Body, frozen=True, kw_only=True):
    """What JetStream keeps of an accepted order (KV bucket ``hb_orders``, key = actionId)."""

    action_id: ActionId
    request: OpenOrder | CloseOrder
    command: OpenCommand | CloseCommand
    state: str
    owner: str  # the executor replica that ran it
    created_at: datetime
    updated_at: datetime
    reply_to: str = ""  # the first caller's reply subject, answered by whoever finishes the order
    result: OrderResult | None = None


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
    symbols: list[SymbolSpec] = []  # sorted by symbol
    changed_at: dict[str, datetime] = {}  # symbol -> the timestamp of the report that set its current rules


# --- actions (coordinator) ---------------------------------------------------------------------------------

ActionKind = Literal["HEDGE_ENTRY", "EXIT", "CLOSE_ALL"]
ActionPolicy = Literal["COMPENSATE", "KEEP"]
ActionStateName = Literal[
    "ACCEPTED",  # validated, targets resolved, legs not started
    "RUNNING",  # legs sent
    "COMPLETED",  # every leg filled
    "PARTIAL",  # some legs failed; policy KEEP: the filled legs stay open, flagged
    "COMPENSATING",  # some legs failed; policy COMPENSATE: closing the filled legs
    "COMPENSATED",  # the filled legs were closed again
    "FAILED",  # no leg filled, or compensation failed (needs a person)
    "UNSETTLED",  # a leg's outcome is unknown: waiting for reconciliation
    "REJECTED",  # validation failed; nothing was sent
]
FINAL_ACTION_STATES: frozenset[str] = frozenset({"COMPLETED", "PARTIAL", "COMPENSATED", "FAILED", "REJECTED"})


class ActionLeg(_Body, frozen=True, kw_only=True):
    account_id: AccountId
    symbol: Symbol
    side: Side
    volume: Volume
    user_id: UserId = ""


class ActionRequest(Message, frozen=True, kw_only=True, tag="ACTION"):
    """A request that spans systems.

    - HEDGE_ENTRY: open every leg in ``legs`` concurrently (e.g. BUY on account A, SELL on account B).
    - EXIT: close every open leg of the earlier action ``targetActionId``.
    - CLOSE_ALL: close every open position on ``accountIds``.
    ``policy`` says what happens when some legs fail: COMPENSATE closes the filled ones, KEEP keeps them
    and flags the action PARTIAL.
    """

    action_id: ActionId | None = None
    kind: ActionKind
    legs: Annotated[list[ActionLeg], Meta(max_length=100)] = []
    target_action_id: ActionId | None = None
    account_ids: Annotated[list[AccountId], Meta(max_length=1000)] = []
    user_id: UserId = ""
    policy: ActionPolicy = "COMPENSATE"
    timeout_ms: Annotated[int, Meta(gt=0, le=600_000)] | None = None

    def __post_init__(self) -> None:
        if self.kind == "HEDGE_ENTRY" and not self.legs:
            raise ValueError("`legs` is required for HEDGE_ENTRY")
        if self.kind == "EXIT" and self.target_action_id is None:
            raise ValueError("`targetActionId` is required for EXIT")
        if self.kind == "CLOSE_ALL" and not self.account_ids:
            raise ValueError("`accountIds` is required for CLOSE_ALL")

    def accounts(self) -> list[str]:
        """The accounts the request names (EXIT's come from the target action)."""
        return sorted({leg.account_id for leg in self.legs} | set(self.account_ids))


LegRole = Literal["ENTRY", "EXIT", "COMPENSATION"]
LegStatus = Literal["PENDING", "RUNNING"] | OrderStatus


class LegState(_Body, frozen=True, kw_only=True):
    index: Count
    role: LegRole
    account_id: str
    order_action_id: str  # the executor order's actionId: ``<actionId>-<role initial><index>``
    status: LegStatus = "PENDING"
    symbol: str | None = None
    side: Side | None = None
    volume: float | None = None
    mt_ticket: str | None = None
    position_id: str | None = None
    price: float | None = None
    filled_volume: float | None = None
    code: str | None = None
    message: str = ""


class ActionState(Message, frozen=True, kw_only=True, tag="ACTION_STATE"):
    """One state of an action. Published on every change with a growing ``seq`` (subscribers drop a state
    whose seq is not above the last they saw) and kept in JetStream."""

    action_id: str
    kind: ActionKind
    state: ActionStateName
    seq: Count
    timestamp: datetime
    policy: ActionPolicy = "COMPENSATE"
    user_id: str = ""
    account_ids: list[str] = []
    legs: list[LegState] = []
    message: str = ""
    code: str | None = None
    duplicate: bool = False


# --- consistency (coordinator) -----------------------------------------------------------------------------

ConflictKind = Literal["ORPHAN_POSITION", "MISSING_POSITION", "VOLUME_MISMATCH"]


class Conflict(Message, frozen=True, kw_only=True, tag="CONFLICT"):
    """A difference between what the system believes open and what a terminal reports.

    - ORPHAN_POSITION: the terminal has a position the system has no record of (opened outside it).
    - MISSING_POSITION: the system believes a position open that the terminal does not report.
    - VOLUME_MISMATCH: both know it, with different volumes.
    """

    kind: ConflictKind
    account_id: str
    mt_ticket: str
    detected_at: datetime
    position_id: str | None = None
    symbol: str | None = None
    expected_volume: float | None = None
    reported_volume: float | None = None
    resolution: str = "REPORTED"  # REPORTED, ADOPTED, CLOSED, DROPPED
    message: str = ""


class ConsistencyStatus(Message, frozen=True, kw_only=True, tag="CONSISTENCY"):
    timestamp: datetime
    consistent: bool
    accounts_checked: Count
    open_conflicts: Count
    conflicts: list[Conflict] = []


# --- monitoring (gateway liveness, health checks, alerts) --------------------------------------------------


class TerminalLiveness(_Body, frozen=True, kw_only=True):
    """One terminal held by a gateway: how long it has been silent and its last WebSocket round trip."""

    account_id: str
    session_id: str
    connected_at: datetime
    idle_ms: float  # since the last frame the terminal sent (heartbeats included)
    rtt_ms: float | None = None  # the gateway's last WebSocket Ping to the terminal and its Pong; None: no Pong


class GatewayLiveness(Message, frozen=True, kw_only=True, tag="GATEWAY_LIVENESS"):
    """Published by every gateway at a fixed interval: the terminals it holds (``hb.gw.liveness``)."""

    timestamp: datetime
    gateway_id: str
    interval_ms: Count
    terminals: list[TerminalLiveness] = []
    clients: Count = 0


class HealthCheck(_Body, frozen=True, kw_only=True):
    name: str
    ok: bool
    checked_at: datetime
    detail: str = ""
    code: str | None = None  # the registry code of the failure
    latency_ms: float | None = None  # how long the probe took, when it is a round trip


class HealthReport(Message, frozen=True, kw_only=True, tag="HEALTH"):
    """A service's health checks (``hb.health.<service>``); ``ready`` is false while any check fails."""

    timestamp: datetime
    service: str
    instance: str
    ready: bool
    checks: list[HealthCheck] = []


AlertState = Literal["OPEN", "RESOLVED"]


class Alert(Message, frozen=True, kw_only=True, tag="ALERT"):
    """One transition of an alert (``hb.alert.<rule>.<scope>``, kept in HB_ALERTS). ``key`` (rule and account)
    de-duplicates: an alert is opened once and stays open until its condition clears; ``seq`` counts the
    transitions of the key."""

    key: str
    rule: str
    account_id: str = ""  # empty: the alert concerns the whole system
    state: AlertState
    severity: Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
    code: str
    message: str = ""
    value: float | None = None
    threshold: float | None = None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    seq: Count  # always sent (a default would be omitted on the wire)


class LatencyHop(_Body, frozen=True, kw_only=True):
    """Latency figures of one hop over the monitor's recent window (milliseconds)."""

    hop: str
    count: Count
    last_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class MonitorReport(Message, frozen=True, kw_only=True, tag="MONITOR_REPORT"):
    """The monitor's periodic report (``hb.monitor.report``): health, latency per hop, open alerts."""

    timestamp: datetime
    health: HealthReport
    hops: list[LatencyHop] = []
    alerts: list[Alert] = []
    terminals: list[TerminalView] = []


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
    open_positions: Count = 0
    last_heartbeat: datetime | None = None  # the last frame the gateway saw from it (liveness reports)
    rtt_ms: float | None = None  # the gateway's last WebSocket Ping/Pong round trip to it


class MonitorSnapshot(_Body, frozen=True, kw_only=True):
    """The monitor's live picture, answered on ``hb.monitor.status``."""

    started_at: datetime
    terminals: list[TerminalView]
    orders_succeeded: Count = 0
    orders_failed: Count = 0
    alerts: list[Alert] = []  # the open alerts
    health: HealthReport | None = None
    order_results: dict[str, Count] = {}  # ORDER_RESULT count by status (hb.exec.result.*)
    action_outcomes: dict[str, Count] = {}  # final ACTION_STATE count by state
    conflicts: Count = 0  # CONFLICTs published since the monitor started
    open_conflicts: Count | None = None  # from the last CONSISTENCY status
