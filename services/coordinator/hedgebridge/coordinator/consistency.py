"""Reconciliation (pure code, no I/O): what the system believes open against what a terminal reports.

The book (KV ``hb_book``) holds every position the system opened and believes open; a terminal's
POSITION_UPDATE is the complete list of what is open on its account. The differences are conflicts:

- ORPHAN_POSITION: reported, not in the book (opened outside the system, or the book lost it);
- MISSING_POSITION: in the book, not reported (closed outside the system without a report reaching us);
- VOLUME_MISMATCH: both know the ticket, with different volumes.

Snapshots race with orders, so two guards keep a position that is being opened from being flagged:

- a book entry is MISSING only when it was opened before the snapshot was taken (a snapshot older than the
  fill cannot contain it);
- a reported position is an ORPHAN only when it has been open for longer than a grace (its book entry may be
  on its way). A position without an ``openTime`` has no age to go by and is judged at once.

``check`` is one pass: a pure function of the book, the latest snapshot of every account and the conflicts
open before it; ``remedy`` and the ``after_*`` functions say how a new conflict is resolved per configuration
(REPORT, CLOSE_ORPHANS, DROP_MISSING) and what the conflict says afterwards. The service only reads the book,
performs the remedies and publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from hedgebridge.protocol import BookEntry, CloseOrder, Conflict, ConsistencyStatus, OrderResult, PositionUpdate, errors

VOLUME_TOLERANCE = 1e-6


def conflict_id(conflict: Conflict) -> str:
    """The conflict's identity (and its JetStream de-duplication id): ``kind:account:ticket``."""
    return f"{conflict.kind}:{conflict.account_id}:{conflict.mt_ticket}"


def book_key(account_id: str, mt_ticket: str) -> str:
    """The ``hb_book`` key of a position."""
    return f"{account_id}.{mt_ticket}"


def compare(
    account_id: str,
    book: Iterable[BookEntry],
    snapshot: PositionUpdate,
    now: datetime,
    orphan_grace: timedelta,
) -> list[Conflict]:
    """The conflicts between the book entries of ``account_id`` and the terminal's ``snapshot``."""
    entries = {entry.mt_ticket: entry for entry in book if entry.account_id == account_id}
    reported = {position.mt_ticket: position for position in snapshot.positions}
    conflicts: list[Conflict] = []
    for ticket, position in reported.items():
        entry = entries.get(ticket)
        if entry is None:
            if position.open_time is not None and now - position.open_time < orphan_grace:
                continue
            conflicts.append(
                Conflict(
                    kind="ORPHAN_POSITION",
                    account_id=account_id,
                    mt_ticket=ticket,
                    detected_at=now,
                    position_id=position.position_id,
                    symbol=position.symbol,
                    reported_volume=position.volume,
                    message=f"{position.side} {position.volume:g} {position.symbol} is open on the terminal, "
                    "not in the book",
                )
            )
        elif abs(entry.volume - position.volume) > VOLUME_TOLERANCE:
            conflicts.append(
                Conflict(
                    kind="VOLUME_MISMATCH",
                    account_id=account_id,
                    mt_ticket=ticket,
                    detected_at=now,
                    position_id=entry.position_id,
                    symbol=entry.symbol,
                    expected_volume=entry.volume,
                    reported_volume=position.volume,
                    message=f"the book holds {entry.volume:g}, the terminal reports {position.volume:g}",
                )
            )
    for ticket, entry in entries.items():
        if ticket in reported or entry.opened_at >= snapshot.timestamp:
            continue
        conflicts.append(
            Conflict(
                kind="MISSING_POSITION",
                account_id=account_id,
                mt_ticket=ticket,
                detected_at=now,
                position_id=entry.position_id,
                symbol=entry.symbol,
                expected_volume=entry.volume,
                message=f"{entry.side} {entry.volume:g} {entry.symbol} is in the book, the terminal does not report it",
            )
        )
    return sorted(conflicts, key=conflict_id)


