"""The order lifecycle: a pure state machine (no I/O).

::

    ACCEPTED ──delivered──▶ SENT ──filled──────────▶ FILLED
       │  ▲                  │ ──partially filled─▶ PARTIALLY_FILLED
       │  └──retry (requote, price changed, busy; bounded)
       │                     │ ──refused──────────▶ REJECTED
       │                     │ ──no result in time / server unsure──▶ OUTCOME_UNKNOWN ──snapshot──▶ RECONCILED
       │                     │ ──the terminal back on a new session, its snapshot──────────────────▶ RECONCILED
       ├──time-to-live over, never delivered──▶ EXPIRED
       └──delivery uncertain──────────────────▶ OUTCOME_UNKNOWN

A report is judged by ``judge`` (the MT5 retcode's class decides), a snapshot by ``reconcile``. No path
leads from OUTCOME_UNKNOWN back to SENT: an order whose outcome is unknown is never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hedgebridge.protocol import (
    CloseCommand,
    ModifiedEvent,
    ModifyCommand,
    OpenCommand,
    OrderCommand,
    Position,
    Report,
    errors,
    retcodes,
)
from hedgebridge.protocol.retcodes import RetcodeClass


class OrderState(StrEnum):
    ACCEPTED = "ACCEPTED"
    SENT = "SENT"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    RECONCILED = "RECONCILED"


class Trigger(StrEnum):
    DELIVERED = "DELIVERED"
    NOT_DELIVERED = "NOT_DELIVERED"  # no gateway holds the account: nothing was sent
    TTL_OVER = "TTL_OVER"
    DELIVERY_UNCERTAIN = "DELIVERY_UNCERTAIN"
    FILLED = "FILLED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    RETRY = "RETRY"
    REJECTED = "REJECTED"
    TIMED_OUT = "TIMED_OUT"
    RECONCILED = "RECONCILED"


TERMINAL_STATES = frozenset(
    {
        OrderState.FILLED,
        OrderState.PARTIALLY_FILLED,
        OrderState.REJECTED,
        OrderState.EXPIRED,
        OrderState.RECONCILED,
    }
)

_TRANSITIONS: dict[tuple[OrderState, Trigger], OrderState] = {
    (OrderState.ACCEPTED, Trigger.DELIVERED): OrderState.SENT,
    (OrderState.ACCEPTED, Trigger.NOT_DELIVERED): OrderState.ACCEPTED,
    (OrderState.ACCEPTED, Trigger.TTL_OVER): OrderState.EXPIRED,
    (OrderState.ACCEPTED, Trigger.DELIVERY_UNCERTAIN): OrderState.OUTCOME_UNKNOWN,
    (OrderState.SENT, Trigger.FILLED): OrderState.FILLED,
    (OrderState.SENT, Trigger.PARTIALLY_FILLED): OrderState.PARTIALLY_FILLED,
    (OrderState.SENT, Trigger.RETRY): OrderState.ACCEPTED,
    (OrderState.SENT, Trigger.REJECTED): OrderState.REJECTED,
    (OrderState.SENT, Trigger.TIMED_OUT): OrderState.OUTCOME_UNKNOWN,
    (OrderState.SENT, Trigger.RECONCILED): OrderState.RECONCILED,  # the session that got it ended: a snapshot
    (OrderState.OUTCOME_UNKNOWN, Trigger.RECONCILED): OrderState.RECONCILED,
}


class InvalidTransition(Exception):
    def __init__(self, state: OrderState, trigger: Trigger) -> None:
        super().__init__(f"no transition from {state} on {trigger}")
        self.state = state
        self.trigger = trigger


def advance(state: OrderState, trigger: Trigger) -> OrderState:
    """The state after ``trigger``; raises InvalidTransition for a trigger the state does not accept."""
    try:
        return _TRANSITIONS[(state, trigger)]
    except KeyError:
        raise InvalidTransition(state, trigger) from None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a terminal report (or a snapshot) means for the order."""

    trigger: Trigger
    status: str  # the OrderResult status it leads to ("" for RETRY: the order goes on)
    code: str | None = None
    retcode_class: RetcodeClass | None = None
    filled_volume: float | None = None


