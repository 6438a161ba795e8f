"""The coordinator's action state machine: validation, planning, every transition and every policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from hedgebridge.coordinator import actions
from hedgebridge.coordinator.errors import ActionInvalid
from hedgebridge.protocol import (
    ActionLeg,
    ActionRequest,
    ActionState,
    CloseOrder,
    OpenOrder,
    OrderResult,
    Position,
    errors,
    pack,
    unpack,
)

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def hedge(policy: str = "COMPENSATE", n: int = 2) -> ActionRequest:
    sides = ["BUY", "SELL"]
    return ActionRequest(
        action_id="h1",
        kind="HEDGE_ENTRY",
        policy=policy,  # type: ignore[arg-type]
        user_id="u1",
        legs=[ActionLeg(account_id=f"A{i}", symbol="EURUSD", side=sides[i % 2], volume=1.0) for i in range(n)],  # type: ignore[arg-type]
    )


def running(policy: str = "COMPENSATE", n: int = 2) -> ActionState:
    return actions.start(actions.plan_entry(hedge(policy, n), "h1", at(0)), at(1))


def filled(leg: str, ticket: str = "100", volume: float = 1.0, requested: float = 1.0) -> OrderResult:
    status = "FILLED" if volume == requested else "PARTIALLY_FILLED"
    return OrderResult(
        status=status,  # type: ignore[arg-type]
        action_id=leg,
        mt_ticket=ticket,
        position_id=f"p-{leg}",
        price=1.1,
        volume=volume,
        requested_volume=requested,
    )


def failed(leg: str, status: str = "REJECTED", code: str = errors.ORDER_REJECTED) -> OrderResult:
    return OrderResult(status=status, action_id=leg, code=code, message="Request rejected", retcode=10006)  # type: ignore[arg-type]


def unknown(leg: str) -> OrderResult:
    return OrderResult(status="OUTCOME_UNKNOWN", action_id=leg, code=errors.OUTCOME_UNKNOWN)


def feed(state: ActionState, *results: OrderResult) -> ActionState:
    """Apply results one by one, settling after each, as the service does."""
    for i, result in enumerate(results):
        changed = actions.apply(state, result, at(10 + i))
        if changed is not None:
            state = changed
        settled = actions.settle(state, at(10 + i))
        if settled is not None:
            state = settled
    return state


# --- validation ----------------------------------------------------------------------------------------------


def test_a_valid_hedge_passes() -> None:
    actions.validate(hedge())


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            ActionRequest(
                kind="HEDGE_ENTRY",
                legs=[
                    ActionLeg(account_id="A", symbol="EURUSD", side="BUY", volume=1),
                    ActionLeg(account_id="A", symbol="EURUSD", side="BUY", volume=2),
                ],
            ),
            "legs[1]",
        ),
        (
            ActionRequest(kind="HEDGE_ENTRY", legs=[ActionLeg(account_id="A B", symbol="X", side="BUY", volume=1)]),
            "legs[0].accountId",
        ),
        (
            ActionRequest(kind="HEDGE_ENTRY", legs=[ActionLeg(account_id="A", symbol="EUR USD", side="BUY", volume=1)]),
            "legs[0].symbol",
        ),
        (
            ActionRequest(kind="HEDGE_ENTRY", legs=[ActionLeg(account_id="A", symbol="X", side="BUY", volume=0)]),
            "legs[0].volume",
        ),
        (
            ActionRequest(kind="HEDGE_ENTRY", legs=[ActionLeg(account_id="A", symbol="X", side="BUY", volume=2e6)]),
            "legs[0].volume",
        ),
        (
            ActionRequest(
                kind="HEDGE_ENTRY",
                legs=[ActionLeg(account_id="A", symbol="X", side="BUY", volume=1)],
                account_ids=["A"],
            ),
            "accountIds",
        ),
        (
            ActionRequest(
                kind="HEDGE_ENTRY",
                legs=[ActionLeg(account_id="A", symbol="X", side="BUY", volume=1)],
                target_action_id="t",
            ),
            "targetActionId",
        ),
        (ActionRequest(kind="EXIT", action_id="e1", target_action_id="e1"), "targetActionId"),
        (ActionRequest(kind="EXIT", target_action_id="t", account_ids=["A"]), "accountIds"),
        (ActionRequest(kind="CLOSE_ALL", account_ids=["A", "A"]), "accountIds[1]"),
        (ActionRequest(kind="CLOSE_ALL", account_ids=["A", "a.b"]), "accountIds[1]"),
        (ActionRequest(kind="CLOSE_ALL", account_ids=["A"], action_id="bad id"), "actionId"),
    ],
)
def test_invalid_requests_name_the_field(request_: ActionRequest, field: str) -> None:
    with pytest.raises(ActionInvalid) as caught:
        actions.validate(request_)
    assert caught.value.field == field
    assert caught.value.code == errors.ACTION_INVALID


def test_buy_and_sell_of_one_symbol_on_one_account_are_two_legs() -> None:
    actions.validate(
        ActionRequest(
            kind="HEDGE_ENTRY",
            legs=[
                ActionLeg(account_id="A", symbol="EURUSD", side="BUY", volume=1),
                ActionLeg(account_id="A", symbol="EURUSD", side="SELL", volume=1),
            ],
        )
    )


def test_decoding_refuses_kinds_without_their_fields() -> None:
    from hedgebridge.protocol import ProtocolError

    for raw in (
        {"type": "ACTION", "kind": "HEDGE_ENTRY"},
        {"type": "ACTION", "kind": "EXIT"},
        {"type": "ACTION", "kind": "CLOSE_ALL"},
    ):
        with pytest.raises(ProtocolError):
            unpack(msgspec.msgpack.encode(raw), ActionRequest)


# --- planning --------------------------------------------------------------------------------------------


def test_plan_entry_names_the_orders() -> None:
    state = actions.plan_entry(hedge(), "h1", at(0))
    assert (state.state, state.seq, state.account_ids) == ("ACCEPTED", 1, ["A0", "A1"])
    assert [leg.order_action_id for leg in state.legs] == ["h1-E0", "h1-E1"]
    assert [(leg.role, leg.status, leg.side) for leg in state.legs] == [
        ("ENTRY", "PENDING", "BUY"),
        ("ENTRY", "PENDING", "SELL"),
    ]


def test_start_marks_legs_running_and_counts_seq() -> None:
    state = running()
    assert (state.state, state.seq, state.timestamp) == ("RUNNING", 2, at(1))
    assert {leg.status for leg in state.legs} == {"RUNNING"}
    with pytest.raises(ValueError, match="cannot start"):
        actions.start(state, at(2))


def test_order_for_an_entry_leg_and_a_close_leg() -> None:
    state = running()
    order = actions.order_for(state, state.legs[0], timeout_ms=5000, ttl_ms=100)
    assert isinstance(order, OpenOrder)
    assert (order.action_id, order.account_id, order.side, order.volume, order.user_id) == (
        "h1-E0",
        "A0",
        "BUY",
        1.0,
        "u1",
    )
    assert (order.timeout_ms, order.ttl_ms) == (5000, 100)
    done = feed(state, filled("h1-E0", "100"), filled("h1-E1", "200"))
    exit_state = actions.plan_exit(ActionRequest(kind="EXIT", target_action_id="h1"), "x1", done, at(20))
    close = actions.order_for(exit_state, exit_state.legs[1])
    assert isinstance(close, CloseOrder)
    assert (close.action_id, close.account_id, close.mt_ticket) == ("x1-X1", "A1", "200")


def test_parent_action_id() -> None:
    assert actions.parent_action_id("h-1-E0") == "h-1"
    assert actions.parent_action_id("h1-C12") == "h1"
    assert actions.parent_action_id("h1-X") is None
    assert actions.parent_action_id("h1-Z1") is None
    assert actions.parent_action_id("plain") is None
    assert actions.parent_action_id("-E1") is None


# --- transitions: every leg filled ---------------------------------------------------------------------------


def test_all_filled_completes_with_tickets() -> None:
    state = running()
    state = feed(state, filled("h1-E0", "100"))
    assert state.state == "RUNNING"
    assert state.seq == 3
    state = feed(state, filled("h1-E1", "200"))
    assert (state.state, state.code) == ("COMPLETED", None)
    assert state.seq == 5  # leg result, leg result, settle
    assert [(leg.status, leg.mt_ticket, leg.filled_volume) for leg in state.legs] == [
        ("FILLED", "100", 1.0),
        ("FILLED", "200", 1.0),
    ]


def test_partial_fill_counts_as_filled_and_is_flagged() -> None:
    state = feed(running(), filled("h1-E0", "100", volume=0.4), filled("h1-E1", "200"))
    assert (state.state, state.code) == ("COMPLETED", errors.PARTIAL_FILL)
    assert state.legs[0].status == "PARTIALLY_FILLED"
    assert state.legs[0].filled_volume == 0.4
    assert "leg 0" in state.message


def test_results_are_final_once_given() -> None:
    state = feed(running(), filled("h1-E0", "100"))
    assert actions.apply(state, failed("h1-E0"), at(5)) is None
    assert actions.apply(state, filled("h1-E0", "100"), at(5)) is None  # a repeated answer changes nothing
    assert actions.apply(state, filled("other-E0"), at(5)) is None
    assert actions.apply(state, OrderResult(status="IN_FLIGHT", action_id="h1-E1"), at(5)) is None
    done = feed(state, filled("h1-E1", "200"))
    assert actions.apply(done, failed("h1-E1"), at(30)) is None
    assert actions.settle(done, at(30)) is None


# --- transitions: no leg filled --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["REJECTED", "EXPIRED", "INVALID"])
def test_nothing_filled_fails(status: str) -> None:
    state = feed(running(), failed("h1-E0", status), failed("h1-E1", status))
    assert (state.state, state.code) == ("FAILED", errors.LEG_FAILED)
    assert not any(leg.role == "COMPENSATION" for leg in state.legs)


# --- transitions: some legs failed -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["REJECTED", "EXPIRED", "INVALID"])
def test_compensate_closes_the_filled_legs(status: str) -> None:
    state = feed(running("COMPENSATE"), filled("h1-E0", "100"), failed("h1-E1", status))
    assert (state.state, state.code) == ("COMPENSATING", errors.LEG_FAILED)
    compensation = [leg for leg in state.legs if leg.role == "COMPENSATION"]
    assert [(leg.index, leg.order_action_id, leg.mt_ticket, leg.status) for leg in compensation] == [
        (0, "h1-C0", "100", "RUNNING")
    ]
    assert actions.active_legs(state) == compensation
    close = actions.order_for(state, compensation[0])
    assert isinstance(close, CloseOrder)
    assert close.mt_ticket == "100"
    state = feed(state, filled("h1-C0", "100"))
    assert (state.state, state.code) == ("COMPENSATED", errors.LEG_FAILED)
    assert actions.is_final(state)


def test_compensation_of_a_position_already_gone_counts_as_closed() -> None:
    state = feed(running(), filled("h1-E0", "100"), failed("h1-E1"))
    state = feed(state, failed("h1-C0", "REJECTED", errors.ALREADY_CLOSED))
    assert state.state == "COMPENSATED"


@pytest.mark.parametrize(
    "result",
    [
        failed("h1-C0", "REJECTED", errors.ORDER_REJECTED),
        failed("h1-C0", "EXPIRED", errors.EXPIRED),
        filled("h1-C0", "100", volume=0.5),  # closed in part: still exposed
    ],
)
def test_a_failed_compensation_fails_the_action(result: OrderResult) -> None:
    state = feed(running(), filled("h1-E0", "100"), failed("h1-E1"))
    state = feed(state, result)
    assert (state.state, state.code) == ("FAILED", errors.COMPENSATION_FAILED)


def test_keep_leaves_the_filled_legs_open() -> None:
    state = feed(running("KEEP"), filled("h1-E0", "100"), failed("h1-E1"))
    assert (state.state, state.code) == ("PARTIAL", errors.LEG_FAILED)
    assert not any(leg.role == "COMPENSATION" for leg in state.legs)
    assert [leg.mt_ticket for leg in actions.open_legs(state)] == ["100"]


def test_a_filled_leg_without_a_ticket_cannot_be_compensated() -> None:
    no_ticket = OrderResult(status="FILLED", action_id="h1-E0", volume=1.0)
    state = feed(running(), no_ticket, failed("h1-E1"))
    assert (state.state, state.code) == ("FAILED", errors.COMPENSATION_FAILED)


# --- transitions: outcome unknown ------------------------------------------------------------------------------


def test_unknown_outcome_waits_for_reconciliation_then_continues() -> None:
    state = feed(running(), unknown("h1-E0"))
    assert state.state == "RUNNING"  # the other leg still runs
    state = feed(state, filled("h1-E1", "200"))
    assert (state.state, state.code) == ("UNSETTLED", errors.OUTCOME_UNKNOWN)
    assert actions.active_legs(state) == [state.legs[0]]
    assert actions.settle(state, at(40)) is None
    assert actions.apply(state, unknown("h1-E0"), at(40)) is None
    reconciled = msgspec.structs.replace(filled("h1-E0", "100"), reconciled=True)
    state = feed(state, reconciled)
    assert state.state == "COMPLETED"


def test_unknown_outcome_reconciled_as_not_executed_applies_the_policy() -> None:
    state = feed(running("COMPENSATE"), unknown("h1-E0"), filled("h1-E1", "200"))
    not_executed = OrderResult(
        status="REJECTED", action_id="h1-E0", code=errors.RECONCILED_NOT_EXECUTED, reconciled=True
    )
    state = feed(state, not_executed)
    assert state.state == "COMPENSATING"
    assert [leg.order_action_id for leg in actions.active_legs(state)] == ["h1-C1"]


def test_unknown_compensation_is_unsettled_until_reconciled() -> None:
    state = feed(running(), filled("h1-E0", "100"), failed("h1-E1"))
    state = feed(state, unknown("h1-C0"))
    assert state.state == "UNSETTLED"
    state = feed(state, msgspec.structs.replace(filled("h1-C0", "100"), reconciled=True))
    assert state.state == "COMPENSATED"


def test_the_action_timeout_makes_a_running_action_unsettled() -> None:
    state = running()
    late = actions.timed_out(state, at(30))
    assert late is not None
    assert (late.state, late.seq) == ("UNSETTLED", state.seq + 1)
    assert actions.timed_out(late, at(31)) is None
    done = feed(late, filled("h1-E0", "100"), filled("h1-E1", "200"))
    assert done.state == "COMPLETED"
    assert actions.timed_out(done, at(60)) is None


def test_seq_grows_by_one_with_every_change() -> None:
    seqs = [running().seq]
    state = running()
    for result in (filled("h1-E0", "100"), failed("h1-E1"), filled("h1-C0", "100")):
        changed = actions.apply(state, result, at(5))
        assert changed is not None
        state = changed
        seqs.append(state.seq)
        settled = actions.settle(state, at(5))
        if settled is not None:
            state = settled
            seqs.append(state.seq)
    assert seqs == list(range(2, 2 + len(seqs)))
    assert state.state == "COMPENSATED"


# --- EXIT ----------------------------------------------------------------------------------------------------


def test_exit_closes_every_open_leg() -> None:
    target = feed(running(), filled("h1-E0", "100"), filled("h1-E1", "200", volume=0.5))
    state = actions.plan_exit(ActionRequest(kind="EXIT", target_action_id="h1"), "x1", target, at(20))
    assert [(leg.role, leg.order_action_id, leg.mt_ticket, leg.volume) for leg in state.legs] == [
        ("EXIT", "x1-X0", "100", 1.0),
        ("EXIT", "x1-X1", "200", 0.5),
    ]
    state = feed(
        actions.start(state, at(21)), filled("x1-X0", "100"), failed("x1-X1", "REJECTED", errors.ALREADY_CLOSED)
    )
    assert state.state == "COMPLETED"


def test_exit_with_a_failed_close_is_partial_whatever_the_policy() -> None:
    target = feed(running(), filled("h1-E0", "100"), filled("h1-E1", "200"))
    request = ActionRequest(kind="EXIT", target_action_id="h1", policy="COMPENSATE")
    state = actions.start(actions.plan_exit(request, "x1", target, at(20)), at(21))
    state = feed(state, filled("x1-X0", "100"), failed("x1-X1"))
    assert (state.state, state.code) == ("PARTIAL", errors.LEG_FAILED)


def test_exit_after_keep_closes_only_the_filled_leg() -> None:
    target = feed(running("KEEP"), filled("h1-E0", "100"), failed("h1-E1"))
    state = actions.plan_exit(ActionRequest(kind="EXIT", target_action_id="h1"), "x1", target, at(20))
    assert [leg.mt_ticket for leg in state.legs] == ["100"]


def test_exit_after_a_failed_compensation_closes_what_is_still_open() -> None:
    target = feed(running(n=3), filled("h1-E0", "100"), filled("h1-E1", "200"), failed("h1-E2"))
    target = feed(target, filled("h1-C0", "100"), failed("h1-C1"))
    assert target.code == errors.COMPENSATION_FAILED
    state = actions.plan_exit(ActionRequest(kind="EXIT", target_action_id="h1"), "x1", target, at(20))
    assert [leg.mt_ticket for leg in state.legs] == ["200"]


def test_exit_targets_must_be_known_final_hedges_with_open_legs() -> None:
    request = ActionRequest(kind="EXIT", target_action_id="h1")
    with pytest.raises(ActionInvalid) as caught:
        actions.plan_exit(request, "x1", None, at(0))
    assert caught.value.code == errors.ACTION_NOT_FOUND
    with pytest.raises(ActionInvalid, match="still RUNNING"):
        actions.plan_exit(request, "x1", running(), at(0))
    with pytest.raises(ActionInvalid, match="no open leg"):
        actions.plan_exit(request, "x1", feed(running(), failed("h1-E0"), failed("h1-E1")), at(0))
    compensated = feed(running(), filled("h1-E0", "100"), failed("h1-E1"), filled("h1-C0", "100"))
    with pytest.raises(ActionInvalid, match="no open leg"):
        actions.plan_exit(request, "x1", compensated, at(0))
    close_all = actions.plan_close_all(ActionRequest(kind="CLOSE_ALL", account_ids=["A"]), "c1", {}, at(0))
    with pytest.raises(ActionInvalid, match="only a HEDGE_ENTRY"):
        actions.plan_exit(request, "x1", close_all, at(0))


# --- CLOSE_ALL ---------------------------------------------------------------------------------------------


def position(ticket: str, volume: float = 1.0) -> Position:
    return Position(
        mt_ticket=ticket, symbol="EURUSD", side="BUY", volume=volume, open_price=1.1, current_price=1.1, profit=0.0
    )


def test_close_all_plans_one_close_per_position() -> None:
    request = ActionRequest(kind="CLOSE_ALL", account_ids=["A", "B"])
    state = actions.plan_close_all(request, "c1", {"A": [position("1"), position("2")], "B": [position("3")]}, at(0))
    assert [(leg.account_id, leg.mt_ticket, leg.order_action_id) for leg in state.legs] == [
        ("A", "1", "c1-X0"),
        ("A", "2", "c1-X1"),
        ("B", "3", "c1-X2"),
    ]
    state = feed(actions.start(state, at(1)), filled("c1-X0", "1"), filled("c1-X1", "2"), filled("c1-X2", "3"))
    assert state.state == "COMPLETED"


def test_close_all_with_nothing_open_completes() -> None:
    state = actions.plan_close_all(ActionRequest(kind="CLOSE_ALL", account_ids=["A"]), "c1", {"A": []}, at(0))
    state = actions.start(state, at(1))
    assert actions.active_legs(state) == []
    settled = actions.settle(state, at(1))
    assert settled is not None
    assert (settled.state, settled.message) == ("COMPLETED", "nothing to close")


def test_close_all_where_every_close_failed_fails() -> None:
    state = actions.plan_close_all(
        ActionRequest(kind="CLOSE_ALL", account_ids=["A"]), "c1", {"A": [position("1")]}, at(0)
    )
    state = feed(actions.start(state, at(1)), failed("c1-X0", "EXPIRED", errors.EXPIRED))
    assert (state.state, state.code) == ("FAILED", errors.LEG_FAILED)


# --- records, duplicates, rejections ----------------------------------------------------------------------------


def test_same_request_ignores_the_timeout_only() -> None:
    first = hedge()
    assert actions.same_request(first, msgspec.structs.replace(first, timeout_ms=999))
    assert not actions.same_request(first, msgspec.structs.replace(first, policy="KEEP"))


def test_the_record_round_trips_through_msgpack() -> None:
    state = running()
    record = actions.ActionRecord(
        request=hedge(), state=state, owner="co-1", lease_until=1.5, deadline=2.5, created_at=at(0), updated_at=at(1)
    )
    assert unpack(pack(record), actions.ActionRecord) == record


def test_rejected_without_a_readable_request() -> None:
    state = actions.rejected("", errors.ACTION_INVALID, "missing field `kind`", at(0), kind="EXIT")
    assert (state.state, state.kind, state.code, state.seq) == ("REJECTED", "EXIT", errors.ACTION_INVALID, 1)
    state = actions.rejected("h1", errors.CACHE_INCOMPLETE, "no snapshot", at(0), request=hedge())
    assert (state.account_ids, state.policy, state.user_id) == (["A0", "A1"], "COMPENSATE", "u1")
