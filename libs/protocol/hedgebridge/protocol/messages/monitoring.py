"""Monitoring: gateway liveness, health checks, alerts, latency and the monitor's snapshot."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from .base import Count, Message, _Body

# --- monitoring (gateway liveness, health checks, alerts) --------------------------------------------------


class TerminalLiveness(_Body, frozen=True, kw_only=True):
    """One terminal held by a gateway: how long it has been silent and its last WebSocket round trip."""

    account_id: str
    session_id: str
    connected_at: datetime
    idle_ms: float  # since the last frame the terminal sent (heartbeats included)
    # the round trip of the gateway's last WebSocket Ping to the terminal, in the first report after its Pong
    # only; None: no Pong came since the last report
    rtt_ms: float | None = None


class GatewayLiveness(Message, frozen=True, kw_only=True, tag="GATEWAY_LIVENESS"):
    """Published by every gateway at a fixed interval: the terminals it holds (``hb.gw.liveness``)."""

    timestamp: datetime
    gateway_id: str
    interval_ms: Count
    terminals: list[TerminalLiveness] = []
    clients: Count = 0


class HealthCheck(_Body, frozen=True, kw_only=True):
    name: str
    ok: bool
    checked_at: datetime
    detail: str = ""
    code: str | None = None  # the registry code of the failure
    latency_ms: float | None = None  # how long the probe took, when it is a round trip


class HealthReport(Message, frozen=True, kw_only=True, tag="HEALTH"):
    """A service's health checks (``hb.health.<service>``); ``ready`` is false while any check fails."""

    timestamp: datetime
    service: str
    instance: str
    ready: bool
    checks: list[HealthCheck] = []


AlertState = Literal["OPEN", "RESOLVED"]


class Alert(Message, frozen=True, kw_only=True, tag="ALERT"):
    """One transition of an alert (``hb.alert.<rule>.<scope>``, kept in HB_ALERTS). ``key`` (rule and account)
    de-duplicates: an alert is opened once and stays open until its condition clears; ``seq`` counts the
    transitions of the key."""

    key: str
    rule: str
    account_id: str = ""  # empty: the alert concerns the whole system
    state: AlertState
    severity: Literal["INFO", "WARNING", "ERROR", "CRITICAL"]
    code: str
    message: str = ""
    value: float | None = None
    threshold: float | None = None
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    seq: Count  # always sent (a default would be omitted on the wire)


class LatencyHop(_Body, frozen=True, kw_only=True):
    """Latency figures of one hop over the monitor's recent window (milliseconds)."""

    hop: str
    count: Count
    last_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class MonitorReport(Message, frozen=True, kw_only=True, tag="MONITOR_REPORT"):
    """The monitor's periodic report (``hb.monitor.report``): health, latency per hop, open alerts."""

    timestamp: datetime
    health: HealthReport
    hops: list[LatencyHop] = []
    alerts: list[Alert] = []
    terminals: list[TerminalView] = []


class TerminalView(_Body, frozen=True, kw_only=True):
    """The monitor's view of one terminal."""

    account_id: str
    connected: bool
    session_id: str
    gateway_id: str
    since: datetime
    reason: str = ""
    last_event: datetime | None = None
    balance: float | None = None
    equity: float | None = None
    margin_level: float | None = None
    open_positions: Count = 0
    last_heartbeat: datetime | None = None  # the last frame the gateway saw from it (liveness reports)
    rtt_ms: float | None = None  # the gateway's last WebSocket Ping/Pong round trip to it


class MonitorSnapshot(_Body, frozen=True, kw_only=True):
    """The monitor's live picture, answered on ``hb.monitor.status``."""

    started_at: datetime
    terminals: list[TerminalView]
    orders_succeeded: Count = 0
    orders_failed: Count = 0
    alerts: list[Alert] = []  # the open alerts
    health: HealthReport | None = None
    order_results: dict[str, Count] = {}  # ORDER_RESULT count by status (hb.exec.result.*)
    action_outcomes: dict[str, Count] = {}  # final ACTION_STATE count by state
    conflicts: Count = 0  # CONFLICTs published since the monitor started
    open_conflicts: Count | None = None  # from the last CONSISTENCY status
