"""The live picture (pure code): terminal presence, heartbeats, balances, positions, order outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from hedgebridge.protocol import (
    FINAL_ACTION_STATES,
    AccountUpdate,
    ActionState,
    Alert,
    ClosedEvent,
    Conflict,
    ConsistencyStatus,
    Event,
    HealthReport,
    ModifiedEvent,
    MonitorSnapshot,
    OpenedEvent,
    OrderResult,
    PositionUpdate,
    TerminalLiveness,
    TerminalStatus,
    TerminalView,
)


@dataclass
class Picture:
    started_at: datetime
    terminals: dict[str, TerminalView] = field(default_factory=dict)
    orders_succeeded: int = 0
    orders_failed: int = 0
    account_updated: dict[str, datetime] = field(default_factory=dict)  # account -> last ACCOUNT_UPDATE seen
    order_results: dict[str, int] = field(default_factory=dict)  # ORDER_RESULT count by status
    action_outcomes: dict[str, int] = field(default_factory=dict)  # final action count by state
    conflicts: int = 0
    open_conflicts: int | None = None

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
        if isinstance(event, OpenedEvent | ClosedEvent | ModifiedEvent):  # a terminal's answer to an order
            if event.status == "SUCCESS":
                self.orders_succeeded += 1
            else:
                self.orders_failed += 1
        if view is None:
            return
        changes: dict[str, object] = {"last_event": at}
        if isinstance(event, AccountUpdate):
            self.account_updated[event.account_id] = at
            changes.update(balance=event.balance, equity=event.equity, margin_level=event.margin_level)
        elif isinstance(event, PositionUpdate):
            changes["open_positions"] = len(event.positions)
        self.terminals[event.account_id] = msgspec.structs.replace(view, **changes)

    def on_result(self, result: OrderResult) -> None:
        if not result.duplicate:
            self.order_results[result.status] = self.order_results.get(result.status, 0) + 1

    def on_action(self, state: ActionState) -> None:
        if state.state in FINAL_ACTION_STATES and not state.duplicate:
            self.action_outcomes[state.state] = self.action_outcomes.get(state.state, 0) + 1

    def on_conflict(self, conflict: Conflict) -> None:
        self.conflicts += 1

    def on_consistency(self, status: ConsistencyStatus) -> None:
        self.open_conflicts = status.open_conflicts

    def on_liveness(self, terminal: TerminalLiveness, gateway_id: str, at: datetime) -> None:
        """A gateway's liveness report: it holds the terminal, which sent its last frame ``idleMs`` ago."""
        view = self.terminals.get(terminal.account_id)
        if view is None or view.session_id != terminal.session_id:
            view = TerminalView(
                account_id=terminal.account_id,
                connected=True,
                session_id=terminal.session_id,
                gateway_id=gateway_id,
                since=terminal.connected_at,
                last_event=view.last_event if view else None,
                balance=view.balance if view else None,
                equity=view.equity if view else None,
                margin_level=view.margin_level if view else None,
                open_positions=view.open_positions if view else 0,
            )
        self.terminals[terminal.account_id] = msgspec.structs.replace(
            view,
            last_heartbeat=at - timedelta(milliseconds=terminal.idle_ms),
            rtt_ms=terminal.rtt_ms if terminal.rtt_ms is not None else view.rtt_ms,
        )

    def stale_terminals(self, now: datetime, heartbeat_s: float, account_s: float) -> list[str]:
        """Connected terminals whose last heartbeat or last ACCOUNT_UPDATE is older than allowed."""
        problems = []
        for account, view in sorted(self.terminals.items()):
            if not view.connected:
                continue
            if view.last_heartbeat is not None and (now - view.last_heartbeat).total_seconds() > heartbeat_s:
                problems.append(f"{account}: no heartbeat for {(now - view.last_heartbeat).total_seconds():.0f} s")
            updated = self.account_updated.get(account, view.since)
            if (now - updated).total_seconds() > account_s:
                problems.append(f"{account}: no account update for {(now - updated).total_seconds():.0f} s")
        return problems

    def snapshot(self, alerts: list[Alert] | None = None, health: HealthReport | None = None) -> MonitorSnapshot:
        return MonitorSnapshot(
            started_at=self.started_at,
            terminals=sorted(self.terminals.values(), key=lambda t: t.account_id),
            orders_succeeded=self.orders_succeeded,
            orders_failed=self.orders_failed,
            alerts=alerts or [],
            health=health,
            order_results=dict(sorted(self.order_results.items())),
            action_outcomes=dict(sorted(self.action_outcomes.items())),
            conflicts=self.conflicts,
            open_conflicts=self.open_conflicts,
        )
