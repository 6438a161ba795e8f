"""Coordinator configuration, from environment variables (prefix ``HEDGEBRIDGE_COORDINATOR_``).

| variable                                     | default                  | meaning                                   |
|----------------------------------------------|--------------------------|-------------------------------------------|
| HEDGEBRIDGE_NATS_URL                         | nats://127.0.0.1:4222    | NATS server(s), comma-separated           |
| HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S           | 30                       | give up (exit 69) when NATS is            |
|                                              |                          | unreachable at start                      |
| HEDGEBRIDGE_REDIS_URL                        | redis://127.0.0.1:6379/0 | the realtime cache (CLOSE_ALL positions)  |
| HEDGEBRIDGE_COORDINATOR_ID                   | co-<host>-<pid>          | this replica's name (logs, action leases) |
| HEDGEBRIDGE_COORDINATOR_ACTION_TIMEOUT_MS    | 30000                    | how long a request waits for a final      |
|                                              |                          | state before the answer is the latest one |
|                                              |                          | (UNSETTLED); an action's ``timeoutMs``    |
|                                              |                          | overrides it                              |
| HEDGEBRIDGE_COORDINATOR_LEG_TIMEOUT_MS       | 10000                    | each leg's order timeout at the executor  |
| HEDGEBRIDGE_COORDINATOR_LEG_TTL_MS           | 0                        | each leg's time-to-live while its account |
|                                              |                          | is unreachable (0: the executor's)        |
| HEDGEBRIDGE_COORDINATOR_LEASE_MS             | 5000                     | an action's lease; a replica that holds   |
|                                              |                          | none takes over actions whose lease ran   |
|                                              |                          | out (their coordinator died)              |
| HEDGEBRIDGE_COORDINATOR_SYNC_TIMEOUT_MS      | 3000                     | CLOSE_ALL: wait this long for a fresh     |
|                                              |                          | snapshot of an account the cache lacks    |
| HEDGEBRIDGE_COORDINATOR_RECONCILE_INTERVAL_MS| 60000                    | full consistency pass every interval      |
| HEDGEBRIDGE_COORDINATOR_RECONCILE_DEBOUNCE_MS| 250                      | check an account this long after its      |
|                                              |                          | last POSITION_UPDATE                      |
| HEDGEBRIDGE_COORDINATOR_ORPHAN_GRACE_MS      | 5000                     | a position younger than this is never an  |
|                                              |                          | orphan (it may be opening right now)      |
| HEDGEBRIDGE_COORDINATOR_CONFLICT_RESOLUTION  | REPORT                   | REPORT, CLOSE_ORPHANS or DROP_MISSING     |
| HEDGEBRIDGE_STREAM_REPLICAS                  | 1                        | JetStream replicas of the shared state    |
| HEDGEBRIDGE_COORDINATOR_HEALTH_PORT | 0 (off) | /healthz, /readyz and /metrics on this port (containers: 8080) |
| HEDGEBRIDGE_COORDINATOR_HEALTH_HOST | 0.0.0.0 | the address those endpoints listen on |
| HEDGEBRIDGE_TRACING | false | OpenTelemetry spans (no export) |
| HEDGEBRIDGE_OTLP_ENDPOINT | (none) | export spans over OTLP/HTTP (tracing on) |
| HEDGEBRIDGE_LOG_LEVEL, HEDGEBRIDGE_LOG_FORMAT| INFO / json              | logging                                   |
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Literal

import msgspec

from hedgebridge.common.config import ConfigError, load

PREFIX = "HEDGEBRIDGE_COORDINATOR_"

ConflictResolution = Literal["REPORT", "CLOSE_ORPHANS", "DROP_MISSING"]


class CoordinatorConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_startup_timeout_s: float = 30.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    id: str = ""
    action_timeout_ms: int = 30_000
    leg_timeout_ms: int = 10_000
    leg_ttl_ms: int = 0
    lease_ms: int = 5_000
    sync_timeout_ms: int = 3_000
    reconcile_interval_ms: int = 60_000
    reconcile_debounce_ms: int = 250
    orphan_grace_ms: int = 5_000
    conflict_resolution: ConflictResolution = "REPORT"
    health_host: str = "0.0.0.0"
    health_port: int = 0
    tracing: bool = False
    otlp_endpoint: str = ""
    stream_replicas: int = 1
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def coordinator_id(self) -> str:
        return self.id or f"co-{socket.gethostname()}-{os.getpid()}"


_POSITIVE = ("action_timeout_ms", "leg_timeout_ms", "lease_ms", "sync_timeout_ms", "reconcile_interval_ms")
_NOT_NEGATIVE = ("leg_ttl_ms", "reconcile_debounce_ms", "orphan_grace_ms")


def check(cfg: CoordinatorConfig) -> CoordinatorConfig:
    """Raise ConfigError (naming the variable) for values that cannot work."""
    for name in _POSITIVE:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{PREFIX}{name.upper()} must be positive")
    for name in _NOT_NEGATIVE:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{PREFIX}{name.upper()} must not be negative")
    if cfg.leg_timeout_ms > 600_000 or cfg.action_timeout_ms > 600_000 or cfg.leg_ttl_ms > 600_000:
        raise ConfigError(f"{PREFIX}*_MS timeouts are at most 600000")
    if cfg.stream_replicas not in (1, 3, 5):
        raise ConfigError("HEDGEBRIDGE_STREAM_REPLICAS must be 1, 3 or 5")
    return cfg


def from_env(environ: Mapping[str, str] | None = None) -> CoordinatorConfig:
    return check(load(CoordinatorConfig, PREFIX, environ))
