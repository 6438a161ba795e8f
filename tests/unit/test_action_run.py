"""One action's run, driven event by event with no server: every path from the first order request to the
final state (fills, policies, compensation, an unavailable executor, unknown outcomes, exits, close-all, a
takeover, the deadline, the lease), and the records and states it asks to be written and published."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from hedgebridge.coordinator import actions
from hedgebridge.coordinator.run import (
    Action,
    ActionRun,
    Answered,
    Ask,
    AskFailed,
    Event,
    Finished,
    NoExecutor,
    NoReply,
    Note,
    Publish,
    Record,
    Reported,
    RepublishIfMissing,
    Respond,
    Settings,
    Unreadable,
)
from hedgebridge.protocol import (
    ActionLeg,
    ActionRequest,
    ActionState,
    CloseOrder,
    OpenOrder,
    OrderResult,
    Position,
    errors,
)

T0 = 1_795_000_000.0  # epoch seconds
SETTINGS = Settings(owner="co-1", lease_s=3.0, leg_timeout_ms=2_000)


def dt(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def hedge(policy: str = "COMPENSATE", action_id: str = "h1") -> ActionRequest:
    return ActionRequest(
        action_id=action_id,
        kind="HEDGE_ENTRY",
        policy=policy,  # type: ignore[arg-type]
        user_id="u1",
        legs=[
            ActionLeg(account_id="A", symbol="EURUSD", side="BUY", volume=1.0),
            ActionLeg(account_id="B", symbol="EURUSD", side="SELL", volume=1.0),
        ],
    )


def filled(order_id: str, ticket: str = "100", volume: float = 1.0) -> OrderResult:
    status = "FILLED" if volume == 1.0 else "PARTIALLY_FILLED"
    return OrderResult(
        status=status,  # type: ignore[arg-type]
        action_id=order_id,
        mt_ticket=ticket,
        position_id=f"p-{ticket}",
        price=1.1,
        volume=volume,
        requested_volume=1.0,
    )


def rejected(order_id: str, code: str = errors.ORDER_REJECTED) -> OrderResult:
    return OrderResult(status="REJECTED", action_id=order_id, code=code, message="Request rejected")


def status(order_id: str, name: str) -> OrderResult:
    return OrderResult(status=name, action_id=order_id, code=name)  # type: ignore[arg-type]


class Driver:
    """What the service does with a run: perform nothing, keep every action, follow the records."""

    def __init__(self, run: ActionRun, now: float = T0) -> None:
        self.run = run
        self.now = now
        self.log: list[Action] = []
        self.recorded: list[ActionState] = [run.state]

    def _keep(self, out: list[Action]) -> list[Action]:
        self.log += out
        self.recorded += [a.record.state for a in out if isinstance(a, Record)]
        return out

    def begin(self) -> list[Action]:
        return self._keep(self.run.begin(self.now))

    def feed(self, *events: Event, after: float = 0.1) -> list[Action]:
        self.now += after
        return self._keep(self.run.feed(events, self.now))

    def tick(self) -> list[Action]:
        self.now = self.run.wake_at(self.now)
        return self._keep(self.run.tick(self.now))

    @property
    def published(self) -> list[ActionState]:
        return [a.state for a in self.log if isinstance(a, Publish)]

    def notes(self) -> list[str]:
        return [a.event for a in self.log if isinstance(a, Note)]


def asks(out: Iterable[Action]) -> list[str]:
    return [a.order.action_id or "" for a in out if isinstance(a, Ask)]


def started(request: ActionRequest, *, deadline_s: float = 30.0) -> Driver:
    state = actions.plan_entry(request, request.action_id or "", dt(T0))
    run = ActionRun(request=request, state=state, deadline=T0 + deadline_s, created_at=dt(T0), settings=SETTINGS)
    return Driver(run)


def assert_seqs_increase(driver: Driver) -> None:
    published = [s.seq for s in driver.published]
    assert published == sorted(set(published))
    assert published[0] == 2  # seq 1 (ACCEPTED) is published by the service when it accepts the action
    changed = [s.seq for s in driver.recorded]
    assert changed == sorted(changed)  # lease renewals write the same seq again, never a lower one


# --- hedge entries -------------------------------------------------------------------------------------------


def test_both_legs_fill_and_the_action_completes() -> None:
    d = started(hedge())
    out = d.begin()
    assert isinstance(out[0], Record)
    assert (out[0].record.state.state, out[0].record.state.seq, out[0].record.owner) == ("RUNNING", 2, "co-1")
    assert isinstance(out[1], Publish)
    assert asks(out) == ["h1-E0", "h1-E1"]
    orders = [a.order for a in out if isinstance(a, Ask)]
    assert all(isinstance(o, OpenOrder) for o in orders)
    assert [a.timeout_s for a in out if isinstance(a, Ask)] == [SETTINGS.ask_timeout_s] * 2
    out = d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", filled("h1-E1", "200")))
    final = d.run.state
    assert (final.state, final.code) == ("COMPLETED", None)
    assert [(leg.status, leg.mt_ticket) for leg in final.legs] == [("FILLED", "100"), ("FILLED", "200")]
    assert [type(a) for a in out if not isinstance(a, Record | Publish | Note)] == [Respond, Finished]
    assert d.run.done
    assert d.run.answered
    assert d.notes()[-1] == "action done"
    assert [s.state for s in d.published] == ["RUNNING", "RUNNING", "RUNNING", "COMPLETED"]
    assert_seqs_increase(d)


def test_a_partial_fill_completes_flagged() -> None:
    d = started(hedge())
    d.begin()
    d.feed(Answered("h1-E0", filled("h1-E0", volume=0.5)), Answered("h1-E1", filled("h1-E1", "200")))
    assert (d.run.state.state, d.run.state.code) == ("COMPLETED", errors.PARTIAL_FILL)


def test_a_rejected_leg_is_compensated_under_compensate() -> None:
    d = started(hedge("COMPENSATE"))
    d.begin()
    out = d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", rejected("h1-E1")))
    assert d.run.state.state == "COMPENSATING"
    assert asks(out) == ["h1-C0"]
    (close,) = [a.order for a in out if isinstance(a, Ask)]
    assert isinstance(close, CloseOrder)
    assert (close.account_id, close.mt_ticket) == ("A", "100")
    d.feed(Answered("h1-C0", filled("h1-C0", "100")))
    assert (d.run.state.state, d.run.state.code) == ("COMPENSATED", errors.LEG_FAILED)
    assert d.run.done
    assert_seqs_increase(d)


def test_a_rejected_leg_is_kept_under_keep() -> None:
    d = started(hedge("KEEP"))
    d.begin()
    out = d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", rejected("h1-E1")))
    assert (d.run.state.state, d.run.state.code) == ("PARTIAL", errors.LEG_FAILED)
    assert asks(out) == []
    assert [leg.role for leg in d.run.state.legs] == ["ENTRY", "ENTRY"]
    assert_seqs_increase(d)


def test_a_failed_compensation_fails_the_action() -> None:
    d = started(hedge("COMPENSATE"))
    d.begin()
    d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", rejected("h1-E1")))
    d.feed(Answered("h1-C0", rejected("h1-C0")))
    assert (d.run.state.state, d.run.state.code) == ("FAILED", errors.COMPENSATION_FAILED)
    assert_seqs_increase(d)


def test_a_compensation_that_finds_the_position_closed_is_done() -> None:
    d = started(hedge("COMPENSATE"))
    d.begin()
    d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", rejected("h1-E1")))
    d.feed(Answered("h1-C0", rejected("h1-C0", errors.ALREADY_CLOSED)))
    assert d.run.state.state == "COMPENSATED"


# --- asking the executor -------------------------------------------------------------------------------------


def test_no_executor_keeps_asking_until_the_leg_timeout_then_the_leg_is_not_sent() -> None:
    d = started(hedge("COMPENSATE"))
    d.begin()
    out = d.feed(NoExecutor("h1-E0"), NoExecutor("h1-E1"))
    assert asks(out) == []  # backing off
    assert d.run.wake_at(d.now) == pytest.approx(d.now + 0.05)
    assert asks(d.tick()) == ["h1-E0", "h1-E1"]
    d.feed(NoExecutor("h1-E0"), NoExecutor("h1-E1"))
    assert asks(d.tick()) == ["h1-E0", "h1-E1"]
    assert d.run.wake_at(d.now) == pytest.approx(d.now + 0.1)  # the pause doubles
    d.feed(NoExecutor("h1-E0"), NoExecutor("h1-E1"), after=2.5)  # past the 2 s leg timeout
    state = d.run.state
    assert (state.state, state.code) == ("FAILED", errors.LEG_FAILED)
    assert [(leg.status, leg.code) for leg in state.legs] == [("EXPIRED", errors.EXECUTOR_UNAVAILABLE)] * 2
    assert d.notes().count("no executor answered; leg not sent") == 2
    assert_seqs_increase(d)


def test_no_executor_after_a_timeout_never_gives_up_the_leg() -> None:
    d = started(hedge())
    d.begin()
    out = d.feed(NoReply("h1-E0"))
    assert asks(out) == ["h1-E0"]  # asked again at once
    assert "executor did not answer in time; asking again" in d.notes()
    d.feed(NoExecutor("h1-E0"), after=5.0)  # the order may have been received: keep asking
    assert d.run.state.legs[0].status == "RUNNING"
    assert asks(d.tick()) == ["h1-E0"]


def test_failed_and_unreadable_requests_are_asked_again() -> None:
    d = started(hedge())
    d.begin()
    d.feed(AskFailed("h1-E0", "ConnectionClosedError: closed"), Unreadable("h1-E1", "bad bytes"))
    assert d.notes() == ["order request failed; asking again", "unreadable executor answer"]
    assert asks(d.tick()) == ["h1-E0"]  # after 0.05 s
    d.now += 1.0
    assert asks(d.run.tick(d.now)) == ["h1-E1"]  # after 1 s
    d.feed(NoExecutor("h1-E0"), after=5.0)  # a failed request may have left: never "not sent"
    assert d.run.state.legs[0].status == "RUNNING"


def test_in_flight_is_asked_again_and_changes_nothing() -> None:
    d = started(hedge())
    d.begin()
    out = d.feed(Answered("h1-E0", status("h1-E0", "IN_FLIGHT")))
    assert [a for a in out if isinstance(a, Publish)] == []
    assert d.run.state.legs[0].status == "RUNNING"
    assert asks(d.tick()) == ["h1-E0"]


def test_an_answer_for_another_order_id_is_taken_as_the_legs() -> None:
    d = started(hedge())
    d.begin()
    d.feed(Answered("h1-E0", filled("other", "100")), Answered("h1-E1", filled("h1-E1", "200")))
    assert d.run.state.state == "COMPLETED"


def test_an_unknown_outcome_leaves_the_action_unsettled_until_reconciled() -> None:
    d = started(hedge())
    d.begin()
    d.feed(Answered("h1-E0", status("h1-E0", "OUTCOME_UNKNOWN")), Answered("h1-E1", filled("h1-E1", "200")))
    assert (d.run.state.state, d.run.state.code) == ("UNSETTLED", errors.OUTCOME_UNKNOWN)
    assert d.run.state.legs[0].status == "OUTCOME_UNKNOWN"
    assert d.run.wake_at(d.now) == pytest.approx(d.now + 1.0)
    assert asks(d.tick()) == ["h1-E0"]  # asked again: the recorded result comes once reconciled
    published = len(d.published)
    d.feed(Answered("h1-E0", status("h1-E0", "OUTCOME_UNKNOWN")))
    assert len(d.published) == published  # reported once
    assert d.run.wake_at(d.now) == pytest.approx(d.now + 2.0)
    assert d.notes().count("leg outcome unknown; waiting for reconciliation") == 1
    reconciled = filled("h1-E0", "100")
    d.feed(Reported(reconciled))
    assert (d.run.state.state, d.run.state.legs[0].mt_ticket) == ("COMPLETED", "100")
    assert [s.state for s in d.published][-2:] == ["UNSETTLED", "COMPLETED"]
    assert asks(d.feed(Answered("h1-E0", filled("h1-E0", "100")))) == []  # a late answer changes nothing
    assert d.run.state.state == "COMPLETED"
    assert_seqs_increase(d)


# --- exits and close-all -------------------------------------------------------------------------------------


def completed_hedge() -> ActionState:
    d = started(hedge())
    d.begin()
    d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", filled("h1-E1", "200")))
    return d.run.state


def test_an_exit_closes_every_open_leg_of_its_target() -> None:
    request = ActionRequest(action_id="x1", kind="EXIT", target_action_id="h1")
    state = actions.plan_exit(request, "x1", completed_hedge(), dt(T0))
    d = Driver(ActionRun(request=request, state=state, deadline=T0 + 30, created_at=dt(T0), settings=SETTINGS))
    out = d.begin()
    closes = [a.order for a in out if isinstance(a, Ask)]
    assert [(o.action_id, o.mt_ticket) for o in closes if isinstance(o, CloseOrder)] == [
        ("x1-X0", "100"),
        ("x1-X1", "200"),
    ]
    d.feed(Answered("x1-X0", filled("x1-X0", "100")), Answered("x1-X1", rejected("x1-X1")))
    assert (d.run.state.state, d.run.state.code) == ("PARTIAL", errors.LEG_FAILED)  # closes are not compensated
    assert_seqs_increase(d)


def position(ticket: str) -> Position:
    return Position(
        mt_ticket=ticket, symbol="EURUSD", side="BUY", volume=1.0, open_price=1.1, current_price=1.1, profit=0.0
    )


def test_close_all_closes_every_position_and_already_closed_counts_as_closed() -> None:
    request = ActionRequest(action_id="c1", kind="CLOSE_ALL", account_ids=["A", "B"])
    state = actions.plan_close_all(request, "c1", {"A": [position("1"), position("2")], "B": []}, dt(T0))
    d = Driver(ActionRun(request=request, state=state, deadline=T0 + 30, created_at=dt(T0), settings=SETTINGS))
    assert asks(d.begin()) == ["c1-X0", "c1-X1"]
    d.feed(Answered("c1-X0", filled("c1-X0", "1")), Answered("c1-X1", rejected("c1-X1", errors.ALREADY_CLOSED)))
    assert (d.run.state.state, d.run.state.code) == ("COMPLETED", None)


def test_close_all_with_nothing_open_completes_at_once() -> None:
    request = ActionRequest(action_id="c2", kind="CLOSE_ALL", account_ids=["A"])
    state = actions.plan_close_all(request, "c2", {"A": []}, dt(T0))
    d = Driver(ActionRun(request=request, state=state, deadline=T0 + 30, created_at=dt(T0), settings=SETTINGS))
    out = d.begin()
    assert asks(out) == []
    assert (d.run.state.state, d.run.state.message) == ("COMPLETED", "nothing to close")
    assert [s.state for s in d.published] == ["RUNNING", "COMPLETED"]


# --- takeover, deadline, lease -------------------------------------------------------------------------------


def half_done() -> tuple[ActionRequest, actions.ActionRecord]:
    d = started(hedge())
    d.begin()
    d.feed(Answered("h1-E0", filled("h1-E0", "100")))
    records = [a.record for a in d.log if isinstance(a, Record)]
    return d.run.request, records[-1]


def test_a_lapsed_action_is_taken_over_and_resumed_where_it_stood() -> None:
    _, record = half_done()
    assert record.owner == "co-1"
    assert actions.take_over(record, "co-2", record.lease_until - 0.1, 3.0) is None  # the lease still holds
    mine = actions.take_over(record, "co-2", record.lease_until + 1, 3.0)
    assert mine is not None
    assert (mine.owner, mine.lease_until, mine.state) == ("co-2", record.lease_until + 4, record.state)
    settings = Settings(owner="co-2", lease_s=3.0, leg_timeout_ms=2_000)
    d = Driver(ActionRun.resume(mine, settings), now=record.lease_until + 1)
    out = d.begin()
    assert out[0] == RepublishIfMissing(record.state)
    assert [a for a in out if isinstance(a, Record)] == []  # no start again: it is RUNNING already
    assert asks(out) == ["h1-E1"]  # the filled leg is not asked for again
    d.feed(NoExecutor("h1-E1"), after=10.0)  # the dead owner may have sent it: never "not sent"
    assert d.run.state.legs[1].status == "RUNNING"
    assert not d.run.answered  # a resumed action has no caller waiting: no deadline of its own
    d.tick()
    d.feed(Answered("h1-E1", filled("h1-E1", "200")))
    assert d.run.state.state == "COMPLETED"
    assert {a.record.owner for a in d.log if isinstance(a, Record)} == {"co-2"}
    seqs = [s.seq for s in d.published]
    assert seqs == sorted(set(seqs))
    assert seqs[0] == record.state.seq + 1


def test_a_final_action_is_never_taken_over() -> None:
    d = started(hedge())
    d.begin()
    d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", filled("h1-E1", "200")))
    record = [a.record for a in d.log if isinstance(a, Record)][-1]
    assert actions.take_over(record, "co-2", record.lease_until + 100, 3.0) is None


def test_the_deadline_answers_unsettled_and_the_legs_go_on() -> None:
    d = started(hedge(), deadline_s=1.0)
    d.begin()
    assert d.run.wake_at(d.now) == T0 + 1.0
    out = d.tick()
    assert (d.run.state.state, d.run.state.code) == ("UNSETTLED", errors.IN_FLIGHT)
    assert Respond() in out
    assert d.run.answered
    assert not d.run.done
    assert "action not settled in time" in d.notes()
    d.feed(Answered("h1-E0", filled("h1-E0", "100")), Answered("h1-E1", filled("h1-E1", "200")))
    assert d.run.state.state == "COMPLETED"
    assert_seqs_increase(d)


def test_the_lease_is_renewed_without_a_new_state() -> None:
    d = started(hedge())
    d.begin()
    seq = d.run.state.seq
    assert d.tick() == []  # a third of the lease later, two thirds of it are left
    out = d.tick()  # then less: renewed
    records = [a for a in out if isinstance(a, Record)]
    assert len(records) == 1
    assert records[0].record.state.seq == seq
    assert records[0].record.lease_until == pytest.approx(d.now + SETTINGS.lease_s)
    assert [a for a in out if isinstance(a, Publish)] == []


# --- duplicates ----------------------------------------------------------------------------------------------


def test_a_repeated_action_id_for_another_request_is_a_mismatch() -> None:
    first = hedge()
    other = hedge("KEEP")
    answer = actions.mismatch(first, other, "h1", dt(T0))
    assert answer is not None
    assert (answer.state, answer.code, answer.action_id) == ("REJECTED", errors.DUPLICATE_MISMATCH, "h1")
    same_but_timeout = ActionRequest(**{**{f: getattr(first, f) for f in first.__struct_fields__}, "timeout_ms": 5})
    assert actions.mismatch(first, same_but_timeout, "h1", dt(T0)) is None
