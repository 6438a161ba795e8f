"""The Dockerfile and docker-compose.yml, checked without a Docker engine: hadolint, the Compose JSON schema,
and consistency with the code (every command is a real subcommand, every variable is one a service reads)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from hedgebridge.cli.main import build_parser
from hedgebridge.common import bus
from hedgebridge.common.config import env_names
from hedgebridge.common.config_docs import render as _render
from hedgebridge.common.servers import nats_server_binary
from hedgebridge.coordinator.config import PREFIX as COORDINATOR_PREFIX
from hedgebridge.coordinator.config import CoordinatorConfig
from hedgebridge.executor.config import PREFIX as EXECUTOR_PREFIX
from hedgebridge.executor.config import ExecutorConfig
from hedgebridge.gateway.config import PREFIX as GATEWAY_PREFIX
from hedgebridge.gateway.config import GatewayConfig
from hedgebridge.monitor.config import PREFIX as MONITOR_PREFIX
from hedgebridge.monitor.config import MonitorConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# read by compose itself or by the image's HEALTHCHECK, not by a service
COMPOSE_ONLY = {"HEDGEBRIDGE_GATEWAY_PUBLISHED_PORT", "HEDGEBRIDGE_HEALTHCHECK_PORT"}
CONFIGS: tuple[tuple[type[Any], str], ...] = (
    (GatewayConfig, GATEWAY_PREFIX),
    (ExecutorConfig, EXECUTOR_PREFIX),
    (MonitorConfig, MONITOR_PREFIX),
    (CoordinatorConfig, COORDINATOR_PREFIX),
    (bus.NatsSecurity, bus.SECURITY_PREFIX),  # read by every service through bus.connect
)


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_schema() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_commands_are_real_subcommands() -> None:
    parser = build_parser()
    checked = 0
    for name, service in _compose()["services"].items():
        if service.get("image") != "hedgebridge:local":
            continue
        parser.parse_args(service["command"])  # exits (SystemExit) on an unknown command or option
        test = service.get("healthcheck", {}).get("test")
        if test:
            assert test[:2] == ["CMD", "hedgebridge"], name
            parser.parse_args(test[2:])
        checked += 1
    assert checked == 5


def _defaults() -> dict[str, set[str]]:
    """Every variable the services read -> its default(s) in the configuration Structs."""
    found: dict[str, set[str]] = {}
    for config, prefix in CONFIGS:
        names = env_names(config, prefix)
        for field in msgspec.structs.fields(config):
            found.setdefault(names[field.name], set()).add(_render(field.default))
    return found


def _example() -> dict[str, tuple[str, bool]]:
    """.env.example: variable -> (value, commented out)."""
    entries: dict[str, tuple[str, bool]] = {}
    for match in re.finditer(r"^(# )?(HEDGEBRIDGE_[A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M):
        assert match[2] not in entries, f"{match[2]} is in .env.example twice"
        entries[match[2]] = (match[3], bool(match[1]))
    return entries


def test_every_variable_a_service_reads_is_documented_with_its_default() -> None:
    defaults, example = _defaults(), _example()
    missing = sorted(set(defaults) - set(example))
    assert not missing, f"not in .env.example: {missing}"
    unknown = sorted(set(example) - set(defaults) - COMPOSE_ONLY)
    assert not unknown, f"in .env.example but read by no service: {unknown}"
    for name, (value, commented) in example.items():
        if commented:  # optional: the documented value is the default
            assert value in defaults[name], f"{name}: .env.example says {value!r}, the default is {defaults[name]}"
    required = {name for name, (_, commented) in example.items() if not commented}
    assert {"HEDGEBRIDGE_JWT_SECRET", "HEDGEBRIDGE_NATS_PASSWORD"} <= required


def test_compose_reads_only_documented_variables() -> None:
    text = COMPOSE.read_text()
    defaults, example = _defaults(), _example()
    in_compose = set(re.findall(r"\b(HEDGEBRIDGE_[A-Z0-9_]+)\b", text))
    assert in_compose - COMPOSE_ONLY <= set(defaults), in_compose - COMPOSE_ONLY - set(defaults)
    interpolated = set(re.findall(r"\$\{(HEDGEBRIDGE_[A-Z0-9_]+)", text))
    uncommented = {name for name, (_, commented) in example.items() if not commented}
    assert interpolated == uncommented  # what compose substitutes is set in the copied .env


def test_compose_stack_shape() -> None:
    services = _compose()["services"]
    nats = services["nats"]
    assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in nats["volumes"]
    assert any(str(v).startswith("nats-data:") for v in nats["volumes"])
    assert nats["command"] == ["-c", "/etc/nats/nats.conf"]
    cache_command = services["cache"]["command"]
    assert cache_command[cache_command.index("--save") + 1] == ""  # a cache: nothing kept on disk
    assert cache_command[cache_command.index("--appendonly") + 1] == "no"
    for name in ("gateway", "executor", "coordinator", "monitor"):
        service = services[name]
        assert service["healthcheck"]["test"][-1] == "--http", name  # the service's /healthz
        conditions = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert conditions.get("nats") == "service_healthy", name
        assert service["env_file"] == [{"path": ".env", "required": False}], name
    for name in ("executor", "coordinator"):
        assert services[name]["depends_on"]["cache"]["condition"] == "service_healthy", name
    assert services["sim"]["profiles"] == ["demo"]
    assert services["sim"]["depends_on"]["gateway"]["condition"] == "service_healthy"


def test_the_nats_configuration_is_valid_and_syncs_every_write() -> None:
    config = ROOT / "deploy" / "nats" / "nats.conf"
    assert re.search(r"^\s*sync_interval:\s*always\s*$", config.read_text(), flags=re.M)
    env = {"NATS_USER": "hedgebridge", "NATS_PASSWORD": "a-password-for-the-check", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([nats_server_binary(), "-t", "-c", str(config)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_final_stage_is_slim_unprivileged_and_checks_health() -> None:
    stages = re.split(r"^FROM ", (ROOT / "Dockerfile").read_text(), flags=re.M)[1:]
    assert len(stages) == 2, "a build stage and a final stage"
    final = stages[-1]
    assert final.startswith("python:3.11-slim")
    assert re.search(r"^USER 10001", final, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", final, flags=re.M)
    assert not re.search(r"apt-get|gcc|build-essential|COPY (libs|services|cli)", final)  # wheels only
    assert 'ENTRYPOINT ["hedgebridge"]' in final
