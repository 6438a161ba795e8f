"""Alert rules (pure code, no I/O): what the monitor saw goes in, alert transitions come out.

Every alert has a de-duplication key, ``<rule>.<account>`` (``<rule>._system`` for system-wide ones): a
condition that holds opens the alert once (an ``ALERT`` with state OPEN), it stays open without firing again
while the condition holds, and it is RESOLVED once when the condition clears. The book starts from the open
alerts the store kept (``AlertBook(thresholds, stored)``), so a restarted monitor neither forgets nor re-fires
them.

Rules (thresholds in ``Thresholds``; the table with defaults is in services/monitor/README.md):

- execution_latency: an order's ``elapsedMs`` over the threshold (per account); resolves after
  ``recovery_samples`` orders in a row at or under it.
- websocket_latency: a terminal's WebSocket round trip (its gateway's Ping/Pong) over the threshold; resolves
  after ``recovery_samples`` round trips in a row at or under it.
- sync_latency: an action's time from its first to its final state over the threshold (system-wide);
  resolves after ``recovery_samples`` actions in a row at or under it.
- consecutive_failures: ``consecutive_failures`` orders in a row on an account did not fill (REJECTED,
  EXPIRED, OUTCOME_UNKNOWN) within ``failure_window_s``; resolves when an order fills or when no order
  failed for the window.
- terminal_down: a terminal stays disconnected for ``downtime_s``; resolves when it connects again.
- margin_level: an ACCOUNT_UPDATE's marginLevel under the threshold; resolves at or over it, or when no
  margin is in use.
- terminal_silent: a connected terminal reports no event for ``silent_s`` (heartbeats alone do not count);
  resolves when it reports one, or disconnects (terminal_down takes over).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import msgspec

from hedgebridge.protocol import (
    FINAL_ACTION_STATES,
    AccountUpdate,
    ActionState,
    Alert,
    OrderResult,
    errors,
    subjects,
)

EXECUTION_LATENCY = "execution_latency"
WEBSOCKET_LATENCY = "websocket_latency"
SYNC_LATENCY = "sync_latency"
CONSECUTIVE_FAILURES = "consecutive_failures"
TERMINAL_DOWN = "terminal_down"
MARGIN_LEVEL = "margin_level"
TERMINAL_SILENT = "terminal_silent"

# rule -> the registry code it reports (its severity is the alert's)
CODES: dict[str, str] = {
    EXECUTION_LATENCY: errors.EXECUTION_SLOW,
    WEBSOCKET_LATENCY: errors.WEBSOCKET_SLOW,
    SYNC_LATENCY: errors.SYNC_SLOW,
    CONSECUTIVE_FAILURES: errors.ORDERS_FAILING,
    TERMINAL_DOWN: errors.TERMINAL_DOWN,
    MARGIN_LEVEL: errors.MARGIN_LOW,
    TERMINAL_SILENT: errors.TERMINAL_SILENT,
}
RULES: tuple[str, ...] = tuple(CODES)

FAILED_STATUSES = frozenset({"REJECTED", "EXPIRED", "OUTCOME_UNKNOWN"})
FILLED_STATUSES = frozenset({"FILLED", "PARTIALLY_FILLED"})
EXECUTED_STATUSES = FILLED_STATUSES | {"REJECTED"}  # the terminal answered: the elapsed time is an execution's
MAX_TRACKED_ACTIONS = 10_000


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The seed's thresholds as defaults (§11); every one is configurable (HEDGEBRIDGE_MONITOR_*)."""

    execution_latency_ms: float = 500.0
    websocket_latency_ms: float = 20.0
    sync_latency_ms: float = 200.0
    consecutive_failures: int = 3
    failure_window_s: float = 300.0
    downtime_s: float = 300.0
    margin_level_pct: float = 100.0
    silent_s: float = 60.0
    recovery_samples: int = 3


def alert_key(rule: str, account_id: str = "") -> str:
    return f"{rule}.{account_id or subjects.SYSTEM_SCOPE}"


