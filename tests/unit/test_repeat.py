"""A repeated actionId answered from the first request's record (``Repeat``), with no server."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from hedgebridge.executor import orders
from hedgebridge.executor.lifecycle import OrderState
from hedgebridge.executor.repeat import CheckOrphan, Poll, Repeat, Rerun
from hedgebridge.executor.run_actions import Answer
from hedgebridge.protocol import OpenOrder, OrderRecord, OrderResult, errors

T = datetime(2026, 11, 28, tzinfo=UTC)
REQUEST = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1.0, action_id="a-1", timeout_ms=5000)
COMMAND = orders.build_command(REQUEST, T)


def record(result: OrderResult | None = None, state: OrderState = OrderState.SENT) -> OrderRecord:
    return OrderRecord(
        action_id="a-1",
        request=REQUEST,
        command=COMMAND,
        state=state,
        owner="ex-1",
        created_at=T,
        updated_at=T,
        result=result,
    )


def repeat() -> Repeat:
    return Repeat("a-1", msgspec.structs.replace(REQUEST, timeout_ms=100), started=10.0, deadline=11.0)


def test_while_in_flight_it_checks_the_owner_and_reads_again() -> None:
    first = record()
    assert repeat().on_record(first, 10.5) == [CheckOrphan(first), Poll(0.02)]


def test_in_flight_after_the_callers_timeout() -> None:
    actions = repeat().on_record(record(), 11.5)
    assert isinstance(actions[0], CheckOrphan)
    answer = actions[1]
    assert isinstance(answer, Answer)
    result = answer.result
    assert (result.status, result.code, result.state) == ("IN_FLIGHT", errors.IN_FLIGHT, "SENT")
    assert result.elapsed_ms == 1500.0
    assert result.action_id == "a-1"


def test_a_final_result_is_answered_as_a_duplicate() -> None:
    filled = orders.failure("REJECTED", errors.ORDER_REJECTED, "no money", COMMAND, 3.0, state="REJECTED")
    actions = repeat().on_record(record(filled, OrderState.REJECTED), 10.25)
    assert len(actions) == 1  # no owner check for an order that is over
    answer = actions[0]
    assert isinstance(answer, Answer)
    assert (answer.result.status, answer.result.duplicate, answer.result.elapsed_ms) == ("REJECTED", True, 250.0)


def test_an_unknown_outcome_is_read_again_until_the_timeout_then_answered() -> None:
    unknown = orders.failure("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN, "no result", COMMAND, 3.0)
    stored = record(unknown, OrderState.OUTCOME_UNKNOWN)
    assert repeat().on_record(stored, 10.5) == [CheckOrphan(stored), Poll()]
    later = repeat().on_record(stored, 12.0)
    answer = later[1]
    assert isinstance(answer, Answer)
    assert (answer.result.status, answer.result.duplicate) == ("OUTCOME_UNKNOWN", True)


def test_a_different_request_with_the_same_action_id_is_a_mismatch() -> None:
    other = Repeat("a-1", msgspec.structs.replace(REQUEST, volume=2.0), started=10.0, deadline=11.0)
    (answer,) = other.on_record(record(), 10.1)
    assert isinstance(answer, Answer)
    assert (answer.result.status, answer.result.code) == ("INVALID", errors.DUPLICATE_MISMATCH)
    assert "different request" in answer.result.message


def test_a_record_gone_from_the_bucket_is_a_mismatch() -> None:
    (answer,) = repeat().on_record(None, 10.1)
    assert isinstance(answer, Answer)
    assert (answer.result.code, answer.result.action_id) == (errors.DUPLICATE_MISMATCH, None)


def test_an_order_that_expired_before_the_repeat_came_runs_again() -> None:
    expired = orders.failure("EXPIRED", errors.EXPIRED, "unreachable", COMMAND, 3.0, state="EXPIRED")
    stored = record(expired, OrderState.EXPIRED)
    assert repeat().on_record(stored, 10.1) == [Rerun(stored)]  # EXPIRED: ask again with the same actionId
    # a repeat that came while the first one ran gets the first one's result, EXPIRED included
    waiting = repeat()
    assert waiting.on_record(record(), 10.1) == [CheckOrphan(record()), Poll()]
    (answer,) = waiting.on_record(stored, 10.2)
    assert isinstance(answer, Answer)
    assert (answer.result.status, answer.result.duplicate) == ("EXPIRED", True)
    # a different request is still a mismatch, expired or not
    other = Repeat("a-1", msgspec.structs.replace(REQUEST, volume=2.0), started=10.0, deadline=11.0)
    (mismatch,) = other.on_record(stored, 10.1)
    assert isinstance(mismatch, Answer)
    assert mismatch.result.code == errors.DUPLICATE_MISMATCH
