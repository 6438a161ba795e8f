"""Services as processes: clear exits for what stops them from starting."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hedgebridge.common import auth, bus, streams
from hedgebridge.common.servers import NatsCluster, NatsServer, ValkeyServer, free_port
from hedgebridge.executor.service import Executor

from ..conftest import executor_config

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


@pytest.fixture
def leaderless(tmp_path: Path) -> Iterator[NatsCluster]:
    """A three-node cluster of which only the first node runs: NATS answers, JetStream has no meta leader."""
    cluster = NatsCluster(tmp_path / "cluster", size=3)
    cluster.nodes[0].start()
    yield cluster
    cluster.stop()


def test_jetstream_that_never_answers_at_start_exits_69_with_the_reason(leaderless: NatsCluster) -> None:
    for module in ("executor", "coordinator"):
        result = run_service(
            module,
            HEDGEBRIDGE_NATS_URL=leaderless.nodes[0].url,
            HEDGEBRIDGE_NATS_STARTUP_TIMEOUT_S="3",
            HEDGEBRIDGE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        )
        assert result.returncode == 69, (module, result.stderr[-2000:])
        assert "JetStream did not answer within 3s" in result.stderr, module


async def test_a_service_started_before_jetstream_has_a_leader_starts_once_it_has(
    leaderless: NatsCluster, cache_server: ValkeyServer
) -> None:
    url = leaderless.nodes[0].url
    executor = Executor(executor_config(url, f"{cache_server.url}/0", nats_startup_timeout_s=120.0))
    starting = asyncio.create_task(executor.start())
    try:
        nc = await bus.connect(url, "leaderless-test")
        try:
            with pytest.raises(streams.NOT_READY):  # no meta leader yet: the executor is still waiting
                await nc.jetstream().account_info()
        finally:
            await nc.close()
        assert not starting.done()
        for node in leaderless.nodes[1:]:
            await asyncio.to_thread(node.start)
        await asyncio.wait_for(starting, 120)
        assert executor.state.orders is not None  # its streams and buckets are set up
    finally:
        if not starting.done():
            starting.cancel()
        await executor.stop()
