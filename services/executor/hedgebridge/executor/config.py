"""Executor configuration: the ``ExecutorConfig`` Struct, read from ``HEDGEBRIDGE_EXECUTOR_*`` and the shared
``HEDGEBRIDGE_*`` settings (``hedgebridge.common.config.BackendConfig``), and the checks of its values.

Every field carries its meaning. The table of the variables, their defaults and meanings is generated from
the Struct: at the end of this docstring (at import), and in README.md, "Configuration" (``python -m
hedgebridge.cli.config_tables``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated

from hedgebridge.common.config import BackendConfig, ConfigError, load, setting
from hedgebridge.common.config_docs import with_table

from .run_phases import Limits

PREFIX = "HEDGEBRIDGE_EXECUTOR_"


class ExecutorConfig(BackendConfig, frozen=True, kw_only=True):
    order_timeout_ms: Annotated[int, setting("wait for a terminal's result, then answer OUTCOME_UNKNOWN")] = 10_000
    delivery_timeout_ms: Annotated[int, setting("wait for the gateway's delivery ack")] = 2_000
    command_ttl_ms: Annotated[
        int,
        setting("keep asking while no gateway holds the account, then answer EXPIRED (an order's ttlMs overrides it)"),
    ] = 3_000
    max_attempts: Annotated[
        int, setting("sends of one order when the trade server asks for a retry (requote, price changed)")
    ] = 3
    retry_base_ms: Annotated[int, setting("first retry backoff, doubling")] = 50
    lease_ms: Annotated[int, setting("an order whose owner stops renewing its lease this long is taken over")] = 5_000
    lease_after_ms: Annotated[
        int,
        setting(
            "an order running longer than this gets a lease (a shorter one whose executor dies is found by the"
            " search for orders nobody owns, or when its actionId is asked again)"
        ),
    ] = 20
    fence_margin_ms: Annotated[
        int,
        setting(
            "a command's notAfter (after which gateways refuse it unsent) is this long before the earliest moment"
            " another replica may take its order over: the clock skew allowed between executors and gateways"
            " (below half of LEASE_MS)",
            default="a third of LEASE_MS",
        ),
    ] = 0
    orphan_lookback_ms: Annotated[
        int, setting("at start, look this far back for orders whose executor died before writing their lease")
    ] = 3_600_000
    reconcile_timeout_ms: Annotated[
        int, setting("keep trying to reconcile an order whose outcome is unknown this long")
    ] = 300_000
    sync_timeout_ms: Annotated[int, setting("wait for a terminal's answer to SYNC")] = 2_000
    cache_check_ms: Annotated[int, setting("how often the cache is checked for a flush (then rebuilt)")] = 1_000
    id: Annotated[str, setting("this replica's name in logs", default="ex-<host>-<pid>")] = ""

    @property
    def fence_margin_s(self) -> float:
        return (self.fence_margin_ms or self.lease_ms / 3) / 1000

    @property
    def limits(self) -> Limits:
        """The limits of the order runs, from these settings."""
        return Limits(
            delivery_timeout_s=self.delivery_timeout_ms / 1000,
            max_attempts=self.max_attempts,
            retry_base_ms=self.retry_base_ms,
            reconcile_timeout_s=self.reconcile_timeout_ms / 1000,
            sync_timeout_s=self.sync_timeout_ms / 1000,
            lease_after_s=self.lease_after_ms / 1000,
            queued_grace_s=self.lease_ms / 2000,  # half a lease: see ``leases``
            lease_s=self.lease_ms / 1000,
            fence_margin_s=self.fence_margin_s,
        )

    @property
    def executor_id(self) -> str:
        return self.id or f"ex-{socket.gethostname()}-{os.getpid()}"


def from_env(environ: Mapping[str, str] | None = None) -> ExecutorConfig:
    cfg = load(ExecutorConfig, PREFIX, environ)
    if cfg.command_ttl_ms < 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_COMMAND_TTL_MS must not be negative")
    if cfg.max_attempts < 1 or cfg.retry_base_ms < 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_MAX_ATTEMPTS must be at least 1, RETRY_BASE_MS not negative")
    if cfg.lease_after_ms < 0 or cfg.orphan_lookback_ms < 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_LEASE_AFTER_MS and ORPHAN_LOOKBACK_MS must not be negative")
    if min(cfg.lease_ms, cfg.reconcile_timeout_ms, cfg.sync_timeout_ms, cfg.cache_check_ms) <= 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_{LEASE,RECONCILE_TIMEOUT,SYNC_TIMEOUT,CACHE_CHECK}_MS must be positive")
    if not 0 <= cfg.fence_margin_ms * 2 < cfg.lease_ms:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_FENCE_MARGIN_MS must not be negative, and below half of LEASE_MS")
    if cfg.order_timeout_ms <= 0 or cfg.delivery_timeout_ms <= 0:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_*_TIMEOUT_MS must be positive")
    if cfg.delivery_timeout_ms >= cfg.order_timeout_ms:
        raise ConfigError("HEDGEBRIDGE_EXECUTOR_DELIVERY_TIMEOUT_MS must be below ORDER_TIMEOUT_MS")
    return cfg


__doc__ = with_table(__doc__, ExecutorConfig, PREFIX)
