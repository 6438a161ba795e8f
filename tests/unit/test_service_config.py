"""Typed configuration from environment variables: the shared bases every service reads the same way, and
the tables of variables generated from the Structs."""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import msgspec
import pytest

from hedgebridge.cli import config_tables
from hedgebridge.common import config_docs, loop
from hedgebridge.common.config import BackendConfig, ConfigError, HealthConfig, ServiceConfig, env_names, load
from hedgebridge.coordinator import config as coordinator_config
from hedgebridge.executor import config as executor_config
from hedgebridge.executor.config import from_env as executor_from_env
from hedgebridge.gateway import config as gateway_config
from hedgebridge.gateway.config import from_env as gateway_from_env
from hedgebridge.monitor import config as monitor_config
from hedgebridge.mt5bridge import config as mt5bridge_config


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


# --- the shared bases, read the same way by every service ----------------------------------------------------

REQUIRED = {  # what a service needs before anything else can be checked
    "gateway": {"HEDGEBRIDGE_JWT_SECRET": "k" * 32},
    "mt5bridge": {"HEDGEBRIDGE_MT5BRIDGE_ACCOUNT_ID": "A1"},
}
REQUIRED_FIELDS = {"gateway": {"jwt_secret": "k" * 32}, "mt5bridge": {"account_id": "A1"}}
SERVICES = {
    "gateway": (gateway_config, ServiceConfig),
    "executor": (executor_config, BackendConfig),
    "coordinator": (coordinator_config, BackendConfig),
    "monitor": (monitor_config, BackendConfig),
    "mt5bridge": (mt5bridge_config, HealthConfig),
}
StructType = type[msgspec.Struct]


def _struct(module: ModuleType) -> StructType:
    (kind,) = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, msgspec.Struct) and v.__module__ == module.__name__
    ]
    return kind


def _from_env(name: str, env: dict[str, str]) -> Any:
    return SERVICES[name][0].from_env({**REQUIRED.get(name, {}), **env})


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_reads_the_shared_fields_from_the_shared_names(name: str) -> None:
    module, base = SERVICES[name]
    assert issubclass(_struct(module), base)
    env = {
        "HEDGEBRIDGE_NATS_URL": "nats://n1:14222,nats://n2:14222",
        "HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S": "2.5",
        "HEDGEBRIDGE_TRACING": "true",
        "HEDGEBRIDGE_OTLP_ENDPOINT": "http://otel:4318",
        "HEDGEBRIDGE_LOG_LEVEL": "DEBUG",
        "HEDGEBRIDGE_LOG_FORMAT": "text",
        "HEDGEBRIDGE_STREAM_REPLICAS": "3",
        "HEDGEBRIDGE_REDIS_URL": "redis://cache:1/2",
        f"{module.PREFIX}HEALTH_PORT": "9100",
        f"{module.PREFIX}HEALTH_HOST": "127.0.0.1",
    }
    config = _from_env(name, env)
    assert isinstance(config, ServiceConfig)
    assert (config.nats_url, config.nats_startup_timeout_s) == ("nats://n1:14222,nats://n2:14222", 2.5)
    assert (config.tracing, config.otlp_endpoint) == (True, "http://otel:4318")
    assert (config.log_level, config.log_format) == ("DEBUG", "text")
    if isinstance(config, HealthConfig):
        assert (config.health_host, config.health_port) == ("127.0.0.1", 9100)
    if isinstance(config, BackendConfig):
        assert (config.stream_replicas, config.redis_url) == (3, "redis://cache:1/2")
    names = env_names(_struct(module), module.PREFIX)
    for field in msgspec.structs.fields(base):
        expected = f"{module.PREFIX}{field.name.upper()}" if field.name.startswith("health_") else None
        assert names[field.name] == (expected or f"HEDGEBRIDGE_{field.name.upper()}"), field.name


@pytest.mark.parametrize(
    ("name", "variable", "value", "attribute", "expected"),
    [
        ("gateway", "HEDGEBRIDGE_GATEWAY_MAX_FRAME_BYTES", "4096", "max_frame_bytes", 4096),
        ("executor", "HEDGEBRIDGE_EXECUTOR_ORDER_TIMEOUT_MS", "20000", "order_timeout_ms", 20_000),
        ("coordinator", "HEDGEBRIDGE_COORDINATOR_LEG_TTL_MS", "1500", "leg_ttl_ms", 1500),
        ("monitor", "HEDGEBRIDGE_MONITOR_READY_ON_CHECKS", "true", "ready_on_checks", True),
        ("mt5bridge", "HEDGEBRIDGE_MT5BRIDGE_HISTORY_DAYS", "7", "history_days", 7),
    ],
)
def test_a_service_field_is_read_from_the_service_prefix_only(
    name: str, variable: str, value: str, attribute: str, expected: object
) -> None:
    assert getattr(_from_env(name, {variable: value}), attribute) == expected
    unprefixed = variable.replace(SERVICES[name][0].PREFIX, "HEDGEBRIDGE_")
    default = getattr(_struct(SERVICES[name][0])(**REQUIRED_FIELDS.get(name, {})), attribute)
    assert getattr(_from_env(name, {unprefixed: value}), attribute) == default


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bad_shared_values_name_the_variable(name: str) -> None:
    prefix = SERVICES[name][0].PREFIX
    with pytest.raises(ConfigError, match=r"^HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S: Expected `float`"):
        _from_env(name, {"HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S": "soon"})
    with pytest.raises(ConfigError, match=r"^HEDGEBRIDGE_TRACING: Expected `bool`"):
        _from_env(name, {"HEDGEBRIDGE_TRACING": "maybe"})
    if issubclass(_struct(SERVICES[name][0]), HealthConfig):
        with pytest.raises(ConfigError, match=f"^{prefix}HEALTH_PORT: Expected `int`"):
            _from_env(name, {f"{prefix}HEALTH_PORT": "eighty"})