@dataclass
class AlertBook:
    thresholds: Thresholds
    open: dict[str, Alert] = field(default_factory=dict)  # key -> the alert's OPEN transition
    seqs: dict[str, int] = field(default_factory=dict)  # key -> seq of its last transition
    _ok: dict[str, int] = field(default_factory=dict)  # key -> samples under the threshold since it opened
    _failures: dict[str, list[datetime]] = field(default_factory=dict)  # account -> consecutive failure times
    _down_since: dict[str, datetime] = field(default_factory=dict)
    _last_event: dict[str, datetime] = field(default_factory=dict)  # connected accounts only
    _action_start: OrderedDict[str, datetime] = field(default_factory=OrderedDict)
    last_sync_ms: float | None = None

    @classmethod
    def restore(cls, thresholds: Thresholds, stored: Iterable[Alert]) -> AlertBook:
        """A book from the last transition of every key the store kept."""
        book = cls(thresholds)
        latest: dict[str, Alert] = {}
        for alert in stored:
            if alert.key not in latest or alert.seq > latest[alert.key].seq:
                latest[alert.key] = alert
        for key, alert in latest.items():
            book.seqs[key] = alert.seq
            if alert.state == "OPEN":
                book.open[key] = alert
        return book

    # --- transitions ------------------------------------------------------------------------------------

    def _fire(
        self, rule: str, account: str, now: datetime, message: str, value: float | None, threshold: float | None
    ) -> list[Alert]:
        key = alert_key(rule, account)
        self._ok.pop(key, None)
        if key in self.open:
            return []
        seq = self.seqs.get(key, 0) + 1
        code = CODES[rule]
        alert = Alert(
            key=key,
            rule=rule,
            account_id=account,
            state="OPEN",
            severity=errors.lookup(code).severity.value,
            code=code,
            message=message,
            value=value,
            threshold=threshold,
            opened_at=now,
            updated_at=now,
            seq=seq,
        )
        self.seqs[key] = seq
        self.open[key] = alert
        return [alert]

    def _resolve(self, rule: str, account: str, now: datetime, message: str, value: float | None = None) -> list[Alert]:
        key = alert_key(rule, account)
        self._ok.pop(key, None)
        opened = self.open.pop(key, None)
        if opened is None:
            return []
        seq = self.seqs.get(key, opened.seq) + 1
        self.seqs[key] = seq
        resolved = msgspec.structs.replace(
            opened, state="RESOLVED", message=message, value=value, updated_at=now, resolved_at=now, seq=seq
        )
        return [resolved]

    def _sample(self, rule: str, account: str, value: float, threshold: float, now: datetime, what: str) -> list[Alert]:
        """A latency sample: over the threshold opens (or keeps open) the alert; ``recovery_samples`` in a
        row at or under it resolve it."""
        if value > threshold:
            return self._fire(rule, account, now, f"{what} {value:.1f} ms > {threshold:g} ms", value, threshold)
        key = alert_key(rule, account)
        if key not in self.open:
            return []
        self._ok[key] = self._ok.get(key, 0) + 1
        if self._ok[key] < self.thresholds.recovery_samples:
            return []
        return self._resolve(rule, account, now, f"{what} back under {threshold:g} ms ({value:.1f} ms)", value)

    # --- inputs -----------------------------------------------------------------------------------------

    def order_result(self, result: OrderResult, now: datetime) -> list[Alert]:
        if result.duplicate or not result.account_id:
            return []
        account = result.account_id
        out: list[Alert] = []
        if result.status in EXECUTED_STATUSES and not result.reconciled and result.elapsed_ms > 0:
            limit = self.thresholds.execution_latency_ms
            out += self._sample(EXECUTION_LATENCY, account, result.elapsed_ms, limit, now, "order execution took")
        if result.status in FILLED_STATUSES:
            self._failures.pop(account, None)
            out += self._resolve(CONSECUTIVE_FAILURES, account, now, "an order filled")
        elif result.status in FAILED_STATUSES:
            window = timedelta(seconds=self.thresholds.failure_window_s)
            times = [t for t in self._failures.get(account, []) if now - t <= window] + [now]
            self._failures[account] = times
            if len(times) >= self.thresholds.consecutive_failures:
                text = f"{len(times)} orders in a row did not fill (last: {result.status} {result.code or ''})"
                out += self._fire(
                    CONSECUTIVE_FAILURES, account, now, text.strip(), len(times), self.thresholds.consecutive_failures
                )
        return out

    def action_state(self, state: ActionState, now: datetime) -> list[Alert]:
        """An action's state; when it is final, the time from its first state seen is a sync sample (kept in
        ``last_sync_ms`` for the latency figures)."""
        self.last_sync_ms = None
        if state.duplicate:
            return []
        start = self._action_start.get(state.action_id)
        if state.state not in FINAL_ACTION_STATES:
            if start is None or state.timestamp < start:
                self._action_start[state.action_id] = state.timestamp
                while len(self._action_start) > MAX_TRACKED_ACTIONS:
                    self._action_start.popitem(last=False)
            return []
        self._action_start.pop(state.action_id, None)
        if start is None or state.state == "REJECTED":  # its start was not seen, or nothing ran
            return []
        self.last_sync_ms = elapsed_ms = (state.timestamp - start).total_seconds() * 1000
        return self._sample(SYNC_LATENCY, "", elapsed_ms, self.thresholds.sync_latency_ms, now, "an action took")

    def account_update(self, update: AccountUpdate, now: datetime) -> list[Alert]:
        out = self.terminal_event(update.account_id, now)
        level, limit = update.margin_level, self.thresholds.margin_level_pct
        if level is not None and level < limit:
            text = f"margin level {level:g}% < {limit:g}%"
            return out + self._fire(MARGIN_LEVEL, update.account_id, now, text, level, limit)
        text = "no margin in use" if level is None else f"margin level {level:g}% back at or over {limit:g}%"
        return out + self._resolve(MARGIN_LEVEL, update.account_id, now, text, level)

    def websocket_rtt(self, account: str, rtt_ms: float, now: datetime) -> list[Alert]:
        limit = self.thresholds.websocket_latency_ms
        return self._sample(WEBSOCKET_LATENCY, account, rtt_ms, limit, now, "WebSocket round trip")

    def terminal_event(self, account: str, now: datetime) -> list[Alert]:
        """Any event the terminal reported (the silence rule)."""
        if account in self._down_since:
            return []
        self._last_event[account] = now
        return self._resolve(TERMINAL_SILENT, account, now, "the terminal reports events again")

    def connected(self, account: str, now: datetime) -> list[Alert]:
        self._down_since.pop(account, None)
        self._last_event.setdefault(account, now)
        return self._resolve(TERMINAL_DOWN, account, now, "the terminal connected again")

    def seen_alive(self, account: str, now: datetime) -> list[Alert]:
        """A gateway reports holding the terminal (liveness): connected, without resetting its silence."""
        if account in self._down_since or account not in self._last_event:
            return self.connected(account, now)
        return []

    def disconnected(self, account: str, now: datetime) -> list[Alert]:
        self._down_since.setdefault(account, now)
        self._last_event.pop(account, None)
        return self._resolve(TERMINAL_SILENT, account, now, "the terminal disconnected")

    def tick(self, now: datetime) -> list[Alert]:
        """The time-driven rules: downtime, silence, and failure streaks that aged out of their window."""
        out: list[Alert] = []
        t = self.thresholds
        for account, since in list(self._down_since.items()):
            down_s = (now - since).total_seconds()
            if down_s >= t.downtime_s:
                text = f"disconnected for {down_s:.0f} s (threshold {t.downtime_s:g} s)"
                out += self._fire(TERMINAL_DOWN, account, now, text, down_s, t.downtime_s)
        for account, last in list(self._last_event.items()):
            silent_s = (now - last).total_seconds()
            if silent_s >= t.silent_s:
                text = f"no event for {silent_s:.0f} s (threshold {t.silent_s:g} s)"
                out += self._fire(TERMINAL_SILENT, account, now, text, silent_s, t.silent_s)
        window = timedelta(seconds=t.failure_window_s)
        for alert in list(self.open.values()):
            if alert.rule != CONSECUTIVE_FAILURES:
                continue
            times = self._failures.get(alert.account_id)
            last = times[-1] if times else alert.updated_at
            if now - last > window:
                self._failures.pop(alert.account_id, None)
                out += self._resolve(CONSECUTIVE_FAILURES, alert.account_id, now, "no failed order within the window")
        return out

    def open_alerts(self) -> list[Alert]:
        return sorted(self.open.values(), key=lambda a: (a.opened_at, a.key))
