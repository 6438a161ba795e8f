"""Monitor configuration: the ``MonitorConfig`` Struct, read from ``HEDGEBRIDGE_MONITOR_*`` and the shared
``HEDGEBRIDGE_*`` settings (``hedgebridge.common.config.BackendConfig``), the checks of its values, and the alert
thresholds it gives the rules.

Every field carries its meaning. The table of the variables, their defaults and meanings is generated from
the Struct: at the end of this docstring (at import), and in services/monitor/README.md (``python -m
hedgebridge.cli.config_tables``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated

from hedgebridge.common.config import BackendConfig, ConfigError, load, setting
from hedgebridge.common.config_docs import with_table

from .rules import Thresholds

PREFIX = "HEDGEBRIDGE_MONITOR_"


class MonitorConfig(BackendConfig, frozen=True, kw_only=True):
    redis_url: Annotated[
        str, setting("the cache whose reachability is checked (the URL forms of the other services); none: no check")
    ] = ""
    id: Annotated[str, setting("this instance's name in HEALTH reports", default="mon-<host>-<pid>")] = ""
    gateway_url: Annotated[str, setting("gateway probed by the websocket check (ws://host:port)")] = ""
    execution_latency_ms: Annotated[float, setting("alert execution_latency above this")] = 500.0
    websocket_latency_ms: Annotated[float, setting("alert websocket_latency above this")] = 20.0
    sync_latency_ms: Annotated[float, setting("alert sync_latency above this")] = 200.0
    consecutive_failures: Annotated[
        int, setting("alert consecutive_failures at this many failed orders in a row (within the window)")
    ] = 3
    failure_window_s: Annotated[
        float, setting("the window of consecutive_failures (resolved after it without a failure)")
    ] = 300.0
    downtime_s: Annotated[float, setting("alert terminal_down after this long disconnected")] = 300.0
    margin_level_pct: Annotated[float, setting("alert margin_level under this margin level (%)")] = 100.0
    silent_s: Annotated[float, setting("alert terminal_silent after this long without an event")] = 60.0
    recovery_samples: Annotated[int, setting("latency alerts resolve after this many samples under it")] = 3
    check_terminals_s: Annotated[float, setting("interval of the terminal checks (heartbeats, account updates)")] = 30.0
    check_websocket_s: Annotated[float, setting("interval of the websocket check (gateway liveness and probe)")] = 10.0
    check_coordinator_s: Annotated[float, setting("interval of the coordinator and position sync checks")] = 60.0
    check_infra_s: Annotated[float, setting("interval of the NATS, cache and data integrity checks")] = 10.0
    stale_s: Annotated[float, setting("no heartbeat (or gateway liveness) this long fails")] = 30.0
    account_stale_s: Annotated[float, setting("no ACCOUNT_UPDATE this long fails the terminals check")] = 60.0
    evaluate_ms: Annotated[int, setting("how often the time-driven rules (downtime, silence) are evaluated")] = 1000
    report_ms: Annotated[int, setting("how often MONITOR_REPORT and HEALTH are published")] = 2000
    ready_on_checks: Annotated[bool, setting("the system health checks join /readyz (else only the monitor's own)")] = (
        False
    )

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


__doc__ = with_table(__doc__, MonitorConfig, PREFIX)
