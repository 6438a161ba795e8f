"""Executor configuration, from environment variables (prefix ``HEDGEBRIDGE_EXECUTOR_``).

| variable                                  | default                    | meaning                                   |
|-------------------------------------------|----------------------------|-------------------------------------------|
| HEDGEBRIDGE_NATS_URL                      | nats://127.0.0.1:4222      | NATS server(s), comma-separated           |
| HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S | 30 | give up (exit 69) when NATS is unreachable at start |
| HEDGEBRIDGE_REDIS_URL                     | redis://127.0.0.1:6379/0   | the realtime cache                        |
| HEDGEBRIDGE_EXECUTOR_ORDER_TIMEOUT_MS     | 10000                      | wait for a terminal's result, then answer |
|                                           |                            | OUTCOME_UNKNOWN                           |
| HEDGEBRIDGE_EXECUTOR_DELIVERY_TIMEOUT_MS  | 2000                       | wait for the gateway's delivery ack       |
| HEDGEBRIDGE_EXECUTOR_OFFLINE_GRACE_MS     | 300                        | keep asking while no gateway holds the    |
|                                           |                            | account, then answer NOT_SENT             |
| HEDGEBRIDGE_EXECUTOR_ID                   | ex-<host>-<pid>            | this replica's name in logs               |
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
    offline_grace_ms: int = 300
    id: str = ""
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def executor_id(self) -> str:
        return self.id or f"ex-{socket.gethostname()}-{os.getpid()}"


def from_env(environ: Mapping[str, str] | None = None) -> ExecutorConfig:
    cfg = load(ExecutorConfig, PREFIX, environ)
    if cfg.offline_grace_ms < 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_OFFLINE_GRACE_MS must not be negative")
    if cfg.order_timeout_ms <= 0 or cfg.delivery_timeout_ms <= 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_*_TIMEOUT_MS must be positive")
    if cfg.delivery_timeout_ms >= cfg.order_timeout_ms:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_DELIVERY_TIMEOUT_MS must be below ORDER_TIMEOUT_MS")
    return cfg
