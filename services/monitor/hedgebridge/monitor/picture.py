"""The live picture (pure code): terminal presence, balances, positions, order outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from hedgebridge.protocol import (
    AccountUpdate,
    ClosedEvent,
    Event,
    MonitorSnapshot,
    OpenedEvent,
    PositionUpdate,
    TerminalStatus,
    TerminalView,
)


@dataclass
class Picture:
    started_at: datetime
    terminals: dict[str, TerminalView] = field(default_factory=dict)
    orders_succeeded: int = 0
    orders_failed: int = 0

    def on_status(self, status: TerminalStatus) -> None:
        current = self.terminals.get(status.account_id)
        if status.status == "CONNECTED":
            keep = current or TerminalView(
                account_id=status.account_id, connected=True, session_id="", gateway_id="", since=status.timestamp
            )
            self.terminals[status.account_id] = msgspec.structs.replace(
                keep,
                connected=True,
                session_id=status.session_id,
                gateway_id=status.gateway_id,
                since=status.timestamp,
                reason="",
            )
        elif current is None or current.session_id == status.session_id:
            # a disconnect of an older, replaced session does not make the account offline
            self.terminals[status.account_id] = TerminalView(
                account_id=status.account_id,
                connected=False,
                session_id=status.session_id,
                gateway_id=status.gateway_id,
                since=status.timestamp,
                reason=status.reason,
                last_event=current.last_event if current else None,
                balance=current.balance if current else None,
                equity=current.equity if current else None,
                margin_level=current.margin_level if current else None,
                open_positions=current.open_positions if current else 0,
            )

    def on_event(self, event: Event, at: datetime) -> None:
        view = self.terminals.get(event.account_id)
        if isinstance(event, OpenedEvent | ClosedEvent):
            if event.status == "SUCCESS":
                self.orders_succeeded += 1
            else:
                self.orders_failed += 1
        if view is None:
            return
        changes: dict[str, object] = {"last_event": at}
        if isinstance(event, AccountUpdate):
            changes.update(balance=event.balance, equity=event.equity, margin_level=event.margin_level)
        elif isinstance(event, PositionUpdate):
            changes["open_positions"] = len(event.positions)
        self.terminals[event.account_id] = msgspec.structs.replace(view, **changes)

    def snapshot(self) -> MonitorSnapshot:
        return MonitorSnapshot(
            started_at=self.started_at,
            terminals=sorted(self.terminals.values(), key=lambda t: t.account_id),
            orders_succeeded=self.orders_succeeded,
            orders_failed=self.orders_failed,
        )