def judge(command: OrderCommand, report: Report, attempt: int, max_attempts: int) -> Verdict:
    """Classify the terminal's answer to ``command`` (attempt numbers start at 0). A MODIFY that changed
    nothing because the position has the asked stops already (10025) did what it was for: FILLED."""
    closing = isinstance(command, CloseCommand)
    modifying = isinstance(command, ModifyCommand)
    if report.status == "SUCCESS":
        if isinstance(command, ModifyCommand) or isinstance(report, ModifiedEvent):
            unchanged = report.error_code == retcodes.NO_CHANGES
            return Verdict(Trigger.FILLED, "FILLED", None, RetcodeClass.NO_CHANGES if unchanged else RetcodeClass.DONE)
        requested = command.volume
        filled = report.volume
        partial = report.error_code == retcodes.DONE_PARTIAL or (
            requested is not None and filled is not None and filled < requested - 1e-9
        )
        if partial:
            return Verdict(
                Trigger.PARTIALLY_FILLED, "PARTIALLY_FILLED", errors.PARTIAL_FILL, RetcodeClass.DONE_PARTIAL, filled
            )
        return Verdict(Trigger.FILLED, "FILLED", None, RetcodeClass.DONE, filled)
    kind = retcodes.classify(report.error_code, closing=closing, modifying=modifying)
    if kind is RetcodeClass.NO_CHANGES:
        return Verdict(Trigger.FILLED, "FILLED", None, kind)
    if kind is RetcodeClass.RETRY:
        if attempt + 1 < max_attempts:
            return Verdict(Trigger.RETRY, "", None, kind)
        return Verdict(Trigger.REJECTED, "REJECTED", errors.RETRIES_EXHAUSTED, kind)
    if kind is RetcodeClass.RECONCILE:
        return Verdict(Trigger.TIMED_OUT, "OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN, kind)
    if kind is RetcodeClass.ALREADY_CLOSED:
        return Verdict(Trigger.REJECTED, "REJECTED", errors.ALREADY_CLOSED, kind)
    if report.error_code == retcodes.INVALID_STOPS:
        return Verdict(Trigger.REJECTED, "REJECTED", errors.INVALID_STOPS, RetcodeClass.FINAL)
    return Verdict(Trigger.REJECTED, "REJECTED", errors.ORDER_REJECTED, RetcodeClass.FINAL)


def same_price(have: float | None, want: float) -> bool:
    """Whether a position's stop ``have`` (None or 0: none) is the price ``want`` (0: none)."""
    have = have or 0.0
    return abs(have - want) <= 1e-9 * max(1.0, abs(want))


def has_stops(position: Position, command: ModifyCommand) -> bool:
    """Whether ``position`` has the stops ``command`` asks for (a stop it leaves out is not compared)."""
    wanted = ((position.stop_loss, command.stop_loss), (position.take_profit, command.take_profit))
    return all(want is None or same_price(have, want) for have, want in wanted)


def retry_delay_s(attempt: int, base_ms: int, cap_ms: int = 1000) -> float:
    """Backoff before sending attempt ``attempt + 1`` (doubling from ``base_ms``, at most ``cap_ms``)."""
    return float(min(base_ms * 2**attempt, cap_ms)) / 1000


@dataclass(frozen=True, slots=True)
class Reconciled:
    status: str  # FILLED, PARTIALLY_FILLED or REJECTED (did not execute)
    code: str | None
    position: Position | None  # the position that proves an OPEN, or what is left after a partial CLOSE


def reconcile(command: OrderCommand, snapshot: list[Position], expected_volume: float | None) -> Reconciled:
    """Decide an order whose outcome was unknown from a snapshot taken after it (a SYNC's answer).

    An OPEN executed when a position carries its actionId (or positionId). A CLOSE executed when its
    position is gone, partly when it is still there with less volume than before (``expected_volume``). A
    MODIFY executed when its position has the stops it asked for; its position gone is ALREADY_CLOSED."""
    if isinstance(command, ModifyCommand):
        for position in snapshot:
            if (command.mt_ticket is not None and position.mt_ticket == command.mt_ticket) or (
                command.mt_ticket is None and position.position_id == command.position_id
            ):
                if has_stops(position, command):
                    return Reconciled("FILLED", None, position)
                return Reconciled("REJECTED", errors.RECONCILED_NOT_EXECUTED, position)
        return Reconciled("REJECTED", errors.ALREADY_CLOSED, None)
    if isinstance(command, OpenCommand):
        for position in snapshot:
            if (command.action_id is not None and position.action_id == command.action_id) or (
                position.position_id == command.position_id
            ):
                partial = position.volume < command.volume - 1e-9
                status = "PARTIALLY_FILLED" if partial else "FILLED"
                return Reconciled(status, errors.PARTIAL_FILL if partial else None, position)
        return Reconciled("REJECTED", errors.RECONCILED_NOT_EXECUTED, None)
    for position in snapshot:
        if (command.mt_ticket is not None and position.mt_ticket == command.mt_ticket) or (
            command.mt_ticket is None and position.position_id == command.position_id
        ):
            if expected_volume is not None and position.volume < expected_volume - 1e-9:
                return Reconciled("PARTIALLY_FILLED", errors.PARTIAL_FILL, position)
            return Reconciled("REJECTED", errors.RECONCILED_NOT_EXECUTED, position)
    return Reconciled("FILLED", None, None)
