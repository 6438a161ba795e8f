"""What the monitor saw (pure code, no I/O): every decoded input goes in, alert transitions come out.

A ``Watch`` owns the live picture (``picture.Picture``), the alert book (``rules.AlertBook``), the latency
window, the gateways' last liveness reports, the last consistency status and the event counters. The
service decodes what NATS brings, feeds it here with the time, and stores and logs the transitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hedgebridge.protocol import (
    AccountUpdate,
    ActionState,
    Alert,
    Conflict,
    ConsistencyStatus,
    Event,
    GatewayLiveness,
    HealthReport,
    MonitorSnapshot,
    OrderResult,
    TerminalStatus,
)

from .latency import LatencyWindow
from .picture import Picture
from .rules import EXECUTED_STATUSES, AlertBook


@dataclass
class Watch:
    picture: Picture
    alerts: AlertBook
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    gateways: dict[str, tuple[GatewayLiveness, float]] = field(default_factory=dict)  # id -> report, receipt
    consistency: ConsistencyStatus | None = None
    unreadable: int = 0  # inputs that did not decode
    events: int = 0  # terminal events read
    _unreadable_seen: int = 0

    def on_unreadable(self) -> None:
        self.unreadable += 1

    def unreadable_since_last(self) -> int:
        """Unreadable inputs since the last call (the integrity check's window)."""
        new = self.unreadable - self._unreadable_seen
        self._unreadable_seen = self.unreadable
        return new

    def on_status(self, status: TerminalStatus, now: datetime) -> list[Alert]:
        self.picture.on_status(status)
        if self.picture.terminals[status.account_id].connected:
            return self.alerts.connected(status.account_id, now)
        return self.alerts.disconnected(status.account_id, now)

    def on_event(self, event: Event, now: datetime) -> list[Alert]:
        self.events += 1
        self.picture.on_event(event, now)
        if isinstance(event, AccountUpdate):
            return self.alerts.account_update(event, now)
        return self.alerts.terminal_event(event.account_id, now)

    def on_result(self, result: OrderResult, now: datetime) -> list[Alert]:
        executed = result.status in EXECUTED_STATUSES
        if executed and not result.duplicate and not result.reconciled and result.elapsed_ms > 0:
            self.latency.add("execution", result.elapsed_ms)
        self.picture.on_result(result)
        return self.alerts.order_result(result, now)

    def on_action(self, state: ActionState, now: datetime) -> list[Alert]:
        self.picture.on_action(state)
        out = self.alerts.action_state(state, now)
        if self.alerts.last_sync_ms is not None:
            self.latency.add("action", self.alerts.last_sync_ms)
        return out

    def on_consistency(self, status: ConsistencyStatus) -> None:
        self.consistency = status
        self.picture.on_consistency(status)

    def on_conflict(self, conflict: Conflict) -> None:
        self.picture.on_conflict(conflict)

    def on_liveness(self, report: GatewayLiveness, now: datetime, received: float) -> list[Alert]:
        """A gateway's liveness report, received at the monotonic time ``received``."""
        self.gateways[report.gateway_id] = (report, received)
        out: list[Alert] = []
        for terminal in report.terminals:
            self.picture.on_liveness(terminal, report.gateway_id, report.timestamp)
            out += self.alerts.seen_alive(terminal.account_id, now)
            if terminal.rtt_ms is not None:
                self.latency.add("terminal_rtt", terminal.rtt_ms)
                out += self.alerts.websocket_rtt(terminal.account_id, terminal.rtt_ms, now)
        return out

    def snapshot(self, health: HealthReport | None = None) -> MonitorSnapshot:
        return self.picture.snapshot(alerts=self.alerts.open_alerts(), health=health)