@dataclass(frozen=True, slots=True)
class Pass:
    """The outcome of checking some accounts against the conflicts open before."""

    new: list[Conflict]  # found now, not open before: to report (and resolve)
    resolved: list[Conflict]  # open before, gone now
    open: dict[str, Conflict]  # every open conflict after the pass, by conflict_id
    checked: tuple[str, ...] = ()  # the accounts compared

    def status(self, now: datetime) -> ConsistencyStatus:
        """The ConsistencyStatus published after the pass (``open`` as it stands then)."""
        return ConsistencyStatus(
            timestamp=now,
            consistent=not self.open,
            accounts_checked=len(self.checked),
            open_conflicts=len(self.open),
            conflicts=list(self.open.values()),
        )


def update(open_before: Mapping[str, Conflict], checked: Iterable[str], found: Iterable[Conflict]) -> Pass:
    """Fold the conflicts ``found`` on the ``checked`` accounts into the set of open ones: conflicts of
    accounts not checked stay as they were."""
    accounts = set(checked)
    found_by_id = {conflict_id(c): c for c in found if c.account_id in accounts}
    still: dict[str, Conflict] = {}
    resolved: list[Conflict] = []
    for key, conflict in open_before.items():
        if conflict.account_id not in accounts or key in found_by_id:
            still[key] = conflict
        else:
            resolved.append(conflict)
    new = [c for key, c in sorted(found_by_id.items()) if key not in open_before]
    for conflict in new:
        still[conflict_id(conflict)] = conflict
    return Pass(new=new, resolved=sorted(resolved, key=conflict_id), open=dict(sorted(still.items())))


def newer(previous: PositionUpdate | None, snapshot: PositionUpdate) -> bool:
    """Whether ``snapshot`` replaces the latest one kept for its account (an older one arriving late does not)."""
    return previous is None or previous.timestamp <= snapshot.timestamp


def check(
    book: Mapping[str, Iterable[BookEntry]],
    snapshots: Mapping[str, PositionUpdate],
    accounts: Iterable[str],
    open_before: Mapping[str, Conflict],
    now: datetime,
    orphan_grace: timedelta,
) -> Pass:
    """One pass over ``accounts``: each one with a snapshot is compared with its part of the ``book``
    (account -> entries), and what is found is folded into the conflicts open before."""
    checked = tuple(a for a in accounts if a in snapshots)
    found: list[Conflict] = []
    for account in checked:
        found += compare(account, book.get(account, ()), snapshots[account], now, orphan_grace)
    step = update(open_before, checked, found)
    return Pass(new=step.new, resolved=step.resolved, open=step.open, checked=checked)


def remedy(conflict: Conflict, mode: str, timeout_ms: int) -> CloseOrder | str | None:
    """What resolves a new conflict under ``mode``: the executor order that closes an orphan
    (CLOSE_ORPHANS), the ``hb_book`` key to delete for a missing position (DROP_MISSING), or None (reported
    only)."""
    if mode == "CLOSE_ORPHANS" and conflict.kind == "ORPHAN_POSITION":
        return CloseOrder(
            account_id=conflict.account_id,
            mt_ticket=conflict.mt_ticket,
            action_id=f"orphan-{conflict.account_id}-{conflict.mt_ticket}"[:128],
            exit_reason="orphan position closed by the consistency check",
            timeout_ms=timeout_ms,
        )
    if mode == "DROP_MISSING" and conflict.kind == "MISSING_POSITION":
        return book_key(conflict.account_id, conflict.mt_ticket)
    return None


def after_close(conflict: Conflict, result: OrderResult) -> Conflict:
    """The conflict once the executor answered its close: CLOSED when the position is gone."""
    if result.status == "FILLED" or result.code == errors.ALREADY_CLOSED:
        return msgspec.structs.replace(conflict, resolution="CLOSED")
    return msgspec.structs.replace(conflict, message=f"{conflict.message}; close {result.status}: {result.message}")


def after_drop(conflict: Conflict) -> Conflict:
    return msgspec.structs.replace(conflict, resolution="DROPPED")


def after_failure(conflict: Conflict, what: str, error: str) -> Conflict:
    """The conflict when its remedy (``what``: close, drop) could not be performed."""
    return msgspec.structs.replace(conflict, message=f"{conflict.message}; {what} failed: {error}")
