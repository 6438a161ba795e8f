"""The one registry of error codes and WebSocket close codes.

Every error a service reports carries a code from here, with the severity and the recovery the code
declares. Services never invent ad-hoc error strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class Recovery(StrEnum):
    FIX_INPUT = "FIX_INPUT"  # the sender must correct what it sent; retrying unchanged fails again
    RETRY = "RETRY"  # transient: retry with backoff
    RECONNECT = "RECONNECT"  # the connection is gone: reconnect
    RECONCILE = "RECONCILE"  # outcome unknown: compare with what the terminal reports, never resend blindly
    ESCALATE = "ESCALATE"  # needs a person


class Category(StrEnum):
    """Where an error comes from (design §8's classification)."""

    VALIDATION = "VALIDATION"  # a frame or request that does not satisfy the protocol
    AUTH = "AUTH"  # credentials and scope
    NETWORK = "NETWORK"  # connections, delivery, reachability of servers and terminals
    MT5 = "MT5"  # the terminal or its trade server refused or failed an order
    EXECUTION = "EXECUTION"  # the order lifecycle: expiry, unknown outcomes, reconciliation, duplicates
    COORDINATION = "COORDINATION"  # actions across accounts and the consistency of the book
    MONITORING = "MONITORING"  # alert rules and health checks
    SYSTEM = "SYSTEM"  # faults inside a service


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    severity: Severity
    recovery: Recovery
    description: str
    category: Category = Category.SYSTEM


_REGISTRY: dict[str, ErrorCode] = {}


def _register(code: str, severity: Severity, recovery: Recovery, description: str) -> str:
    if code in _REGISTRY:
        raise ValueError(f"error code {code} registered twice")
    _REGISTRY[code] = ErrorCode(code, severity, recovery, description)
    return code


# Validation of frames and requests
MALFORMED_FRAME = _register("MALFORMED_FRAME", Severity.WARNING, Recovery.FIX_INPUT, "The frame is not a JSON object.")
UNKNOWN_TYPE = _register(
    "UNKNOWN_TYPE",
    Severity.WARNING,
    Recovery.FIX_INPUT,
    "The message's `type` is not one this protocol knows.",
)
MISSING_FIELD = _register("MISSING_FIELD", Severity.WARNING, Recovery.FIX_INPUT, "A required field is absent.")
INVALID_FIELD = _register(
    "INVALID_FIELD", Severity.WARNING, Recovery.FIX_INPUT, "A field has the wrong type or an invalid value."
)
UNEXPECTED_TYPE = _register(
    "UNEXPECTED_TYPE",
    Severity.WARNING,
    Recovery.FIX_INPUT,
    "A known message sent in the wrong direction (a terminal sending a command).",
)
ACCOUNT_MISMATCH = _register(
    "ACCOUNT_MISMATCH",
    Severity.ERROR,
    Recovery.FIX_INPUT,
    "The message names an account other than the one the connection's token was issued for.",
)
INVALID_REQUEST = _register(
    "INVALID_REQUEST", Severity.WARNING, Recovery.FIX_INPUT, "An order request failed validation."
)
INVALID_VOLUME = _register(
    "INVALID_VOLUME",
    Severity.WARNING,
    Recovery.FIX_INPUT,
    "The volume is below the symbol's minimum, over its maximum or not a multiple of its step; nothing was sent.",
)
# Delivery and execution
ACCOUNT_OFFLINE = _register(
    "ACCOUNT_OFFLINE",
    Severity.WARNING,
    Recovery.RETRY,
    "No gateway holds a connection for the account; the command was not sent.",
)
DELIVERY_FAILED = _register(
    "DELIVERY_FAILED",
    Severity.ERROR,
    Recovery.RECONCILE,
    "The gateway could not confirm that the command reached the terminal.",
)
OUTCOME_UNKNOWN = _register(
    "OUTCOME_UNKNOWN",
    Severity.ERROR,
    Recovery.RECONCILE,
    "The command was sent but no result arrived in time; the order may or may not have executed.",
)
ORDER_REJECTED = _register(
    "ORDER_REJECTED",
    Severity.WARNING,
    Recovery.FIX_INPUT,
    "The trade server refused the order for a reason that retrying cannot fix (see the MT5 retcode).",
)
RETRIES_EXHAUSTED = _register(
    "RETRIES_EXHAUSTED",
    Severity.WARNING,
    Recovery.RETRY,
    "The trade server kept asking for a retry (requote, price changed, busy) until the attempts ran out.",
)
ALREADY_CLOSED = _register(
    "ALREADY_CLOSED",
    Severity.INFO,
    Recovery.FIX_INPUT,
    "The position to close or modify does not exist any more (closed earlier, or never opened).",
)
TRADE_DISABLED = _register(
    "TRADE_DISABLED",
    Severity.WARNING,
    Recovery.FIX_INPUT,
    "The symbol's trade mode does not allow this order (disabled, long only, short only, close only); "
    "nothing was sent.",
)
INVALID_STOPS = _register(
    "INVALID_STOPS",
    Severity.WARNING,
    Recovery.FIX_INPUT,
    "The trade server refused the stop loss or take profit (MT5 10016): on the wrong side of the price, or "
    "closer to it than the symbol's stops level; nothing changed.",
)
TERMINAL_REFUSED = _register(
    "TERMINAL_REFUSED",
    Severity.ERROR,
    Recovery.ESCALATE,
    "The terminal answered the command with an ERROR instead of executing it (an older EA that does not know "
    "the command, or a field it cannot read); nothing was executed.",
)
PARTIAL_FILL = _register(
    "PARTIAL_FILL",
    Severity.WARNING,
    Recovery.ESCALATE,
    "Only part of the volume was executed; the rest was not re-sent.",
)
EXPIRED = _register(
    "EXPIRED",
    Severity.WARNING,
    Recovery.RETRY,
    "The account stayed unreachable past the order's time-to-live; the command was never sent.",
)
IN_FLIGHT = _register(
    "IN_FLIGHT",
    Severity.INFO,
    Recovery.RETRY,
    "An order or action with this actionId is still running; ask again for its result.",
)
RECONCILED_NOT_EXECUTED = _register(
    "RECONCILED_NOT_EXECUTED",
    Severity.WARNING,
    Recovery.FIX_INPUT,
    "Reconciliation found that an order whose outcome was unknown did not execute.",
)
DUPLICATE_MISMATCH = _register(
    "DUPLICATE_MISMATCH",
    Severity.ERROR,
    Recovery.FIX_INPUT,
    "The actionId was already used for a different request.",
)
UNSOLICITED_REPORT = _register(
    "UNSOLICITED_REPORT",
    Severity.ERROR,
    Recovery.RECONCILE,
    "A terminal reported a trade (OPENED, or CLOSED without a reason) that answers no command the system sent "
    "to its account; it is not published as a trade, and a position it describes is found by reconciliation.",
)
CACHE_INCOMPLETE = _register(
    "CACHE_INCOMPLETE",
    Severity.WARNING,
    Recovery.RETRY,
    "The realtime cache is being rebuilt and has no complete picture of the account yet.",
)
# Coordination
ACTION_INVALID = _register(
    "ACTION_INVALID", Severity.WARNING, Recovery.FIX_INPUT, "The action failed validation; nothing was sent."
)
ACTION_NOT_FOUND = _register(
    "ACTION_NOT_FOUND", Severity.WARNING, Recovery.FIX_INPUT, "No action with that actionId is known."
)
LEG_FAILED = _register(
    "LEG_FAILED",
    Severity.WARNING,
    Recovery.ESCALATE,
    "Some legs of an action failed; the action's policy decided what happened to the others.",
)
COMPENSATION_FAILED = _register(
    "COMPENSATION_FAILED",
    Severity.CRITICAL,
    Recovery.ESCALATE,
    "Closing the filled legs of a failed action did not succeed: positions may be unhedged.",
)
COORDINATOR_UNAVAILABLE = _register(
    "COORDINATOR_UNAVAILABLE", Severity.ERROR, Recovery.RETRY, "No coordinator answered the action request."
)
POSITION_CONFLICT = _register(
    "POSITION_CONFLICT",
    Severity.ERROR,
    Recovery.RECONCILE,
    "What the system believes open differs from what a terminal reports.",
)
# Client API
UNAUTHENTICATED = _register(
    "UNAUTHENTICATED", Severity.WARNING, Recovery.FIX_INPUT, "The client has not presented a valid token."
)
FORBIDDEN = _register(
    "FORBIDDEN", Severity.WARNING, Recovery.FIX_INPUT, "The request names something outside the token's scope."
)
EXECUTOR_UNAVAILABLE = _register(
    "EXECUTOR_UNAVAILABLE", Severity.ERROR, Recovery.RETRY, "No executor answered the order request."
)
INTERNAL = _register("INTERNAL", Severity.CRITICAL, Recovery.ESCALATE, "An unexpected fault inside a service.")
# Monitoring: alerts and health checks (services/monitor)
EXECUTION_SLOW = _register(
    "EXECUTION_SLOW", Severity.WARNING, Recovery.ESCALATE, "An order took longer than the execution latency threshold."
)
WEBSOCKET_SLOW = _register(
    "WEBSOCKET_SLOW",
    Severity.WARNING,
    Recovery.RECONNECT,
    "A terminal's WebSocket round trip (Ping to Pong) exceeded the WebSocket latency threshold.",
)
SYNC_SLOW = _register(
    "SYNC_SLOW", Severity.WARNING, Recovery.ESCALATE, "An action took longer than the sync latency threshold."
)
ORDERS_FAILING = _register(
    "ORDERS_FAILING", Severity.ERROR, Recovery.ESCALATE, "Consecutive orders on an account did not fill."
)
TERMINAL_DOWN = _register(
    "TERMINAL_DOWN", Severity.CRITICAL, Recovery.RECONNECT, "A terminal has been disconnected too long."
)
TERMINAL_SILENT = _register(
    "TERMINAL_SILENT",
    Severity.ERROR,
    Recovery.RECONNECT,
    "A connected terminal has reported no event (price, account, position, trade) for too long.",
)
MARGIN_LOW = _register(
    "MARGIN_LOW", Severity.CRITICAL, Recovery.ESCALATE, "An account's margin level is under the threshold."
)
HEALTH_CHECK_FAILED = _register(
    "HEALTH_CHECK_FAILED", Severity.ERROR, Recovery.ESCALATE, "A health check of the monitor failed."
)
NATS_UNREACHABLE = _register(
    "NATS_UNREACHABLE", Severity.CRITICAL, Recovery.RECONNECT, "The NATS server does not answer."
)
CACHE_UNREACHABLE = _register(
    "CACHE_UNREACHABLE", Severity.ERROR, Recovery.RECONNECT, "The Redis-compatible cache does not answer."
)
GATEWAY_UNREACHABLE = _register(
    "GATEWAY_UNREACHABLE", Severity.CRITICAL, Recovery.RECONNECT, "The gateway's WebSocket endpoint does not answer."
)
UNREADABLE_EVENT = _register(
    "UNREADABLE_EVENT", Severity.ERROR, Recovery.ESCALATE, "An event on NATS failed validation and was skipped."
)


_CATEGORIES: dict[Category, tuple[str, ...]] = {
    Category.VALIDATION: (
        MALFORMED_FRAME,
        UNKNOWN_TYPE,
        MISSING_FIELD,
        INVALID_FIELD,
        UNEXPECTED_TYPE,
        ACCOUNT_MISMATCH,
        INVALID_REQUEST,
        INVALID_VOLUME,
        UNREADABLE_EVENT,
    ),
    Category.AUTH: (UNAUTHENTICATED, FORBIDDEN),
    Category.NETWORK: (
        ACCOUNT_OFFLINE,
        DELIVERY_FAILED,
        EXECUTOR_UNAVAILABLE,
        COORDINATOR_UNAVAILABLE,
        NATS_UNREACHABLE,
        CACHE_UNREACHABLE,
        GATEWAY_UNREACHABLE,
    ),
    Category.MT5: (
        ORDER_REJECTED,
        RETRIES_EXHAUSTED,
        ALREADY_CLOSED,
        PARTIAL_FILL,
        TRADE_DISABLED,
        INVALID_STOPS,
        TERMINAL_REFUSED,
    ),
    Category.EXECUTION: (
        OUTCOME_UNKNOWN,
        EXPIRED,
        IN_FLIGHT,
        RECONCILED_NOT_EXECUTED,
        DUPLICATE_MISMATCH,
        UNSOLICITED_REPORT,
        CACHE_INCOMPLETE,
    ),
    Category.COORDINATION: (
        ACTION_INVALID,
        ACTION_NOT_FOUND,
        LEG_FAILED,
        COMPENSATION_FAILED,
        POSITION_CONFLICT,
    ),
    Category.MONITORING: (
        EXECUTION_SLOW,
        WEBSOCKET_SLOW,
        SYNC_SLOW,
        ORDERS_FAILING,
        TERMINAL_DOWN,
        TERMINAL_SILENT,
        MARGIN_LOW,
        HEALTH_CHECK_FAILED,
    ),
    Category.SYSTEM: (INTERNAL,),
}
for _category, _codes in _CATEGORIES.items():
    for _code in _codes:
        _entry = _REGISTRY[_code]
        _REGISTRY[_code] = ErrorCode(_entry.code, _entry.severity, _entry.recovery, _entry.description, _category)


def lookup(code: str) -> ErrorCode:
    """Return the registry entry for ``code``; raises KeyError for a code that is not registered."""
    return _REGISTRY[code]


def all_codes() -> tuple[ErrorCode, ...]:
    return tuple(_REGISTRY.values())


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses (1000-2999 from RFC 6455, 4000-4999 our own)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the gateway is shutting down: reconnect, possibly to another replica
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # a frame exceeded the configured size limit
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013  # a backend the session needs is unavailable now (a history to replay): reconnect
    HEARTBEAT_TIMEOUT = 4001  # no frame from the terminal within the heartbeat timeout
    SESSION_REPLACED = 4002  # a newer connection for the same account took over
