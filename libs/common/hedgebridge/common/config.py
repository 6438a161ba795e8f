"""Typed configuration from environment variables, and the settings the services share.

Each service declares one msgspec Struct. A field ``foo_bar`` of a service whose prefix is
``HEDGEBRIDGE_GATEWAY_`` is read from ``HEDGEBRIDGE_GATEWAY_FOO_BAR``; the fields every service shares
(``SHARED``) are read from ``HEDGEBRIDGE_<FIELD>`` (``HEDGEBRIDGE_NATS_URL``, ``HEDGEBRIDGE_JWT_SECRET``…).
Values are converted to the field's type; a bad value is a ``ConfigError`` naming the variable.

The shared fields are declared once, in three bases a service's Struct inherits from:

- ``ServiceConfig``: NATS, tracing, logging (every service);
- ``HealthConfig``: ``/healthz``, ``/readyz`` and ``/metrics`` on a port of their own (every service but the
  gateway, which serves them on its own port);
- ``BackendConfig``: the JetStream replicas and the realtime cache (executor, coordinator, monitor).

Every field carries its one-line meaning (``setting``); the tables of variables in the READMEs and
``.env.example`` are generated from the Structs (``hedgebridge.common.config_docs``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

ROOT = "HEDGEBRIDGE_"
SHARED = frozenset(
    {"nats_url", "nats_startup_timeout_s", "redis_url", "jwt_secret", "log_level", "log_format", "stream_replicas"}
    | {"tracing", "otlp_endpoint", "profile"}  # observability (hedgebridge.common.obs, .profiles)
    | {"event_loop"}  # read before the rest, when the process starts its loop (hedgebridge.common.loop)
)
STREAM_REPLICAS = (1, 3, 5)


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the environment variable."""


def setting(meaning: str, *, default: str | None = None) -> msgspec.Meta:
    """A field's one-line meaning, and its default as the docs show it when the value is computed
    (``ex-<host>-<pid>`` for an empty id)."""
    return msgspec.Meta(description=meaning, extra=None if default is None else {"default": default})


def env_name(prefix: str, field: str) -> str:
    return f"{ROOT}{field.upper()}" if field in SHARED else f"{prefix}{field.upper()}"


def env_names(kind: type[msgspec.Struct], prefix: str) -> dict[str, str]:
    """Field name -> environment variable, for every field of ``kind``."""
    return {f.name: env_name(prefix, f.name) for f in msgspec.structs.fields(kind)}


def load(kind: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """``kind`` from the environment; a ``ServiceConfig`` is also checked for the shared values."""
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    for field, var in env_names(kind, prefix).items():
        if var in env:
            raw[field] = env[var]
    try:
        config = msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for field, var in env_names(kind, prefix).items():
            if f"`$.{field}`" in text:
                raise ConfigError(f"{var}: {text.split(' - at ')[0]}") from None
        raise ConfigError(text) from None
    if isinstance(config, ServiceConfig):
        config.check_shared()
    return config


class ServiceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What every service reads: NATS, tracing, logging."""

    nats_url: Annotated[str, setting("NATS server(s), comma-separated")] = "nats://127.0.0.1:4222"
    nats_startup_timeout_s: Annotated[
        float,
        setting("give up (exit 69) when NATS is unreachable, or JetStream does not answer, at start for this long"),
    ] = 30.0
    tracing: Annotated[bool, setting("OpenTelemetry spans (no export)")] = False
    otlp_endpoint: Annotated[str, setting("export spans over OTLP/HTTP to this URL (tracing on)")] = ""
    log_level: Annotated[str, setting("logging level: DEBUG, INFO, WARNING, ERROR")] = "INFO"
    log_format: Annotated[str, setting("json (one JSON line per record, on stderr) or text")] = "json"
    event_loop: Annotated[
        str, setting("asyncio, or uvloop (when the uvloop package is installed): the event loop the process runs on")
    ] = "asyncio"

    def check_shared(self) -> None:
        """Raise ConfigError (naming the variable) for a shared value that cannot work."""


class HealthConfig(ServiceConfig, frozen=True, kw_only=True):
    """A service that serves /healthz, /readyz and /metrics on a port of its own."""

    health_host: Annotated[str, setting("the address /healthz, /readyz and /metrics listen on")] = "0.0.0.0"
    health_port: Annotated[int, setting("/healthz, /readyz and /metrics on this port; 0: off (containers: 8080)")] = 0


def check_stream_replicas(replicas: int) -> None:
    if replicas not in STREAM_REPLICAS:
        raise ConfigError(f"{ROOT}STREAM_REPLICAS must be 1, 3 or 5")


class BackendConfig(HealthConfig, frozen=True, kw_only=True):
    """A service that keeps state in JetStream and reads the realtime cache."""

    stream_replicas: Annotated[
        int, setting("replicas of the JetStream streams and buckets: 1, or 3 (5) on a three-node (five-node) cluster")
    ] = 1
    redis_url: Annotated[
        str,
        setting(
            "the cache: redis:// or rediss:// (one server), redis+sentinel://h:p,h:p/<master>/<db> (Sentinel),"
            " redis+cluster://h:p,h:p (Redis Cluster)"
        ),
    ] = "redis://127.0.0.1:6379/0"

    def check_shared(self) -> None:
        super().check_shared()
        check_stream_replicas(self.stream_replicas)
