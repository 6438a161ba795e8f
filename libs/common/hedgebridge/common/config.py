"""Typed configuration from environment variables.

Each service declares one msgspec Struct. A field ``foo_bar`` of a service whose prefix is
``HEDGEBRIDGE_GATEWAY_`` is read from ``HEDGEBRIDGE_GATEWAY_FOO_BAR``; the fields every service shares
(``SHARED``) are read from ``HEDGEBRIDGE_<FIELD>`` (``HEDGEBRIDGE_NATS_URL``, ``HEDGEBRIDGE_JWT_SECRET``…).
Values are converted to the field's type; a bad value is a ``ConfigError`` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

ROOT = "HEDGEBRIDGE_"
SHARED = frozenset(
    {"nats_url", "nats_startup_timeout_s", "redis_url", "jwt_secret", "log_level", "log_format", "stream_replicas"}
    | {"tracing", "otlp_endpoint", "profile"}  # observability (hedgebridge.common.obs, .profiles)
)


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the environment variable."""


def env_name(prefix: str, field: str) -> str:
    return f"{ROOT}{field.upper()}" if field in SHARED else f"{prefix}{field.upper()}"


def env_names(kind: type[msgspec.Struct], prefix: str) -> dict[str, str]:
    """Field name -> environment variable, for every field of ``kind``."""
    return {f.name: env_name(prefix, f.name) for f in msgspec.structs.fields(kind)}


def load(kind: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    for field, var in env_names(kind, prefix).items():
        if var in env:
            raw[field] = env[var]
    try:
        return msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        for field, var in env_names(kind, prefix).items():
            if f"`$.{field}`" in text:
                raise ConfigError(f"{var}: {text.split(' - at ')[0]}") from None
        raise ConfigError(text) from None
