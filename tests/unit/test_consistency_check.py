"""The consistency checker's verdicts: one pass as a pure function of the book, the terminals' snapshots and
the conflicts open before it, and how each new conflict is resolved per configuration."""

from __future__ import annotations

from hedgebridge.coordinator import consistency
from hedgebridge.protocol import BookEntry, Conflict, OrderResult, Position, PositionUpdate, errors

from .test_consistency import GRACE, at
from .test_consistency import entry as book_entry
from .test_consistency import position as reported


def entry(account: str, ticket: str, volume: float = 1.0) -> BookEntry:
    return book_entry(ticket, 0, volume, account)


def position(ticket: str, volume: float = 1.0) -> Position:
    return reported(ticket, 0, volume)


def snapshot(account: str, *positions: Position, taken: float = 60) -> PositionUpdate:
    return PositionUpdate(timestamp=at(taken), account_id=account, positions=list(positions))


BOOK = {"A": [entry("A", "1"), entry("A", "2", 2.0)], "B": [entry("B", "7")]}


def test_a_pass_compares_every_account_with_a_snapshot() -> None:
    snapshots = {"A": snapshot("A", position("1"), position("2", 1.5), position("3")), "B": snapshot("B")}
    step = consistency.check(BOOK, snapshots, ["A", "B", "C"], {}, at(60), GRACE)
    assert step.checked == ("A", "B")  # C has no snapshot: not checked
    assert [(c.kind, c.account_id, c.mt_ticket) for c in step.new] == [
        ("MISSING_POSITION", "B", "7"),
        ("ORPHAN_POSITION", "A", "3"),
        ("VOLUME_MISMATCH", "A", "2"),
    ]
    status = step.status(at(60))
    assert (status.consistent, status.accounts_checked, status.open_conflicts) == (False, 2, 3)
    assert sorted(consistency.conflict_id(c) for c in status.conflicts) == sorted(step.open)


def test_a_consistent_pass_resolves_what_was_open() -> None:
    first = consistency.check(BOOK, {"B": snapshot("B")}, ["B"], {}, at(60), GRACE)
    assert list(first.open) == ["MISSING_POSITION:B:7"]
    again = consistency.check(BOOK, {"B": snapshot("B", position("7"))}, ["B"], first.open, at(61), GRACE)
    assert (again.new, [c.mt_ticket for c in again.resolved], again.open) == ([], ["7"], {})
    assert again.status(at(61)).consistent


def test_a_conflict_still_there_is_not_new_and_other_accounts_keep_theirs() -> None:
    first = consistency.check(BOOK, {"B": snapshot("B")}, ["B"], {}, at(60), GRACE)
    a_only = consistency.check(
        BOOK, {"A": snapshot("A", position("1"), position("2", 2.0))}, ["A"], first.open, at(61), GRACE
    )
    assert (a_only.new, a_only.resolved) == ([], [])
    assert list(a_only.open) == ["MISSING_POSITION:B:7"]
    repeat = consistency.check(BOOK, {"B": snapshot("B")}, ["B"], first.open, at(62), GRACE)
    assert (repeat.new, list(repeat.open)) == ([], ["MISSING_POSITION:B:7"])


def test_only_a_newer_snapshot_replaces_the_kept_one() -> None:
    kept = snapshot("A", taken=60)
    assert consistency.newer(None, kept)
    assert consistency.newer(kept, snapshot("A", taken=61))
    assert not consistency.newer(kept, snapshot("A", taken=59))


def conflict(kind: str) -> Conflict:
    return Conflict(kind=kind, account_id="A", mt_ticket="3", detected_at=at(60), message="m")  # type: ignore[arg-type]


def test_the_remedy_follows_the_configuration() -> None:
    order = consistency.remedy(conflict("ORPHAN_POSITION"), "CLOSE_ORPHANS", 3_000)
    assert not isinstance(order, str | None)
    assert (order.account_id, order.mt_ticket, order.action_id, order.timeout_ms) == ("A", "3", "orphan-A-3", 3_000)
    assert consistency.remedy(conflict("MISSING_POSITION"), "DROP_MISSING", 3_000) == "A.3"
    assert consistency.remedy(conflict("MISSING_POSITION"), "CLOSE_ORPHANS", 3_000) is None
    assert consistency.remedy(conflict("ORPHAN_POSITION"), "DROP_MISSING", 3_000) is None
    assert consistency.remedy(conflict("ORPHAN_POSITION"), "REPORT", 3_000) is None
    assert consistency.remedy(conflict("VOLUME_MISMATCH"), "CLOSE_ORPHANS", 3_000) is None


def test_what_a_conflict_says_after_its_remedy() -> None:
    orphan = conflict("ORPHAN_POSITION")
    assert consistency.after_close(orphan, OrderResult(status="FILLED", action_id="o")).resolution == "CLOSED"
    gone = OrderResult(status="REJECTED", action_id="o", code=errors.ALREADY_CLOSED)
    assert consistency.after_close(orphan, gone).resolution == "CLOSED"
    refused = consistency.after_close(orphan, OrderResult(status="REJECTED", action_id="o", message="no"))
    assert (refused.resolution, refused.message) == ("REPORTED", "m; close REJECTED: no")
    assert consistency.after_drop(conflict("MISSING_POSITION")).resolution == "DROPPED"
    failed = consistency.after_failure(orphan, "close", "boom")
    assert (failed.resolution, failed.message) == ("REPORTED", "m; close failed: boom")
