"""The fault suite's checker on hand-made histories: a clean one passes, each broken guarantee fails it."""

from __future__ import annotations

import dataclasses

from tests.faults.checker import (
    ActionOutcome,
    Answer,
    CacheCheck,
    Command,
    Execution,
    History,
    Leg,
    Received,
    Submit,
    check,
)
from tests.faults.schedule import DROP_STEPS, KINDS, schedule


def clean() -> History:
    """An order filled after a lost answer, a rejected one, a hedge compensated, a stream resumed."""
    return History(
        submits=[
            Submit("o-1", "OPEN", "A"),
            Submit("o-2", "OPEN", "B"),
            Submit("h-1", "ACTION"),
        ],
        answers=[
            Answer("o-1", "OUTCOME_UNKNOWN"),
            Answer("o-1", "FILLED"),
            Answer("o-1", "FILLED"),
            Answer("o-2", "REJECTED"),
            Answer("h-1", "COMPENSATED"),
        ],
        commands=[
            Command("A", "o-1", "OPEN"),
            Command("A", "o-1", "OPEN"),
            Command("B", "o-2", "OPEN"),
            Command("A", "h-1-e0", "OPEN"),
            Command("B", "h-1-e1", "OPEN"),
            Command("A", "h-1-c0", "CLOSE"),
        ],
        executions=[
            Execution("A", "o-1", "OPEN", "SUCCESS"),
            Execution("A", "o-1", "OPEN", "SUCCESS", fresh=False),  # answered again, not executed again
            Execution("B", "o-2", "OPEN", "FAILED"),
            Execution("A", "h-1-e0", "OPEN", "SUCCESS"),
            Execution("B", "h-1-e1", "OPEN", "FAILED"),
            Execution("A", "h-1-c0", "CLOSE", "SUCCESS"),
        ],
        actions=[
            ActionOutcome(
                "h-1",
                "COMPENSATE",
                "COMPENSATED",
                (
                    Leg("ENTRY", "A", "h-1-e0", "FILLED"),
                    Leg("ENTRY", "B", "h-1-e1", "REJECTED"),
                    Leg("COMPENSATION", "A", "h-1-c0", "FILLED"),
                ),
            )
        ],
        received=[
            Received("s", "trades", "e1", 3),
            Received("s", "trades", "e1", 7),
            Received("s", "trades", notice="RECONNECTED"),
            Received("s", "trades", "e1", 9),
            Received("s", "trades", notice="RESYNC"),
            Received("s", "trades", "e2", 1),
        ],
        reference={"trades": [("e1", 3), ("e1", 7), ("e1", 9), ("e2", 1)]},
        cache_checks=[CacheCheck("kill-cache", True)],
    )


def test_a_clean_history_passes() -> None:
    assert check(clean()) == []


def broken(**changes: object) -> list[str]:
    return check(dataclasses.replace(clean(), **changes))  # type: ignore[arg-type]


def test_a_submit_without_a_final_outcome_fails() -> None:
    history = clean()
    history.answers = [a for a in history.answers if a.action_id != "o-2"]
    assert any("o-2: no final outcome" in p for p in check(history))


def test_two_different_final_outcomes_fail() -> None:
    history = clean()
    history.answers.append(Answer("o-2", "FILLED"))
    assert any("more than one final outcome: FILLED, REJECTED" in p for p in check(history))


def test_an_execution_twice_fails() -> None:
    history = clean()
    history.executions.append(Execution("A", "o-1", "OPEN", "SUCCESS"))
    assert any("o-1 executed 2 times on A" in p for p in check(history))


def test_an_execution_of_what_was_answered_rejected_or_expired_fails() -> None:
    history = clean()
    history.executions.append(Execution("B", "o-2", "OPEN", "SUCCESS"))
    assert any("o-2 was answered REJECTED but executed on B" in p for p in check(history))
    history = clean()
    history.answers = [Answer("o-2", "EXPIRED") if a.action_id == "o-2" else a for a in history.answers]
    history.executions.append(Execution("B", "o-2", "OPEN", "SUCCESS"))
    assert any("o-2 was answered EXPIRED but executed" in p for p in check(history))


