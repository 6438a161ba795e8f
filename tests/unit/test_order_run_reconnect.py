"""An order whose terminal comes back on a new session while its report is awaited: reconciled from the new
session's snapshot at once, not at the order's timeout (``OrderRun.offer_session``)."""

from __future__ import annotations

import pytest

from hedgebridge.executor.order_run import OrderRun
from hedgebridge.executor.run_actions import Answer, ApplyToBook, Done, Log, ReadVolume, Record, SendSync, Wait
from hedgebridge.protocol import DeliveryAck, errors, retcodes

from .test_lifecycle import T, opened, position
from .test_order_run import CLOSE, DELIVERED, T0, answered, delivered, kinds, one, run_of, snapshot


def back(run: OrderRun, now: float = T0 + 0.3, session: str = "s2") -> SendSync:
    """The terminal connects again on ``session``: the run asks that session for a snapshot."""
    assert run.offer_session(session)
    actions = run.on_wake(now, T)
    assert one(actions, Log).event == "terminal back on a new session: reconciling now"
    sync = one(actions, SendSync)
    assert sync.account_id == "A1"
    return sync


def test_an_open_whose_session_ended_is_answered_from_the_new_sessions_snapshot() -> None:
    run = run_of(timeout_s=10.0)
    delivered(run)
    sync = back(run)
    assert run.on_delivery(DeliveryAck(delivered=True, session_id="s2"), T0 + 0.31)[-1] == Wait(T0 + 2.31)
    assert run.offer_snapshot(snapshot(sync.sync_id, position(volume=1.0)))
    assert kinds(run.on_wake(T0 + 0.35, T)) == ["Observe", "ReadVolume"]
    actions = run.on_volume(None, T0 + 0.36)
    assert kinds(actions) == ["Answer", "Log", "ApplyToBook", "Record"]
    result = answered(actions)
    assert (result.status, result.reconciled, result.state, result.mt_ticket) == ("FILLED", True, "RECONCILED", "7")
    assert result.elapsed_ms == pytest.approx(360.0)  # not the 10 s timeout
    assert one(actions, ApplyToBook).result == result
    assert one(actions, Record).state == "RECONCILED"
    assert run.on_recorded(T0 + 0.4) == [Done()]


def test_an_open_missing_from_the_new_sessions_snapshot_did_not_execute() -> None:
    run = run_of()
    delivered(run)
    sync = back(run)
    run.on_delivery(DELIVERED, T0 + 0.31)
    run.offer_snapshot(snapshot(sync.sync_id))
    run.on_wake(T0 + 0.35, T)
    result = answered(run.on_volume(None, T0 + 0.36))
    assert (result.status, result.code, result.reconciled) == ("REJECTED", errors.RECONCILED_NOT_EXECUTED, True)


def test_a_close_whose_position_is_gone_from_the_new_session_is_filled() -> None:
    run = run_of(CLOSE)
    delivered(run)
    sync = back(run)
    run.on_delivery(DELIVERED, T0 + 0.31)
    run.offer_snapshot(snapshot(sync.sync_id, position(ticket="9")))
    assert one(run.on_wake(T0 + 0.35, T), ReadVolume).command == CLOSE
    result = answered(run.on_volume(1.0, T0 + 0.36))
    assert (result.status, result.volume, result.reconciled) == ("FILLED", 1.0, True)


def test_the_same_session_or_no_report_awaited_is_not_a_return() -> None:
    run = run_of()
    assert not run.offer_session("s2")  # not delivered yet
    delivered(run)
    assert not run.offer_session("s1")  # the session the command went out on
    assert run.offer_report(opened())
    assert not run.offer_session("s2")  # the report is in: it is judged
    assert answered(run.on_wake(T0 + 0.05, T)).status == "FILLED"


def test_a_report_that_comes_before_the_snapshot_is_judged_as_usual() -> None:
    run = run_of()
    delivered(run)
    back(run)
    run.on_delivery(DELIVERED, T0 + 0.31)
    assert not run.offer_session("s3")  # already reconciling from s2
    assert run.offer_report(opened("FAILED", retcodes.NO_MONEY))  # the terminal's undelivered report, sent again
    actions = run.on_wake(T0 + 0.32, T)
    result = answered(actions)
    assert (result.status, result.code, result.reconciled) == ("REJECTED", errors.ORDER_REJECTED, False)
    assert run.sync_id is None


def test_no_snapshot_from_the_new_session_waits_for_the_report_until_the_timeout() -> None:
    run = run_of(timeout_s=1.0)
    delivered(run)
    back(run, now=T0 + 0.2)
    assert run.on_delivery(DELIVERED, T0 + 0.21)[-1] == Wait(T0 + 1.0)  # not past the order's timeout
    actions = run.on_wake(T0 + 1.0, T)  # the order's timeout came first: unknown, then reconciled as always
    assert one(actions, Log).event == "no result in time"
    assert answered(actions).status == "OUTCOME_UNKNOWN"


def test_a_sync_nobody_took_falls_back_to_waiting_for_the_report() -> None:
    run = run_of(timeout_s=10.0)
    delivered(run)
    back(run)
    assert run.on_delivery(None, T0 + 0.31) == [Wait(T0 + 10.0)]  # the terminal went away again
    assert run.offer_session("s3")  # and a later return reconciles again
    assert isinstance(one(run.on_wake(T0 + 0.5, T), SendSync), SendSync)


def test_a_taken_answer_is_never_given_twice() -> None:
    run = run_of()
    delivered(run)
    sync = back(run)
    run.on_delivery(DELIVERED, T0 + 0.31)
    run.offer_snapshot(snapshot(sync.sync_id, position(volume=1.0)))
    run.on_wake(T0 + 0.35, T)
    actions = run.on_volume(None, T0 + 0.36)
    assert sum(isinstance(a, Answer) for a in actions) == 1
    assert not run.offer_report(opened())  # the result is known: a late report is not taken