@pytest.mark.parametrize("name", ["gateway", "executor", "coordinator", "monitor"])
def test_stream_replicas_are_checked_once_for_every_service_that_creates_streams(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^HEDGEBRIDGE_STREAM_REPLICAS must be 1, 3 or 5$"):
        _from_env(name, {"HEDGEBRIDGE_STREAM_REPLICAS": "2"})
    assert _from_env(name, {"HEDGEBRIDGE_STREAM_REPLICAS": "5"}).stream_replicas == 5


def test_host_dependent_ids_keep_their_names() -> None:
    assert executor_config.ExecutorConfig().executor_id.startswith("ex-")
    assert executor_config.ExecutorConfig(id="ex-1").executor_id == "ex-1"
    assert coordinator_config.CoordinatorConfig().coordinator_id.startswith("co-")
    assert monitor_config.MonitorConfig().monitor_id.startswith("mon-")
    assert mt5bridge_config.Mt5BridgeConfig(account_id="A1").bridge_id.startswith("mt5-")
    assert gateway_config.GatewayConfig().gateway_id.startswith("gw-")


# --- the documentation, generated from the Structs ------------------------------------------------------------


def test_the_generated_tables_match_the_structs() -> None:
    stale = config_tables.stale()
    assert not stale, f"out of date: {stale}; run `{config_tables.COMMAND}` to write them again"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_field_has_a_meaning_and_the_module_docstring_its_table(name: str) -> None:
    module = SERVICES[name][0]
    kind = _struct(module)
    rows = config_docs.variables(kind, module.PREFIX)
    assert [r.name for r in rows] == list(env_names(kind, module.PREFIX).values())
    assert all(r.meaning for r in rows)
    assert (module.__doc__ or "").endswith(config_docs.text_table(rows))


def test_documented_defaults() -> None:
    rows = {r.name: r for r in config_docs.variables(gateway_config.GatewayConfig, gateway_config.PREFIX)}
    assert (rows["HEDGEBRIDGE_GATEWAY_ID"].default, rows["HEDGEBRIDGE_GATEWAY_ID"].value) == ("gw-<host>-<pid>", "")
    assert rows["HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S"].value == "30"
    assert rows["HEDGEBRIDGE_GATEWAY_CLIENT_PRIORITY"].value == "true"
    assert rows["HEDGEBRIDGE_GATEWAY_CLIENT_BATCH_MAX"].default == "1, throughput: 50"  # from the profiles
    assert rows["HEDGEBRIDGE_GATEWAY_TLS_CERT"].default == "(none)"

    class Undocumented(msgspec.Struct):
        port: int = 1

    with pytest.raises(ValueError, match=r"Undocumented\.port has no meaning"):
        config_docs.variables(Undocumented, "HB_X_")


def test_a_table_that_drifted_is_written_again() -> None:
    readme = (config_tables.REPO / "README.md").read_text()
    drifted = readme.replace(
        "| `HEDGEBRIDGE_EXECUTOR_LEASE_MS` | `5000` |", "| `HEDGEBRIDGE_EXECUTOR_LEASE_MS` | `500` |"
    )
    assert drifted != readme
    assert config_tables.markdown_file(drifted) == readme
    example = (config_tables.REPO / ".env.example").read_text()
    without = example.replace("# HEDGEBRIDGE_MONITOR_SILENT_S=60\n", "")
    assert without != example
    assert config_tables.env_example(without) == example


def test_env_example_lists_the_variables_set_above_the_generated_part_once() -> None:
    head = "# set these\nHEDGEBRIDGE_JWT_SECRET=\nHEDGEBRIDGE_LOG_LEVEL=INFO\n"
    text = config_tables.env_example(head)
    assert text.startswith(head.rstrip("\n") + "\n\n" + config_tables.GENERATED)
    for name in ("HEDGEBRIDGE_JWT_SECRET", "HEDGEBRIDGE_LOG_LEVEL"):
        assert text.count(f"{name}=") == 1
    assert "# HEDGEBRIDGE_NATS_TOKEN=\n" in text
    assert "HEDGEBRIDGE_MT5BRIDGE_" not in text  # compose runs no bridge


# names a README uses that no configuration Struct declares: read by the CLI (state, client commands) or the tests
NOT_A_SERVICE_SETTING = {
    loop.ENV,  # read by service.run before any configuration Struct is loaded (common/loop.py)
    "HEDGEBRIDGE_HOME",
    "HEDGEBRIDGE_CLIENT_URL",
    "HEDGEBRIDGE_TOKEN",
    "HEDGEBRIDGE_TEST_CONTAINERS",
}


def test_every_variable_the_readmes_name_is_one_a_service_reads() -> None:
    read = {v.name for s in config_tables.SERVICES for v in config_docs.variables(s.kind, s.prefix)}
    read |= {v.name for v in config_tables.NATS_SECURITY}
    for name in (*config_tables.MARKDOWN, "services/coordinator/README.md"):
        named = set(re.findall(r"\bHEDGEBRIDGE_[A-Z0-9_]*[A-Z0-9]\b", (config_tables.REPO / name).read_text()))
        assert not named - read - NOT_A_SERVICE_SETTING, f"{name} names variables no service reads"
