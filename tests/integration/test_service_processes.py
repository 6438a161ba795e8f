"""Services as processes: clear exits for what stops them from starting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, free_port

pytestmark = pytest.mark.integration


def run_service(module: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", f"hedgebridge.{module}"], env=environment, capture_output=True, text=True, timeout=60
    )


def test_missing_secret_is_a_configuration_error() -> None:
    result = run_service("gateway")
    assert result.returncode == 78
    assert "HEDGEBRIDGE_JWT_SECRET" in result.stderr


def test_unreachable_nats_at_start_exits_69() -> None:
    for module in ("executor", "monitor"):
        result = run_service(
            module,
            HEDGEBRIDGE_NATS_URL=f"nats://127.0.0.1:{free_port()}",
            HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S="1",
        )
        assert result.returncode == 69, module
        assert "cannot reach NATS" in result.stderr


def test_a_taken_port_exits_69(nats_server: NatsServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_service(
            "gateway",
            HEDGEBRIDGE_NATS_URL=nats_server.url,
            HEDGEBRIDGE_JWT_SECRET=auth.new_secret(),
            HEDGEBRIDGE_GATEWAY_PORT=str(taken.getsockname()[1]),
        )
    assert result.returncode == 69
    assert "cannot listen" in result.stderr
