"""MODIFY (stop loss and take profit) in the executor's pure core: the command a request becomes, how a MODIFIED
report is judged (10016 invalid stops, 10025 no changes, 10036 the position gone), reconciliation from a snapshot,
and a terminal that answers the command with an ERROR (an older EA) getting a definite answer at once."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from hedgebridge.executor import orders
from hedgebridge.executor.lifecycle import Trigger, judge, reconcile
from hedgebridge.executor.order_run import Limits, OrderRun
from hedgebridge.executor.projection import reconciled_change
from hedgebridge.executor.run_actions import Answer, Record, SendSync, Wait
from hedgebridge.protocol import (
    DeliveryAck,
    ErrorMessage,
    ModifiedEvent,
    ModifyCommand,
    ModifyMetadata,
    ModifyOrder,
    OpenCommand,
    OpenOrder,
    Position,
    ProtocolError,
    errors,
    pack,
    retcodes,
    unpack_order_request,
)
from hedgebridge.protocol.retcodes import RetcodeClass, classify

T = datetime(2026, 12, 1, tzinfo=UTC)
T0 = 50.0
LIMITS = Limits(
    delivery_timeout_s=2.0,
    max_attempts=3,
    retry_base_ms=50,
    reconcile_timeout_s=300.0,
    sync_timeout_s=2.0,
    lease_after_s=5.0,
)
MODIFY = ModifyCommand(
    timestamp=T,
    account_id="A1",
    position_id="mt-7",
    action_id="m-1",
    mt_ticket="7",
    stop_loss=1.08,
    metadata=ModifyMetadata(user_id="u-1"),
)


def modified(
    status: str = "SUCCESS", code: int | None = None, sl: float | None = 1.08, tp: float | None = 0.0
) -> ModifiedEvent:
    return ModifiedEvent(
        timestamp=T,
        account_id="A1",
        position_id="mt-7",
        action_id="m-1",
        mt_ticket="7",
        stop_loss=sl,
        take_profit=tp,
        status=status,  # type: ignore[arg-type]
        error_code=code,
        error_message=None if status == "SUCCESS" else "refused",
    )


def position(sl: float | None = None, tp: float | None = None, ticket: str = "7") -> Position:
    return Position(
        mt_ticket=ticket,
        symbol="EURUSD",
        side="BUY",
        volume=1.0,
        open_price=1.1,
        current_price=1.1,
        profit=0.0,
        stop_loss=sl,
        take_profit=tp,
    )


def test_a_request_becomes_a_modify_command_by_ticket_or_position() -> None:
    by_ticket = orders.build_command(ModifyOrder(account_id="A1", mt_ticket="7", take_profit=0.0, action_id="x"), T)
    assert isinstance(by_ticket, ModifyCommand)
    assert (by_ticket.position_id, by_ticket.mt_ticket, by_ticket.stop_loss, by_ticket.take_profit) == (
        "mt-7",
        "7",
        None,
        0.0,
    )
    by_position = orders.build_command(ModifyOrder(account_id="A1", position_id="p-1", stop_loss=1.2, user_id="u"), T)
    assert isinstance(by_position, ModifyCommand)
    assert (by_position.position_id, by_position.mt_ticket, by_position.metadata.user_id) == ("p-1", None, "u")
    assert by_position.action_id  # one is generated
    opened = orders.build_command(
        OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=1, stop_loss=1.0, take_profit=0), T
    )
    assert isinstance(opened, OpenCommand)
    assert (opened.stop_loss, opened.take_profit) == (1.0, None)  # 0 on an OPEN is no stop: not sent


def test_a_modify_request_names_a_position_and_a_stop() -> None:
    for body, field in (
        ({"type": "MODIFY_ORDER", "accountId": "A1", "stopLoss": 1.0}, "positionId"),
        ({"type": "MODIFY_ORDER", "accountId": "A1", "mtTicket": "7"}, "stopLoss"),
        ({"type": "MODIFY_ORDER", "accountId": "A1", "mtTicket": "7", "stopLoss": -1.0}, "stopLoss"),
    ):
        with pytest.raises(ProtocolError) as raised:
            unpack_order_request(msgspec.msgpack.encode(body))
        assert field in (raised.value.field or "") + raised.value.message
    assert isinstance(unpack_order_request(pack(ModifyOrder(account_id="A1", mt_ticket="7", stop_loss=0))), ModifyOrder)


def test_judging_a_modified_report() -> None:
    done = judge(MODIFY, modified(), 0, 3)
    assert (done.trigger, done.status, done.code, done.retcode_class) == (
        Trigger.FILLED,
        "FILLED",
        None,
        RetcodeClass.DONE,
    )
    unchanged = judge(MODIFY, modified("FAILED", retcodes.NO_CHANGES), 0, 3)
    assert (unchanged.status, unchanged.code, unchanged.retcode_class) == ("FILLED", None, RetcodeClass.NO_CHANGES)
    stops = judge(MODIFY, modified("FAILED", retcodes.INVALID_STOPS), 0, 3)
    assert (stops.status, stops.code, stops.retcode_class) == ("REJECTED", errors.INVALID_STOPS, RetcodeClass.FINAL)
    gone = judge(MODIFY, modified("FAILED", retcodes.POSITION_CLOSED), 0, 3)
    assert (gone.status, gone.code, gone.retcode_class) == ("REJECTED", errors.ALREADY_CLOSED, "ALREADY_CLOSED")
    busy = judge(MODIFY, modified("FAILED", retcodes.TOO_MANY_REQUESTS), 0, 3)
    assert busy.trigger is Trigger.RETRY
    assert classify(retcodes.NO_CHANGES) is RetcodeClass.FINAL
    assert classify(retcodes.NO_CHANGES, modifying=True) is RetcodeClass.NO_CHANGES


def test_a_modify_result_states_the_position_s_stops() -> None:
    report = modified(sl=1.08, tp=0.0)
    result = orders.result_of(MODIFY, report, judge(MODIFY, report, 0, 3), "FILLED", 1, 3.0)
    assert (result.status, result.kind, result.mt_ticket, result.stop_loss, result.take_profit) == (
        "FILLED",
        "MODIFY",
        "7",
        1.08,
        0.0,
    )
    assert (result.price, result.volume, result.requested_volume) == (None, None, None)
    same = modified("FAILED", retcodes.NO_CHANGES, sl=None, tp=None)
    unchanged = orders.result_of(MODIFY, same, judge(MODIFY, same, 0, 3), "FILLED", 1, 3.0)
    assert (unchanged.status, unchanged.retcode, unchanged.retcode_class) == ("FILLED", 10025, "NO_CHANGES")
    assert "no changes" in unchanged.message
    assert unchanged.stop_loss == 1.08  # what the command asked is what the position has
    bad = modified("FAILED", retcodes.INVALID_STOPS, sl=1.0, tp=None)
    refused = orders.result_of(MODIFY, bad, judge(MODIFY, bad, 0, 3), "REJECTED", 1, 3.0)
    assert (refused.status, refused.code, refused.retcode) == ("REJECTED", errors.INVALID_STOPS, 10016)
    assert (refused.stop_loss, refused.take_profit) == (1.0, None)  # as the terminal says it is now
    assert "INVALID_STOPS" in refused.message


def test_reconciling_a_modify_from_a_snapshot() -> None:
    assert reconcile(MODIFY, [position(sl=1.08, tp=1.2)], None).status == "FILLED"  # tp is kept, not compared
    assert reconcile(MODIFY, [position(sl=1.07)], None).code == errors.RECONCILED_NOT_EXECUTED
    assert reconcile(MODIFY, [position(ticket="8", sl=1.08)], None).code == errors.ALREADY_CLOSED
    removing = msgspec.structs.replace(MODIFY, stop_loss=0.0)
    assert reconcile(removing, [position(sl=None)], None).status == "FILLED"  # absent and 0 are both "none"
    assert reconcile(removing, [position(sl=1.0)], None).status == "REJECTED"
    result = orders.reconciled_result(MODIFY, reconcile(MODIFY, [position(sl=1.08)], None), "RECONCILED", 1)
    assert (result.status, result.reconciled, result.stop_loss, result.take_profit) == ("FILLED", True, 1.08, 0.0)


def run_of() -> OrderRun:
    return OrderRun(MODIFY, T0, 10.0, 3.0, LIMITS, new_id=lambda: "sync-1")


def test_a_modify_runs_to_its_report() -> None:
    run = run_of()
    run.start(T0)
    assert run.on_delivery(DeliveryAck(delivered=True, session_id="s"), T0 + 0.01)[-1] == Wait(T0 + 10.0)
    assert run.offer_report(modified())
    actions = run.on_wake(T0 + 0.02, T)
    result = next(a.result for a in actions if isinstance(a, Answer))
    assert (result.status, result.kind, result.stop_loss, result.attempts) == ("FILLED", "MODIFY", 1.08, 1)
    assert any(isinstance(a, Record) for a in actions)


def refusal(ref_type: str = "MODIFY", ref_id: str | None = None, account: str | None = "A1") -> ErrorMessage:
    return ErrorMessage(
        code=errors.UNKNOWN_TYPE,
        message="unknown message type MODIFY",
        field="type",
        ref_type=ref_type,
        ref_id=ref_id,
        account_id=account,
    )


def test_an_older_terminal_that_does_not_know_modify_gets_a_definite_refusal_at_once() -> None:
    run = run_of()
    assert not run.offer_refusal(refusal())  # nothing sent yet: nothing to refuse
    run.start(T0)
    run.on_delivery(DeliveryAck(delivered=True, session_id="s"), T0 + 0.01)
    assert not run.offer_refusal(refusal(ref_type="OPEN"))  # about another command
    assert not run.offer_refusal(refusal(ref_id="other-action"))
    assert not run.offer_refusal(refusal(account="B1"))
    assert run.offer_refusal(refusal())  # the EA names only the type: the one command it has is this one
    actions = run.on_wake(T0 + 0.02, T)
    result = next(a.result for a in actions if isinstance(a, Answer))
    assert (result.status, result.code, result.kind, result.state) == (
        "REJECTED",
        errors.TERMINAL_REFUSED,
        "MODIFY",
        "REJECTED",
    )
    assert "must be upgraded" in result.message
    assert not run.offer_report(modified())  # answered: nothing more is taken


def test_a_refusal_while_reconciling_settles_the_order_as_not_executed() -> None:
    run = run_of()
    run.start(T0)
    run.on_delivery(DeliveryAck(delivered=True, session_id="s"), T0 + 0.01)
    run.on_wake(T0 + 10.0, T)  # no answer in time: OUTCOME_UNKNOWN, recorded, then reconciled
    first = run.on_recorded(T0 + 10.1)
    assert any(isinstance(a, SendSync) for a in first)
    assert run.offer_refusal(refusal(ref_id="m-1"))
    run.on_delivery(None, T0 + 10.2)  # the SYNC found no terminal this round: reconcile from what came
    actions = run.on_wake(T0 + 10.3, T)
    result = next(a.result for a in actions if isinstance(a, Record))
    assert (result.status, result.code, result.reconciled) == ("REJECTED", errors.TERMINAL_REFUSED, True)


def test_a_reconciled_modify_leaves_the_book_alone() -> None:
    result = orders.reconciled_result(MODIFY, reconcile(MODIFY, [position(sl=1.08)], None), "RECONCILED", 1)
    assert result.status == "FILLED"
    assert reconciled_change(MODIFY, result, T) is None  # its position stays booked as it was
