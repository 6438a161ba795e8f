"""Monitor configuration, from environment variables (prefix ``HEDGEBRIDGE_MONITOR_``).

| variable | default | meaning |
|---|---|---|
| HEDGEBRIDGE_NATS_URL | nats://127.0.0.1:4222 | NATS server(s), comma-separated |
| HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S | 30 | give up (exit 69) when NATS is unreachable at start |
| HEDGEBRIDGE_REDIS_URL | (none) | the cache whose reachability is checked; none: no cache check |
| HEDGEBRIDGE_STREAM_REPLICAS | 1 | replicas of the HB_ALERTS stream |
| HEDGEBRIDGE_MONITOR_ID | mon-<host>-<pid> | this instance's name in HEALTH reports |
| HEDGEBRIDGE_MONITOR_GATEWAY_URL | (none) | gateway probed by the websocket check (ws://host:port) |
| HEDGEBRIDGE_MONITOR_EXECUTION_LATENCY_MS | 500 | alert execution_latency above this |
| HEDGEBRIDGE_MONITOR_WEBSOCKET_LATENCY_MS | 20 | alert websocket_latency above this |
| HEDGEBRIDGE_MONITOR_SYNC_LATENCY_MS | 200 | alert sync_latency above this |
| HEDGEBRIDGE_MONITOR_CONSECUTIVE_FAILURES | 3 | alert consecutive_failures at this many orders in a row |
| HEDGEBRIDGE_MONITOR_FAILURE_WINDOW_S | 300 | ... within this window (and resolved after it without failure) |
| HEDGEBRIDGE_MONITOR_DOWNTIME_S | 300 | alert terminal_down after this long disconnected |
| HEDGEBRIDGE_MONITOR_MARGIN_LEVEL_PCT | 100 | alert margin_level under this margin level (%) |
| HEDGEBRIDGE_MONITOR_SILENT_S | 60 | alert terminal_silent after this long without an event |
| HEDGEBRIDGE_MONITOR_RECOVERY_SAMPLES | 3 | latency alerts resolve after this many samples under it |
| HEDGEBRIDGE_MONITOR_CHECK_TERMINALS_S | 30 | interval of the terminal checks (heartbeats, account updates) |
| HEDGEBRIDGE_MONITOR_CHECK_WEBSOCKET_S | 10 | interval of the websocket check (gateway liveness and probe) |
| HEDGEBRIDGE_MONITOR_CHECK_COORDINATOR_S | 60 | interval of the coordinator and position sync checks |
| HEDGEBRIDGE_MONITOR_CHECK_INFRA_S | 10 | interval of the NATS, cache and data integrity checks |
| HEDGEBRIDGE_MONITOR_STALE_S | 30 | no heartbeat (or gateway liveness) this long fails |
| HEDGEBRIDGE_MONITOR_ACCOUNT_STALE_S | 60 | no ACCOUNT_UPDATE this long fails the terminals check |
| HEDGEBRIDGE_MONITOR_EVALUATE_MS | 1000 | how often the time-driven rules (downtime, silence) are evaluated |
| HEDGEBRIDGE_MONITOR_REPORT_MS | 2000 | how often MONITOR_REPORT and HEALTH are published |
| HEDGEBRIDGE_MONITOR_READY_ON_CHECKS | false | the system health checks join /readyz (else only the monitor's own) |
| HEDGEBRIDGE_MONITOR_HEALTH_PORT | 0 (off) | /healthz, /readyz and /metrics on this port (containers: 8080) |
| HEDGEBRIDGE_MONITOR_HEALTH_HOST | 0.0.0.0 | the address those endpoints listen on |
| HEDGEBRIDGE_LOG_LEVEL / HEDGEBRIDGE_LOG_FORMAT | INFO / json | logging |
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import msgspec

from hedgebridge.common.config import ConfigError, load

from .rules import Thresholds

PREFIX = "HEDGEBRIDGE_MONITOR_"


class MonitorConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_startup_timeout_s: float = 30.0
    redis_url: str = ""
    stream_replicas: int = 1
    id: str = ""
    gateway_url: str = ""
    execution_latency_ms: float = 500.0
    websocket_latency_ms: float = 20.0
    sync_latency_ms: float = 200.0
    consecutive_failures: int = 3
    failure_window_s: float = 300.0
    downtime_s: float = 300.0
    margin_level_pct: float = 100.0
    silent_s: float = 60.0
    recovery_samples: int = 3
    check_terminals_s: float = 30.0
    check_websocket_s: float = 10.0
    check_coordinator_s: float = 60.0
    check_infra_s: float = 10.0
    stale_s: float = 30.0
    account_stale_s: float = 60.0
    evaluate_ms: int = 1000
    report_ms: int = 2000
    ready_on_checks: bool = False
    health_host: str = "0.0.0.0"
    health_port: int = 0
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def monitor_id(self) -> str:
        return self.id or f"mon-{socket.gethostname()}-{os.getpid()}"

    def thresholds(self) -> Thresholds:
        return Thresholds(
            execution_latency_ms=self.execution_latency_ms,
            websocket_latency_ms=self.websocket_latency_ms,
            sync_latency_ms=self.sync_latency_ms,
            consecutive_failures=self.consecutive_failures,
            failure_window_s=self.failure_window_s,
            downtime_s=self.downtime_s,
            margin_level_pct=self.margin_level_pct,
            silent_s=self.silent_s,
            recovery_samples=self.recovery_samples,
        )


def from_env(environ: Mapping[str, str] | None = None) -> MonitorConfig:
    cfg = load(MonitorConfig, PREFIX, environ)
    positive = {
        "EXECUTION_LATENCY_MS": cfg.execution_latency_ms,
        "WEBSOCKET_LATENCY_MS": cfg.websocket_latency_ms,
        "SYNC_LATENCY_MS": cfg.sync_latency_ms,
        "CONSECUTIVE_FAILURES": cfg.consecutive_failures,
        "FAILURE_WINDOW_S": cfg.failure_window_s,
        "DOWNTIME_S": cfg.downtime_s,
        "SILENT_S": cfg.silent_s,
        "RECOVERY_SAMPLES": cfg.recovery_samples,
        "CHECK_TERMINALS_S": cfg.check_terminals_s,
        "CHECK_WEBSOCKET_S": cfg.check_websocket_s,
        "CHECK_COORDINATOR_S": cfg.check_coordinator_s,
        "CHECK_INFRA_S": cfg.check_infra_s,
        "STALE_S": cfg.stale_s,
        "ACCOUNT_STALE_S": cfg.account_stale_s,
        "EVALUATE_MS": cfg.evaluate_ms,
        "REPORT_MS": cfg.report_ms,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{PREFIX}{name} must be positive")
    if cfg.margin_level_pct < 0:
        raise ConfigError(f"{PREFIX}MARGIN_LEVEL_PCT must not be negative")
    if cfg.gateway_url and not cfg.gateway_url.startswith(("ws://", "wss://")):
        raise ConfigError(f"{PREFIX}GATEWAY_URL must start with ws:// or wss://")
    return cfg
