"""Typed configuration from environment variables."""

from __future__ import annotations

import msgspec
import pytest

from hedgebridge.common.config import ConfigError, env_names, load
from hedgebridge.executor.config import from_env as executor_from_env
from hedgebridge.gateway.config import from_env as gateway_from_env


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://default:1"
    port: int = 8765
    verbose: bool = False


def test_defaults_and_conversion() -> None:
    assert load(Sample, "HB_X_", {}) == Sample()
    loaded = load(Sample, "HB_X_", {"HEDGEBRIDGE_NATS_URL": "nats://n:1", "HB_X_PORT": "9000", "HB_X_VERBOSE": "true"})
    assert loaded == Sample(nats_url="nats://n:1", port=9000, verbose=True)
    assert env_names(Sample, "HB_X_") == {
        "nats_url": "HEDGEBRIDGE_NATS_URL",
        "port": "HB_X_PORT",
        "verbose": "HB_X_VERBOSE",
    }


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="HB_X_PORT"):
        load(Sample, "HB_X_", {"HB_X_PORT": "eighty"})


def test_service_checks() -> None:
    secret = "k" * 32
    with pytest.raises(ConfigError, match="HEDGEBRIDGE_JWT_SECRET"):
        gateway_from_env({})
    with pytest.raises(ConfigError, match="HEARTBEAT_TIMEOUT_MS"):
        gateway_from_env({"HEDGEBRIDGE_JWT_SECRET": secret, "HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS": "500"})
    config = gateway_from_env({"HEDGEBRIDGE_JWT_SECRET": secret, "HEDGEBRIDGE_GATEWAY_PORT": "9999"})
    assert (config.port, config.heartbeat_interval_ms) == (9999, 1000)
    with pytest.raises(ConfigError, match="DELIVERY_TIMEOUT_MS"):
        executor_from_env({"HEDGEBRIDGE_EXECUTOR_ORDER_TIMEOUT_MS": "100"})
    assert executor_from_env({"HEDGEBRIDGE_REDIS_URL": "redis://r:1/0"}).redis_url == "redis://r:1/0"
