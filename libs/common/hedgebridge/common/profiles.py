"""Latency and throughput profiles (design §9.1), chosen by one setting: ``HEDGEBRIDGE_PROFILE``.

A profile sets the defaults of individual settings; a variable set explicitly still wins.

| setting (variable)                              | latency (default) | throughput         |
|-------------------------------------------------|-------------------|--------------------|
| HEDGEBRIDGE_GATEWAY_COMPRESSION (permessage-deflate on /ea and /client) | false | true      |
| HEDGEBRIDGE_GATEWAY_CLIENT_BATCH_MAX (frames per write to a client) | 1  | 50                 |
| HEDGEBRIDGE_GATEWAY_CLIENT_PRIORITY (results and action states before prices) | true | false (FIFO) |
| HEDGEBRIDGE_GATEWAY_HEARTBEAT_INTERVAL_MS (asked of terminals in WELCOME) | 1000 | 5000       |
| HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS         | 3500              | 15000              |
| simulated terminals' reconnect                   | immediate         | exponential backoff |
| the executor's cache writes (``cache_writer``)   | every event, in order | latest per key (coalesced, counted) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .config import ROOT, ConfigError

Name = Literal["latency", "throughput"]
VARIABLE = f"{ROOT}PROFILE"


@dataclass(frozen=True, slots=True)
class Profile:
    name: Name
    compression: bool
    batch_max: int
    priority_queue: bool
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    immediate_reconnect: bool
    coalesce_cache: bool

    def gateway_defaults(self) -> dict[str, str]:
        """The gateway's variables this profile gives defaults to."""
        prefix = f"{ROOT}GATEWAY_"
        return {
            f"{prefix}COMPRESSION": str(self.compression).lower(),
            f"{prefix}CLIENT_BATCH_MAX": str(self.batch_max),
            f"{prefix}CLIENT_PRIORITY": str(self.priority_queue).lower(),
            f"{prefix}HEARTBEAT_INTERVAL_MS": str(self.heartbeat_interval_ms),
            f"{prefix}HEARTBEAT_TIMEOUT_MS": str(self.heartbeat_timeout_ms),
        }


PROFILES: dict[str, Profile] = {
    "latency": Profile("latency", False, 1, True, 1000, 3500, True, False),
    "throughput": Profile("throughput", True, 50, False, 5000, 15000, False, True),
}


def named(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"{VARIABLE}: {name!r} is not a profile (latency or throughput)") from None


def current(environ: Mapping[str, str] | None = None) -> Profile:
    env = os.environ if environ is None else environ
    return named(env.get(VARIABLE, "latency") or "latency")


def with_defaults(environ: Mapping[str, str] | None, defaults: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with ``defaults`` filled in for the variables it does not set."""
    env = dict(os.environ if environ is None else environ)
    return {**defaults, **env}
