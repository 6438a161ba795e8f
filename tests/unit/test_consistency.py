"""Reconciliation of the book against terminal snapshots, including the races with orders in flight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hedgebridge.coordinator import consistency
from hedgebridge.protocol import BookEntry, Conflict, Position, PositionUpdate

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
GRACE = timedelta(seconds=5)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def entry(ticket: str, opened: float, volume: float = 1.0, account: str = "A") -> BookEntry:
    return BookEntry(
        account_id=account,
        mt_ticket=ticket,
        position_id=f"p-{ticket}",
        symbol="EURUSD",
        side="BUY",
        volume=volume,
        open_price=1.1,
        opened_at=at(opened),
    )


def position(ticket: str, opened: float | None, volume: float = 1.0) -> Position:
    return Position(
        mt_ticket=ticket,
        symbol="EURUSD",
        side="BUY",
        volume=volume,
        open_price=1.1,
        current_price=1.1,
        profit=0.0,
        open_time=None if opened is None else at(opened),
    )


def snapshot(taken: float, *positions: Position) -> PositionUpdate:
    return PositionUpdate(timestamp=at(taken), account_id="A", positions=list(positions))


def kinds(found: list[Conflict]) -> list[tuple[str, str]]:
    return [(c.kind, c.mt_ticket) for c in found]


def test_agreement_is_no_conflict() -> None:
    book = [entry("1", 0), entry("2", 1, volume=0.5)]
    assert consistency.compare("A", book, snapshot(10, position("1", 0), position("2", 1, 0.5)), at(11), GRACE) == []


def test_orphan_missing_and_volume_mismatch() -> None:
    book = [entry("1", 0), entry("2", 0), entry("9", 0, account="B")]
    snap = snapshot(20, position("1", 0, volume=0.4), position("3", 1))
    found = consistency.compare("A", book, snap, at(21), GRACE)
    assert kinds(found) == [("MISSING_POSITION", "2"), ("ORPHAN_POSITION", "3"), ("VOLUME_MISMATCH", "1")]
    mismatch = found[2]
    assert (mismatch.expected_volume, mismatch.reported_volume) == (1.0, 0.4)
    assert found[1].reported_volume == 1.0
    assert found[0].expected_volume == 1.0
    assert [consistency.conflict_id(c) for c in found] == [
        "MISSING_POSITION:A:2",
        "ORPHAN_POSITION:A:3",
        "VOLUME_MISMATCH:A:1",
    ]


def test_a_book_entry_newer_than_the_snapshot_is_not_missing() -> None:
    # the snapshot was taken at 10, the fill happened at 10.5: the snapshot cannot contain it yet
    assert consistency.compare("A", [entry("1", 10.5)], snapshot(10), at(11), GRACE) == []
    assert consistency.compare("A", [entry("1", 10)], snapshot(10), at(11), GRACE) == []
    assert kinds(consistency.compare("A", [entry("1", 9.9)], snapshot(10), at(11), GRACE)) == [
        ("MISSING_POSITION", "1")
    ]


def test_a_young_position_is_not_an_orphan_yet() -> None:
    # opened at 8, checked at 12: its book entry may still be on its way
    assert consistency.compare("A", [], snapshot(9, position("1", 8)), at(12), GRACE) == []
    assert kinds(consistency.compare("A", [], snapshot(9, position("1", 8)), at(13), GRACE)) == [
        ("ORPHAN_POSITION", "1")
    ]


def test_a_position_without_an_open_time_is_judged_at_once() -> None:
    assert kinds(consistency.compare("A", [], snapshot(9, position("1", None)), at(9), GRACE)) == [
        ("ORPHAN_POSITION", "1")
    ]


def test_update_reports_new_conflicts_once_and_resolves_vanished_ones() -> None:
    snap = snapshot(20, position("3", 0))
    found = consistency.compare("A", [entry("2", 0)], snap, at(21), GRACE)
    first = consistency.update({}, ["A"], found)
    assert kinds(first.new) == [("MISSING_POSITION", "2"), ("ORPHAN_POSITION", "3")]
    assert first.resolved == []
    assert sorted(first.open) == ["MISSING_POSITION:A:2", "ORPHAN_POSITION:A:3"]

    again = consistency.update(first.open, ["A"], consistency.compare("A", [entry("2", 0)], snap, at(30), GRACE))
    assert again.new == []
    assert again.open == first.open

    fixed = consistency.update(again.open, ["A"], consistency.compare("A", [], snap, at(31), GRACE))
    assert fixed.new == []
    assert kinds(fixed.resolved) == [("MISSING_POSITION", "2")]
    assert sorted(fixed.open) == ["ORPHAN_POSITION:A:3"]


def test_update_leaves_accounts_that_were_not_checked_alone() -> None:
    b_conflict = consistency.compare(
        "B",
        [entry("7", 0, account="B")],
        snapshot(10).__class__(timestamp=at(10), account_id="B", positions=[]),
        at(11),
        GRACE,
    )
    before = consistency.update({}, ["B"], b_conflict).open
    after = consistency.update(before, ["A"], [])
    assert after.open == before
    assert after.resolved == []


def test_book_keys() -> None:
    assert consistency.book_key("A-1", "50000000") == "A-1.50000000"