def test_filled_but_never_executed_fails() -> None:
    history = clean()
    history.executions = [e for e in history.executions if e.action_id != "o-1"]
    assert any("o-1 was answered FILLED but never executed" in p for p in check(history))


def test_an_execution_without_a_command_fails() -> None:
    history = clean()
    history.executions.append(Execution("C", "x-1", "OPEN", "FAILED"))
    assert any("x-1 executed on C without a command" in p for p in check(history))


def test_an_unsettled_action_fails() -> None:
    history = clean()
    history.actions = [dataclasses.replace(history.actions[0], state="UNSETTLED", code="INTERNAL")]
    assert any("not settled" in p for p in check(history))
    history.actions = []
    assert any("action h-1: no state known" in p for p in check(history))


def test_an_action_against_its_policy_fails() -> None:
    history = clean()
    action = history.actions[0]
    history.actions = [dataclasses.replace(action, state="PARTIAL")]
    assert any("PARTIAL is for the KEEP policy" in p for p in check(history))
    history.actions = [dataclasses.replace(action, policy="KEEP")]
    assert any("compensated under KEEP" in p for p in check(history))
    history.actions = [dataclasses.replace(action, state="COMPLETED")]
    assert any("a leg is not filled" in p for p in check(history))


def test_a_compensated_action_whose_filled_leg_stayed_open_fails() -> None:
    history = clean()
    action = history.actions[0]
    history.actions = [dataclasses.replace(action, legs=action.legs[:2])]
    assert any("h-1-e0 was not closed again" in p for p in check(history))


def test_a_leg_whose_outcome_disagrees_with_its_terminal_fails() -> None:
    history = clean()
    history.executions = [e for e in history.executions if e.action_id != "h-1-e0"]
    assert any("h-1-e0 is FILLED but never executed" in p for p in check(history))
    history = clean()
    history.executions.append(Execution("B", "h-1-e1", "OPEN", "SUCCESS"))
    assert any("h-1-e1 is REJECTED but executed" in p for p in check(history))


def test_an_action_whose_final_state_never_reached_the_actions_stream_fails() -> None:
    history = clean()
    history.published = {"h-1"}
    assert check(history) == []
    history.published = set()
    assert any("h-1" in p and "not on the actions stream" in p for p in check(history))


def test_a_duplicate_or_reordered_stream_event_fails() -> None:
    history = clean()
    history.received.insert(2, Received("s", "trades", "e1", 7))
    assert any("seq 7 after 7" in p for p in check(history))


def test_a_gap_in_a_resumed_stream_fails_unless_announced() -> None:
    history = clean()
    history.reference["trades"].insert(2, ("e1", 8))
    assert any("gap before seq 9: missed [8]" in p for p in check(history))
    history.received.insert(3, Received("s", "trades", notice="RESYNC"))
    assert check(history) == []


def test_an_epoch_change_without_resync_fails() -> None:
    history = clean()
    history.received = [r for r in history.received if r.notice != "RESYNC"]
    assert any("epoch changed e1 -> e2 without a RESYNC" in p for p in check(history))


def test_a_cache_that_did_not_converge_fails() -> None:
    problems = broken(cache_checks=[CacheCheck("flushall", False, "A: positions unknown")])
    assert problems == ["the cache did not converge after flushall: A: positions unknown"]


def test_the_schedule_is_deterministic_and_covers_every_fault_and_step() -> None:
    accounts = ["A", "B", "C"]
    first = schedule(7, 2, accounts)
    assert first == schedule(7, 2, accounts)
    assert first != schedule(8, 2, accounts)
    one_round = schedule(7, 1, accounts)
    assert {f.kind for f in one_round} == set(KINDS)
    assert sorted(f.step for f in one_round if f.kind == "drop-terminal") == sorted(DROP_STEPS)
    assert len(first) == 2 * len(one_round)
