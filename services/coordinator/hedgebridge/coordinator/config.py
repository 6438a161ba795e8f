"""Coordinator configuration: the ``CoordinatorConfig`` Struct, read from ``HEDGEBRIDGE_COORDINATOR_*`` and the
shared ``HEDGEBRIDGE_*`` settings (``hedgebridge.common.config.BackendConfig``), and the checks of its values.

Every field carries its meaning. The table of the variables, their defaults and meanings is generated from
the Struct: at the end of this docstring (at import), and in README.md, "Configuration" (``python -m
hedgebridge.cli.config_tables``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated, Literal

from hedgebridge.common.config import BackendConfig, ConfigError, load, setting
from hedgebridge.common.config_docs import with_table

PREFIX = "HEDGEBRIDGE_COORDINATOR_"

ConflictResolution = Literal["REPORT", "CLOSE_ORPHANS", "DROP_MISSING"]


class CoordinatorConfig(BackendConfig, frozen=True, kw_only=True):
    id: Annotated[str, setting("this replica's name (logs, action leases)", default="co-<host>-<pid>")] = ""
    action_timeout_ms: Annotated[
        int,
        setting(
            "how long a request waits for a final state before the answer is the latest one (UNSETTLED); an"
            " action's timeoutMs overrides it"
        ),
    ] = 30_000
    leg_timeout_ms: Annotated[int, setting("each leg's order timeout at the executor")] = 10_000
    leg_ttl_ms: Annotated[
        int, setting("each leg's time-to-live while its account is unreachable (0: the executor's)")
    ] = 0
    lease_ms: Annotated[
        int,
        setting(
            "an action's lease; a replica that holds none takes over actions whose lease ran out (their"
            " coordinator died)"
        ),
    ] = 5_000
    sync_timeout_ms: Annotated[
        int, setting("CLOSE_ALL: wait this long for a fresh snapshot of an account the cache lacks")
    ] = 3_000
    reconcile_interval_ms: Annotated[int, setting("full consistency pass every interval")] = 60_000
    reconcile_debounce_ms: Annotated[int, setting("check an account this long after its last POSITION_UPDATE")] = 250
    orphan_grace_ms: Annotated[
        int, setting("a position younger than this is never an orphan (it may be opening right now)")
    ] = 5_000
    conflict_resolution: Annotated[
        ConflictResolution, setting("what a consistency conflict leads to: REPORT, CLOSE_ORPHANS or DROP_MISSING")
    ] = "REPORT"

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
    return cfg


def from_env(environ: Mapping[str, str] | None = None) -> CoordinatorConfig:
    return check(load(CoordinatorConfig, PREFIX, environ))


__doc__ = with_table(__doc__, CoordinatorConfig, PREFIX)
