"""The order lifecycle and the MT5 retcode classes (pure code)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hedgebridge.executor.lifecycle import (
    TERMINAL_STATES,
    InvalidTransition,
    OrderState,
    Trigger,
    advance,
    judge,
    reconcile,
    retry_delay_s,
)
from hedgebridge.protocol import (
    CloseCommand,
    ClosedEvent,
    CloseMetadata,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    Position,
    errors,
    retcodes,
)
from hedgebridge.protocol.retcodes import RetcodeClass, classify

T = datetime(2026, 11, 28, tzinfo=UTC)
OPEN = OpenCommand(
    timestamp=T,
    account_id="A1",
    position_id="p-1",
    action_id="a-1",
    symbol="EURUSD",
    side="BUY",
    volume=1.0,
    metadata=OpenMetadata(execution_type="ENTRY", user_id=""),
)
CLOSE = CloseCommand(
    timestamp=T,
    account_id="A1",
    position_id="mt-7",
    action_id="c-1",
    mt_ticket="7",
    metadata=CloseMetadata(exit_reason="", user_id=""),
)


def opened(status: str = "SUCCESS", code: int | None = None, volume: float | None = 1.0) -> OpenedEvent:
    ok = status == "SUCCESS"
    return OpenedEvent(
        timestamp=T,
        account_id="A1",
        position_id="p-1",
        action_id="a-1",
        mt_ticket="7" if ok else None,
        price=1.1 if ok else None,
        volume=volume if ok else None,
        status=status,  # type: ignore[arg-type]
        error_code=code,
    )


def closed_failed(code: int) -> ClosedEvent:
    return ClosedEvent(
        timestamp=T, account_id="A1", position_id="mt-7", action_id="c-1", status="FAILED", error_code=code
    )


def position(ticket: str = "7", action_id: str | None = "a-1", volume: float = 1.0) -> Position:
    return Position(
        mt_ticket=ticket,
        position_id="p-1" if action_id else None,
        action_id=action_id,
        symbol="EURUSD",
        side="BUY",
        volume=volume,
        open_price=1.1,
        current_price=1.1,
        profit=0.0,
    )


@pytest.mark.parametrize(
    ("state", "trigger", "after"),
    [
        (OrderState.ACCEPTED, Trigger.DELIVERED, OrderState.SENT),
        (OrderState.ACCEPTED, Trigger.NOT_DELIVERED, OrderState.ACCEPTED),
        (OrderState.ACCEPTED, Trigger.TTL_OVER, OrderState.EXPIRED),
        (OrderState.ACCEPTED, Trigger.DELIVERY_UNCERTAIN, OrderState.OUTCOME_UNKNOWN),
        (OrderState.SENT, Trigger.FILLED, OrderState.FILLED),
        (OrderState.SENT, Trigger.PARTIALLY_FILLED, OrderState.PARTIALLY_FILLED),
        (OrderState.SENT, Trigger.RETRY, OrderState.ACCEPTED),
        (OrderState.SENT, Trigger.REJECTED, OrderState.REJECTED),
        (OrderState.SENT, Trigger.TIMED_OUT, OrderState.OUTCOME_UNKNOWN),
        (OrderState.OUTCOME_UNKNOWN, Trigger.RECONCILED, OrderState.RECONCILED),
    ],
)
def test_every_transition(state: OrderState, trigger: Trigger, after: OrderState) -> None:
    assert advance(state, trigger) is after


def test_terminal_states_accept_nothing_and_unknown_is_never_resent() -> None:
    for state in TERMINAL_STATES:
        for trigger in Trigger:
            with pytest.raises(InvalidTransition):
                advance(state, trigger)
    for trigger in (Trigger.DELIVERED, Trigger.RETRY, Trigger.NOT_DELIVERED, Trigger.FILLED):
        with pytest.raises(InvalidTransition):
            advance(OrderState.OUTCOME_UNKNOWN, trigger)
    with pytest.raises(InvalidTransition):
        advance(OrderState.ACCEPTED, Trigger.FILLED)  # a report for a command never delivered


def test_judge_fills_and_partial_fills() -> None:
    assert judge(OPEN, opened(), 0, 3).status == "FILLED"
    partial = judge(OPEN, opened(volume=0.4), 0, 3)
    assert (partial.status, partial.code, partial.filled_volume) == ("PARTIALLY_FILLED", errors.PARTIAL_FILL, 0.4)
    flagged = judge(OPEN, opened(code=retcodes.DONE_PARTIAL), 0, 3)
    assert flagged.retcode_class is RetcodeClass.DONE_PARTIAL


@pytest.mark.parametrize(
    "code", [retcodes.REQUOTE, retcodes.PRICE_CHANGED, retcodes.PRICE_OFF, retcodes.TOO_MANY_REQUESTS, retcodes.LOCKED]
)
def test_judge_retries_until_the_attempts_run_out(code: int) -> None:
    assert judge(OPEN, opened("FAILED", code), 0, 3).trigger is Trigger.RETRY
    assert judge(OPEN, opened("FAILED", code), 1, 3).trigger is Trigger.RETRY
    last = judge(OPEN, opened("FAILED", code), 2, 3)
    assert (last.trigger, last.status, last.code) == (Trigger.REJECTED, "REJECTED", errors.RETRIES_EXHAUSTED)


@pytest.mark.parametrize("code", [retcodes.ERROR, retcodes.TIMEOUT, retcodes.CONNECTION])
def test_judge_reconciles_when_the_server_may_have_executed(code: int) -> None:
    verdict = judge(OPEN, opened("FAILED", code), 0, 3)
    assert (verdict.trigger, verdict.status) == (Trigger.TIMED_OUT, "OUTCOME_UNKNOWN")


@pytest.mark.parametrize(
    "code",
    [
        retcodes.REJECT,
        retcodes.INVALID_VOLUME,
        retcodes.INVALID_PRICE,
        retcodes.MARKET_CLOSED,
        retcodes.NO_MONEY,
        retcodes.TRADE_DISABLED,
        retcodes.POSITION_CLOSED,  # on an OPEN it is just final
        retcodes.NO_CHANGES,  # likewise: only a MODIFY can change nothing
        99999,
        None,
    ],
)
def test_judge_final_codes(code: int | None) -> None:
    verdict = judge(OPEN, opened("FAILED", code), 0, 3)
    assert (verdict.status, verdict.code, verdict.retcode_class) == (
        "REJECTED",
        errors.ORDER_REJECTED,
        RetcodeClass.FINAL,
    )


def test_already_closed_only_for_a_close() -> None:
    verdict = judge(CLOSE, closed_failed(retcodes.POSITION_CLOSED), 0, 3)
    assert (verdict.code, verdict.retcode_class) == (errors.ALREADY_CLOSED, RetcodeClass.ALREADY_CLOSED)
    assert classify(retcodes.POSITION_CLOSED) is RetcodeClass.FINAL
    assert classify(retcodes.POSITION_CLOSED, closing=True) is RetcodeClass.ALREADY_CLOSED
    assert retcodes.name(10004) == "REQUOTE"
    assert retcodes.name(1) == "RETCODE_1"


def test_retry_backoff_doubles_and_is_capped() -> None:
    assert [retry_delay_s(n, 50) for n in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]


def test_reconcile_an_open() -> None:
    found = reconcile(OPEN, [position("5", action_id=None), position("7")], None)
    assert (found.status, found.position) == ("FILLED", position("7"))
    assert reconcile(OPEN, [position("7", volume=0.5)], None).status == "PARTIALLY_FILLED"
    missing = reconcile(OPEN, [position("5", action_id=None)], None)
    assert (missing.status, missing.code) == ("REJECTED", errors.RECONCILED_NOT_EXECUTED)


def test_reconcile_a_close() -> None:
    assert reconcile(CLOSE, [position("5")], 1.0).status == "FILLED"  # gone: it closed
    still_open = reconcile(CLOSE, [position("7")], 1.0)
    assert (still_open.status, still_open.code) == ("REJECTED", errors.RECONCILED_NOT_EXECUTED)
    assert reconcile(CLOSE, [position("7", volume=0.5)], 1.0).status == "PARTIALLY_FILLED"
