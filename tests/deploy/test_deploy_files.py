"""The Dockerfile and docker-compose.yml, checked without a Docker engine: hadolint, the Compose JSON schema,
and consistency with the code (every command is a real subcommand, every variable is one a service reads)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hedgebridge.cli.main import build_parser
from hedgebridge.common.config import env_names
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
COMPOSE_ONLY = {"HEDGEBRIDGE_GATEWAY_PUBLISHED_PORT"}  # read by compose itself, not by a service


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


def test_every_variable_is_read_by_a_service_and_documented() -> None:
    read = set()
    for config, prefix in (
        (GatewayConfig, GATEWAY_PREFIX),
        (ExecutorConfig, EXECUTOR_PREFIX),
        (MonitorConfig, MONITOR_PREFIX),
        (CoordinatorConfig, COORDINATOR_PREFIX),
    ):
        read |= set(env_names(config, prefix).values())
    text = COMPOSE.read_text()
    in_compose = set(re.findall(r"\b(HEDGEBRIDGE_[A-Z_]+)\b", text))
    assert in_compose - COMPOSE_ONLY <= read, in_compose - COMPOSE_ONLY - read
    example = set(re.findall(r"^(HEDGEBRIDGE_[A-Z_]+)=", (ROOT / ".env.example").read_text(), flags=re.M))
    interpolated = set(re.findall(r"\$\{(HEDGEBRIDGE_[A-Z_]+)", text))
    assert interpolated == example
