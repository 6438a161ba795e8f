"""Monitor configuration, from environment variables (prefix ``HEDGEBRIDGE_MONITOR_``).

| variable                                       | default               | meaning                         |
|------------------------------------------------|-----------------------|---------------------------------|
| HEDGEBRIDGE_NATS_URL                           | nats://127.0.0.1:4222 | NATS server(s), comma-separated |
| HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S | 30 | give up (exit 69) when NATS is unreachable at start |
| HEDGEBRIDGE_LOG_LEVEL / HEDGEBRIDGE_LOG_FORMAT | INFO / json           | logging                         |
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from hedgebridge.common.config import load

PREFIX = "HEDGEBRIDGE_MONITOR_"


class MonitorConfig(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    nats_startup_timeout_s: float = 30.0
    log_level: str = "INFO"
    log_format: str = "json"


def from_env(environ: Mapping[str, str] | None = None) -> MonitorConfig:
    return load(MonitorConfig, PREFIX, environ)
