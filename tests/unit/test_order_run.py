"""One order's run (``OrderRun``) driven event by event: no server, no clock but the one passed in."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import TypeVar

import msgspec
import pytest

from hedgebridge.executor.lifecycle import OrderState
from hedgebridge.executor.order_run import NOT_CONFIRMED, Limits, OrderRun
from hedgebridge.executor.run_actions import (
    Action,
    Answer,
    ApplyToBook,
    Done,
    HoldLease,
    Log,
    Observe,
    Pause,
    PutLease,
    ReadVolume,
    Record,
    Reply,
    Send,
    SendSync,
    Wait,
)
from hedgebridge.protocol import (
    CloseCommand,
    ClosedEvent,
    DeliveryAck,
    OpenCommand,
    OpenedEvent,
    OrderResult,
    Position,
    PositionUpdate,
    errors,
    retcodes,
)

from .test_lifecycle import CLOSE as CLOSE_BY_TICKET
from .test_lifecycle import OPEN, T, opened, position

T0 = 100.0  # the request came at this perf_counter second
LIMITS = Limits(
    delivery_timeout_s=2.0,
    max_attempts=3,
    retry_base_ms=50,
    reconcile_timeout_s=300.0,
    sync_timeout_s=2.0,
    lease_after_s=0.5,  # a (re)send from T0 + 0.5 on holds the lease first
)
DELIVERED = DeliveryAck(delivered=True, session_id="s1")
NOT_HELD = DeliveryAck(delivered=False, reason="no terminal")
CLOSE = msgspec.structs.replace(CLOSE_BY_TICKET, volume=1.0)

A = TypeVar("A", bound=Action)


def sync_ids() -> Iterator[str]:
    n = 0
    while True:
        n += 1
        yield f"sync-{n}"


def run_of(
    command: OpenCommand | CloseCommand = OPEN, *, ttl_s: float = 3.0, timeout_s: float = 10.0, reply_to: str = ""
) -> OrderRun:
    ids = sync_ids()
    return OrderRun(command, T0, timeout_s, ttl_s, LIMITS, new_id=lambda: next(ids), reply_to=reply_to)


def closed(status: str = "SUCCESS", code: int | None = None) -> ClosedEvent:
    ok = status == "SUCCESS"
    return ClosedEvent(
        timestamp=T,
        account_id="A1",
        position_id="mt-7",
        action_id="c-1",
        mt_ticket="7",
        price=1.2 if ok else None,
        volume=1.0 if ok else None,
        status=status,  # type: ignore[arg-type]
        error_code=code,
    )


def snapshot(sync_id: str, *positions: Position) -> PositionUpdate:
    return PositionUpdate(timestamp=T, account_id="A1", positions=list(positions), sync_id=sync_id)


def one(actions: list[Action], kind: type[A]) -> A:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, f"{kind.__name__} in {actions}"
    return found[0]


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def answered(actions: list[Action]) -> OrderResult:
    return one(actions, Answer).result


def delivered(run: OrderRun, now: float = T0 + 0.01) -> list[Action]:
    assert kinds(run.start(T0)) == ["Send"]
    return run.on_delivery(DELIVERED, now)


def reported(run: OrderRun, report: OpenedEvent | ClosedEvent, now: float = T0 + 0.05) -> list[Action]:
    assert run.offer_report(report)
    return run.on_wake(now, T)


# --- retcode classes ----------------------------------------------------------------------------------------


def test_filled_answers_then_records_then_ends() -> None:
    run = run_of()
    first = run.start(T0)
    assert first == [Send(OPEN, 2.0)]
    after_ack = run.on_delivery(DELIVERED, T0 + 0.01)
    assert after_ack == [Observe("delivery", pytest.approx(0.01)), Wait(T0 + 10.0)]  # type: ignore[arg-type]
    actions = reported(run, opened(), T0 + 0.05)
    assert kinds(actions) == ["Observe", "Log", "Answer", "Record"]
    assert one(actions, Observe).hop == "report"
    assert one(actions, Log).event == "order done"
    result = answered(actions)
    assert (result.status, result.attempts, result.mt_ticket, result.state) == ("FILLED", 1, "7", "FILLED")
    assert result.elapsed_ms == pytest.approx(50.0)
    assert one(actions, Record) == Record(OrderState.FILLED, result, keep_lease=False)
    assert not run.listening
    assert run.on_recorded(T0 + 0.06) == [Done()]


def test_partial_fill_is_final_and_not_sent_again() -> None:
    run = run_of()
    delivered(run)
    actions = reported(run, opened(volume=0.4))
    result = answered(actions)
    assert (result.status, result.code, result.volume) == ("PARTIALLY_FILLED", errors.PARTIAL_FILL, 0.4)
    assert not any(isinstance(a, Send) for a in actions)
    assert run.on_recorded(T0 + 0.1) == [Done()]


def test_a_requote_is_retried_with_backoff_then_filled() -> None:
    run = run_of()
    delivered(run)
    actions = reported(run, opened("FAILED", retcodes.REQUOTE), T0 + 0.05)
    assert kinds(actions) == ["Observe", "Log", "Pause"]
    assert one(actions, Log).event == "retrying"
    assert one(actions, Pause).delay_s == pytest.approx(0.05)
    assert not run.offer_report(opened())  # the refused attempt's slot is taken until the next send
    later = T + timedelta(seconds=1)
    resent = one(run.on_wake(T0 + 0.1, later), Send)
    assert (resent.command.attempt, resent.command.timestamp) == (1, later)
    assert run.on_delivery(DELIVERED, T0 + 0.11)[-1] == Wait(T0 + 10.0)
    result = answered(reported(run, opened(), T0 + 0.2))
    assert (result.status, result.attempts) == ("FILLED", 2)


def test_retries_end_after_max_attempts() -> None:
    run = run_of()
    delivered(run)
    pauses = []
    for attempt in range(2):
        actions = reported(run, opened("FAILED", retcodes.PRICE_CHANGED), T0 + attempt + 0.5)
        pauses.append(one(actions, Pause).delay_s)
        assert run.on_wake(T0 + attempt + 0.6, T) == [HoldLease("A1")]  # past lease_after_s: hold it first
        assert kinds(run.on_lease_held(T0 + attempt + 0.6)) == ["Send"]
        run.on_delivery(DELIVERED, T0 + attempt + 0.7)
    assert pauses == [pytest.approx(0.05), pytest.approx(0.1)]
    result = answered(reported(run, opened("FAILED", retcodes.PRICE_CHANGED), T0 + 3.0))
    assert (result.status, result.code, result.attempts) == ("REJECTED", errors.RETRIES_EXHAUSTED, 3)


def test_a_final_refusal_is_rejected_at_once() -> None:
    run = run_of()
    delivered(run)
    actions = reported(run, opened("FAILED", retcodes.NO_MONEY))
    result = answered(actions)
    assert (result.status, result.code, result.retcode) == ("REJECTED", errors.ORDER_REJECTED, retcodes.NO_MONEY)
    assert one(actions, Record).keep_lease is False


def test_a_close_of_a_gone_position_is_already_closed() -> None:
    run = run_of(CLOSE)
    delivered(run)
    result = answered(reported(run, closed("FAILED", retcodes.POSITION_CLOSED)))
    assert (result.status, result.code) == ("REJECTED", errors.ALREADY_CLOSED)


def test_a_server_unsure_is_outcome_unknown_then_reconciled_from_a_snapshot_not_its_report() -> None:
    run = run_of()
    delivered(run)
    actions = reported(run, opened("FAILED", retcodes.TIMEOUT))
    assert one(actions, Log).event == "trade server outcome unknown"
    result = answered(actions)
    assert (result.status, result.code, result.state) == ("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN, "OUTCOME_UNKNOWN")
    assert one(actions, Record) == Record(OrderState.OUTCOME_UNKNOWN, result, keep_lease=True)
    reconciling = run.on_recorded(T0 + 0.2)
    assert reconciling == [PutLease("A1"), SendSync("A1", "sync-1", 2.0)]  # the unsure report decides nothing


# --- delivery -----------------------------------------------------------------------------------------------


def test_no_responders_is_asked_again_until_delivered() -> None:
    run = run_of()
    run.start(T0)
    assert run.on_delivery(None, T0 + 0.001) == [Pause(0.01)]
    assert run.on_wake(T0 + 0.012, T) == [Send(OPEN, 2.0)]
    assert run.on_delivery(NOT_HELD, T0 + 0.013) == [Pause(0.02)]  # a gateway that no longer holds it
    assert run.on_wake(T0 + 0.034, T) == [Send(OPEN, 2.0)]
    actions = run.on_delivery(DELIVERED, T0 + 0.04)
    assert one(actions, Observe).seconds == pytest.approx(0.04)  # from the first ask
    assert run.state is OrderState.SENT
    assert answered(reported(run, opened())).status == "FILLED"


def test_an_order_whose_time_to_live_passed_in_its_accounts_queue_is_expired_unsent() -> None:
    run = run_of(ttl_s=1.5)
    actions = run.expire(T0 + 1.5, "queued behind other orders to account A1 past its time-to-live")
    result = answered(actions)
    assert (result.status, result.code, result.state, result.attempts) == ("EXPIRED", errors.EXPIRED, "EXPIRED", 0)
    assert result.message == "queued behind other orders to account A1 past its time-to-live; not sent"
    assert one(actions, Record).state is OrderState.EXPIRED
    assert not any(isinstance(a, Send) for a in actions)
    assert not run.offer_report(opened())
    assert run.on_recorded(T0 + 1.6) == [Done()]


def test_no_responders_backs_off_doubling_to_a_fifth_of_a_second() -> None:
    run = run_of(ttl_s=60.0)
    run.start(T0)
    pauses = []
    for _ in range(7):
        pauses.append(one(run.on_delivery(None, T0), Pause).delay_s)
        run.on_wake(T0, T)
    assert pauses == [0.01, 0.02, 0.04, 0.08, 0.16, 0.2, 0.2]


def test_the_time_to_live_over_is_expired_and_never_sent() -> None:
    run = run_of(ttl_s=0.025)
    run.start(T0)
    assert run.on_delivery(None, T0 + 0.001) == [Pause(0.01)]
    run.on_wake(T0 + 0.011, T)
    actions = run.on_delivery(None, T0 + 0.012)  # 0.012 + the next pause 0.02 > 0.025
    assert one(actions, Log).event == "the order's time-to-live ran out before it was sent"
    result = answered(actions)
    assert (result.status, result.code, result.state, result.attempts) == ("EXPIRED", errors.EXPIRED, "EXPIRED", 0)
    assert "unreachable for 0.025s" in result.message
    assert one(actions, Record).state is OrderState.EXPIRED
    assert not run.offer_report(opened())
    assert run.on_recorded(T0 + 0.02) == [Done()]


def test_delivery_uncertain_is_outcome_unknown_and_reconciled() -> None:
    run = run_of()
    run.start(T0)
    actions = run.on_delivery(DeliveryAck(delivered=False, uncertain=True, reason="lost mid-send"), T0 + 0.01)
    assert one(actions, Log).fields["reason"] == "lost mid-send"
    result = answered(actions)
    assert (result.status, result.code, result.message) == ("OUTCOME_UNKNOWN", errors.DELIVERY_FAILED, "lost mid-send")
    assert one(actions, Record).keep_lease
    assert kinds(run.on_recorded(T0 + 0.02)) == ["PutLease", "SendSync"]


def test_no_ack_in_time_is_outcome_unknown() -> None:
    run = run_of()
    run.start(T0)
    actions = run.on_unconfirmed(T0 + 2.0)
    assert one(actions, Log).event == "delivery not confirmed"
    result = answered(actions)
    assert (result.status, result.code, result.message) == ("OUTCOME_UNKNOWN", errors.DELIVERY_FAILED, NOT_CONFIRMED)


def test_a_report_before_the_ack_is_judged_at_the_ack() -> None:
    run = run_of()
    run.start(T0)
    assert not run.offer_report(
        msgspec.structs.replace(opened(), account_id="A2")
    )  # another account's report is not this order's
    assert run.offer_report(opened())
    result = answered(run.on_delivery(DELIVERED, T0 + 0.01))
    assert result.status == "FILLED"


# --- report lost: timeout, then reconciliation --------------------------------------------------------------


def timed_out(command: OpenCommand | CloseCommand = OPEN) -> OrderRun:
    run = run_of(command, timeout_s=1.0)
    delivered(run)
    assert not run.offer_snapshot(snapshot("sync-1"))  # no SYNC asked yet: a snapshot decides nothing
    assert run.on_wake(T0 + 0.5, T) == [Wait(T0 + 1.0)]  # woken early with nothing: wait on
    actions = run.on_wake(T0 + 1.0, T)
    assert one(actions, Log).event == "no result in time"
    result = answered(actions)
    assert (result.status, result.code, result.state) == ("OUTCOME_UNKNOWN", errors.OUTCOME_UNKNOWN, "OUTCOME_UNKNOWN")
    assert "never resent" in result.message
    return run


def synced(run: OrderRun, *positions: Position, expected: float | None = None) -> list[Action]:
    start = run.on_recorded(T0 + 1.1)
    sync = one(start, SendSync)
    assert not run.offer_snapshot(snapshot("stale", *positions))  # only the answer to this SYNC counts
    assert run.on_delivery(DELIVERED, T0 + 1.2) == [Observe("delivery", pytest.approx(0.1)), Wait(T0 + 3.2)]  # type: ignore[arg-type]
    assert run.offer_snapshot(snapshot(sync.sync_id, *positions))
    assert not run.offer_snapshot(snapshot(sync.sync_id))  # the first answer counts
    read = run.on_wake(T0 + 1.3, T)
    assert read == [Observe("sync", pytest.approx(0.1)), ReadVolume(run.command)]  # type: ignore[arg-type]
    return run.on_volume(expected, T0 + 1.4)


def test_an_open_found_in_the_snapshot_is_reconciled_filled() -> None:
    run = timed_out()
    actions = synced(run, position(volume=1.0))
    assert kinds(actions) == ["Log", "ApplyToBook", "Record"]
    result = one(actions, Record).result
    assert (result.status, result.reconciled, result.mt_ticket, result.state) == ("FILLED", True, "7", "RECONCILED")
    assert one(actions, ApplyToBook) == ApplyToBook(OPEN, result)
    assert run.release_lease()
    assert run.on_recorded(T0 + 1.5) == [Done()]  # no caller inbox to answer: it got OUTCOME_UNKNOWN


def test_an_open_missing_from_the_snapshot_did_not_execute() -> None:
    run = timed_out()
    result = one(synced(run, position(action_id=None, ticket="9")), Record).result
    assert (result.status, result.code) == ("REJECTED", errors.RECONCILED_NOT_EXECUTED)


def test_a_close_whose_position_is_gone_is_reconciled_filled() -> None:
    run = timed_out(CLOSE)
    result = one(synced(run, position(ticket="9"), expected=1.0), Record).result
    assert (result.status, result.volume) == ("FILLED", 1.0)


def test_a_close_that_left_less_volume_is_a_partial() -> None:
    run = timed_out(CLOSE)
    result = one(synced(run, position(volume=0.4, action_id=None), expected=1.0), Record).result
    assert (result.status, result.code) == ("PARTIALLY_FILLED", errors.PARTIAL_FILL)


def test_a_late_report_after_the_timeout_reconciles_without_a_sync() -> None:
    run = timed_out()
    assert run.offer_report(opened())  # arrives while the record is written
    actions = run.on_recorded(T0 + 1.5)
    assert kinds(actions) == ["PutLease", "Log", "ApplyToBook", "Record"]
    result = one(actions, Record).result
    assert (result.status, result.reconciled, result.state) == ("FILLED", True, "RECONCILED")


def test_a_late_report_during_the_sync_wait_wins() -> None:
    run = timed_out()
    run.on_recorded(T0 + 1.1)
    run.on_delivery(DELIVERED, T0 + 1.2)
    assert run.offer_report(opened("FAILED", retcodes.NO_MONEY))
    actions = run.on_wake(T0 + 1.3, T)
    result = one(actions, Record).result
    assert (result.status, result.reconciled) == ("REJECTED", True)
    assert run.sync_id is None


def test_no_snapshot_backs_off_then_gives_up_at_the_reconcile_timeout() -> None:
    run = timed_out()
    run.on_recorded(T0 + 1.1)
    pauses = []
    now = T0 + 1.1
    for _ in range(8):
        pauses.append(one(run.on_delivery(None, now), Pause).delay_s)  # no terminal for the SYNC
        now += 1
        assert kinds(run.on_wake(now, T)) == ["SendSync"]
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    run.on_unconfirmed(now)
    actions = run.on_wake(T0 + 1.1 + 300.0, T)
    assert one(actions, Log).event == "order still unreconciled"
    assert actions[-1] == Done()
    assert not any(isinstance(a, Record | Reply) for a in actions)


# --- take-over and leases -----------------------------------------------------------------------------------


def test_a_taken_over_order_is_reconciled_and_its_first_caller_answered() -> None:
    run = OrderRun.taken_over(CLOSE, "_INBOX.first", LIMITS, T0)
    start = run.begin_reconcile(T0)
    assert start == [PutLease("A1"), SendSync("A1", one(start, SendSync).sync_id, 2.0)]
    run.on_delivery(DELIVERED, T0 + 0.1)
    assert run.offer_snapshot(snapshot(one(start, SendSync).sync_id))
    run.on_wake(T0 + 0.2, T)
    result = one(run.on_volume(None, T0 + 0.3), Record).result
    assert result.status == "FILLED"
    assert run.on_recorded(T0 + 0.4) == [Done(), Reply("_INBOX.first", result)]


def test_the_lease_is_put_once_when_slow_and_renewed_only_while_held() -> None:
    run = run_of()
    delivered(run)
    assert run.on_renew() == []
    assert run.on_lease_timer() == [PutLease("A1")]
    assert run.on_lease_timer() == []
    assert run.on_renew() == [PutLease("A1")]
    reported(run, opened())
    assert run.release_lease()
    assert not run.release_lease()


def test_a_fast_order_never_puts_a_lease() -> None:
    run = run_of()
    delivered(run)
    reported(run, opened())
    run.on_recorded(T0 + 0.1)
    assert run.on_lease_timer() == []
    assert not run.release_lease()


# --- lease lost: another replica took the order over ---------------------------------------------------------

LOST = "lease lost: another replica took the order over"


def paused(run: OrderRun) -> None:
    """The first send found no gateway holding the account: the run is in a delivery pause."""
    assert run.start(T0) == [Send(OPEN, 2.0)]
    assert run.on_delivery(None, T0 + 0.001) == [Pause(0.01)]


def test_a_resend_past_lease_after_holds_the_lease_first_and_sends_only_once_held() -> None:
    run = run_of(ttl_s=60.0)
    paused(run)
    assert run.on_wake(T0 + 0.4, T) == [Send(OPEN, 2.0)]  # young: nobody can have taken it over
    assert run.on_delivery(None, T0 + 0.41) == [Pause(0.02)]
    assert run.on_wake(T0 + 0.6, T) == [HoldLease("A1")]
    assert run.leased  # renewed from now on
    assert run.on_lease_held(T0 + 0.61) == [Send(OPEN, 2.0)]
    assert run.on_delivery(DELIVERED, T0 + 0.62)[-1] == Wait(T0 + 10.0)


def test_a_first_send_after_waiting_past_lease_after_holds_the_lease_first() -> None:
    run = run_of()
    assert run.start(T0 + 0.6) == [HoldLease("A1")]  # it waited for its terminal's previous order
    assert run.on_lease_held(T0 + 0.61) == [Send(OPEN, 2.0)]


QUEUED = dataclasses.replace(LIMITS, queued_grace_s=2.0)  # the service gives half a lease


def test_a_first_send_that_waited_within_the_queued_grace_with_no_lease_holds_none() -> None:
    run = OrderRun(OPEN, T0, 10.0, 3.0, QUEUED)
    assert run.start(T0 + 2.4) == [Send(OPEN, 2.0)]  # past lease_after_s, within lease_after_s + the grace
    assert not run.leased


def test_a_first_send_that_waited_past_the_queued_grace_holds_the_lease_first() -> None:
    run = OrderRun(OPEN, T0, 10.0, 3.0, QUEUED)
    assert run.start(T0 + 2.5) == [HoldLease("A1")]
    assert run.on_lease_held(T0 + 2.51) == [Send(OPEN, 2.0)]


def test_a_first_send_after_a_lease_was_put_while_it_waited_holds_it_first() -> None:
    run = OrderRun(OPEN, T0, 10.0, 3.0, QUEUED)
    assert run.on_lease_timer() == [PutLease("A1")]  # it waited long: its lease was put meanwhile
    assert run.start(T0 + 0.6) == [HoldLease("A1")]


def test_the_queued_grace_is_for_the_first_send_only() -> None:
    run = OrderRun(OPEN, T0, 10.0, 60.0, QUEUED)
    paused(run)
    assert run.on_wake(T0 + 0.6, T) == [HoldLease("A1")]  # a resend past lease_after_s holds the lease first


def test_lease_lost_while_holding_it_in_a_delivery_pause_never_sends_nor_records() -> None:
    run = run_of(ttl_s=60.0)
    paused(run)
    assert run.on_wake(T0 + 0.6, T) == [HoldLease("A1")]
    actions = run.on_lease_lost(T0 + 0.61)
    assert kinds(actions) == ["Log", "Answer", "Done"]
    assert (one(actions, Log).level, one(actions, Log).event) == ("warning", LOST)
    assert one(actions, Log).fields == {"action": "a-1", "account": "A1"}
    answer = one(actions, Answer)
    assert not answer.handed_over  # no inbox (an item of a batch close): answered here
    assert (answer.result.status, answer.result.code) == ("IN_FLIGHT", errors.IN_FLIGHT)
    assert "hb.exec.result.A1" in answer.result.message
    assert run.done
    assert not run.leased
    assert not run.offer_report(opened())
    assert run.on_lease_lost(T0 + 0.7) == []


def test_lease_lost_during_a_delivery_pause_leaves_the_caller_to_the_new_owner() -> None:
    run = run_of(ttl_s=60.0, reply_to="_INBOX.first")
    paused(run)
    actions = run.on_lease_lost(T0 + 0.6)
    assert not any(isinstance(a, Send | Record) for a in actions)
    assert one(actions, Answer).handed_over  # the new owner answers _INBOX.first with the reconciled result
    assert actions[-1] == Done()


def test_lease_lost_awaiting_the_report_stops_without_recording() -> None:
    run = run_of(reply_to="_INBOX.first")
    delivered(run)  # sent: the new owner reconciles it from a snapshot
    actions = run.on_lease_lost(T0 + 0.7)
    assert kinds(actions) == ["Log", "Answer", "Done"]
    assert one(actions, Answer).handed_over
    assert not run.offer_report(opened())  # a report now is the new owner's to judge


def test_lease_lost_while_reconciling_stops() -> None:
    run = timed_out()  # answered OUTCOME_UNKNOWN
    sync = one(run.on_recorded(T0 + 1.1), SendSync)
    actions = run.on_lease_lost(T0 + 1.2)
    assert actions == [Log("warning", LOST, {"action": "a-1", "account": "A1"}), Done()]
    assert not run.offer_snapshot(snapshot(sync.sync_id))
    assert run.sync_id is None


def test_a_taken_over_run_that_loses_its_lease_neither_records_nor_replies() -> None:
    run = OrderRun.taken_over(CLOSE, "_INBOX.first", LIMITS, T0)
    run.begin_reconcile(T0)
    assert kinds(run.on_lease_lost(T0 + 0.1)) == ["Log", "Done"]


def test_a_run_that_lost_its_lease_renews_nothing() -> None:
    run = run_of()
    delivered(run)
    assert run.on_lease_timer() == [PutLease("A1")]
    assert run.on_renew() == [PutLease("A1")]
    run.on_lease_lost(T0 + 0.7)
    assert run.on_renew() == []
    assert run.on_lease_timer() == []
