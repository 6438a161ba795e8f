"""Executor configuration, from environment variables (prefix ``HEDGEBRIDGE_EXECUTOR_``).

| variable                                  | default                    | meaning                                   |
|-------------------------------------------|----------------------------|-------------------------------------------|
| HEDGEBRIDGE_NATS_URL                      | nats://127.0.0.1:4222      | NATS server(s), comma-separated           |
| HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S | 30 | give up (exit 69) when NATS is unreachable at start |
| HEDGEBRIDGE_REDIS_URL                     | redis://127.0.0.1:6379/0   | the realtime cache                        |
| HEDGEBRIDGE_EXECUTOR_ORDER_TIMEOUT_MS     | 10000                      | wait for a terminal's result, then answer |
|                                           |                            | OUTCOME_UNKNOWN                           |
| HEDGEBRIDGE_EXECUTOR_DELIVERY_TIMEOUT_MS  | 2000                       | wait for the gateway's delivery ack       |
| HEDGEBRIDGE_EXECUTOR_COMMAND_TTL_MS       | 3000                       | keep asking while no gateway holds the    |
|                                           |                            | account, then answer EXPIRED (an order's  |
|                                           |                            | ttlMs overrides it)                       |
| HEDGEBRIDGE_EXECUTOR_MAX_ATTEMPTS         | 3                          | sends of one order when the trade server  |
|                                           |                            | asks for a retry (requote, price changed) |
| HEDGEBRIDGE_EXECUTOR_RETRY_BASE_MS        | 50                         | first retry backoff, doubling             |
| HEDGEBRIDGE_EXECUTOR_LEASE_MS             | 5000                       | an order whose owner stops renewing its   |
|                                           |                            | lease this long is taken over             |
| HEDGEBRIDGE_EXECUTOR_LEASE_AFTER_MS       | 20                         | an order running longer than this gets a  |
|                                           |                            | lease (shorter ones are recovered when    |
|                                           |                            | their actionId is asked again)            |
| HEDGEBRIDGE_EXECUTOR_RECONCILE_TIMEOUT_MS | 300000                     | keep trying to reconcile an order whose   |
|                                           |                            | outcome is unknown this long              |
| HEDGEBRIDGE_EXECUTOR_SYNC_TIMEOUT_MS      | 2000                       | wait for a terminal's answer to SYNC      |
| HEDGEBRIDGE_EXECUTOR_CACHE_CHECK_MS       | 1000                       | how often the cache is checked for a      |
|                                           |                            | flush (then rebuilt)                      |
| HEDGEBRIDGE_STREAM_REPLICAS               | 1                          | replicas of JetStream streams and buckets |
| HEDGEBRIDGE_EXECUTOR_ID                   | ex-<host>-<pid>            | this replica's name in logs               |
| HEDGEBRIDGE_EXECUTOR_HEALTH_PORT | 0 (off) | /healthz, /readyz and /metrics on this port (containers: 8080) |
| HEDGEBRIDGE_EXECUTOR_HEALTH_HOST | 0.0.0.0 | the address those endpoints listen on |
| HEDGEBRIDGE_TRACING | false | OpenTelemetry spans (no export) |
| HEDGEBRIDGE_OTLP_ENDPOINT | (none) | export spans over OTLP/HTTP (tracing on) |
| HEDGEBRIDGE_LOG_LEVEL / HEDGEBRIDGE_LOG_FORMAT | INFO / json           | logging                                   |
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import msgspec

from hedgebridge.common.config import ConfigError, load

PREFIX = "HEDGEBRIDGE_EXECUTOR_"


class ExecutorConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_startup_timeout_s: float = 30.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    order_timeout_ms: int = 10_000
    delivery_timeout_ms: int = 2_000
    command_ttl_ms: int = 3_000
    max_attempts: int = 3
    retry_base_ms: int = 50
    lease_ms: int = 5_000
    lease_after_ms: int = 20
    reconcile_timeout_ms: int = 300_000
    sync_timeout_ms: int = 2_000
    cache_check_ms: int = 1_000
    health_host: str = "0.0.0.0"
    health_port: int = 0
    tracing: bool = False
    otlp_endpoint: str = ""
    stream_replicas: int = 1
    id: str = ""
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def executor_id(self) -> str:
        return self.id or f"ex-{socket.gethostname()}-{os.getpid()}"


def from_env(environ: Mapping[str, str] | None = None) -> ExecutorConfig:
    cfg = load(ExecutorConfig, PREFIX, environ)
    if cfg.command_ttl_ms < 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_COMMAND_TTL_MS must not be negative")
    if cfg.max_attempts < 1 or cfg.retry_base_ms < 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_MAX_ATTEMPTS must be at least 1, RETRY_BASE_MS not negative")
    if cfg.lease_after_ms < 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_LEASE_AFTER_MS must not be negative")
    if min(cfg.lease_ms, cfg.reconcile_timeout_ms, cfg.sync_timeout_ms, cfg.cache_check_ms) <= 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_{LEASE,RECONCILE_TIMEOUT,SYNC_TIMEOUT,CACHE_CHECK}_MS must be positive")
    if cfg.stream_replicas not in (1, 3, 5):
        raise ConfigError("HEDGEBRIDGE_STREAM_REPLICAS must be 1, 3 or 5")
    if cfg.order_timeout_ms <= 0 or cfg.delivery_timeout_ms <= 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_*_TIMEOUT_MS must be positive")
    if cfg.delivery_timeout_ms >= cfg.order_timeout_ms:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_DELIVERY_TIMEOUT_MS must be below ORDER_TIMEOUT_MS")
    return cfg
