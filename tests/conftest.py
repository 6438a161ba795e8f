"""Fixtures: real nats-server (JetStream) and valkey-server processes on free ports, and the services.

Every server is started here on a port chosen at random and stopped at the end of the test; tests may kill
and restart them. Nothing here touches servers the machine runs for itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.executor.config import ExecutorConfig
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.config import GatewayConfig
from hedgebridge.gateway.server import Gateway
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import SimTerminal, make_terminals, run_terminals

from . import containers
from .helpers import ea_token, wait_for
from .mt5.terminals import EaBuild, build_ea_for_tests, prebuild_eas

StartSims = Callable[..., Awaitable[list[SimTerminal]]]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    # in a container with HEDGEBRIDGE_TEST_CONTAINERS=1 and a Docker engine (tests/containers.py)
    server = (
        containers.NatsContainer(tmp_path / "nats") if containers.use_containers() else NatsServer(tmp_path / "nats")
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cache_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = (
        containers.ValkeyContainer(tmp_path / "cache")
        if containers.use_containers()
        else ValkeyServer(tmp_path / "cache")
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def secret() -> str:
    return auth.new_secret()


def gateway_config(nats_url: str, secret: str, **overrides: object) -> GatewayConfig:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "jwt_secret": secret,
        "port": 0,
        "heartbeat_interval_ms": 200,
        "heartbeat_timeout_ms": 3000,
        "max_frame_bytes": 64 * 1024,
    }
    values.update(overrides)
    return GatewayConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(nats_server: NatsServer, secret: str) -> AsyncIterator[Gateway]:
    gw = Gateway(gateway_config(nats_server.url, secret, id="gw-test-1"))
    await gw.start()
    yield gw
    await gw.stop()


@pytest.fixture
def ea_url(gateway: Gateway) -> str:
    return f"ws://127.0.0.1:{gateway.port}/ea"


def executor_config(nats_url: str, redis_url: str, **overrides: object) -> ExecutorConfig:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "redis_url": redis_url,
        "order_timeout_ms": 3000,
        "delivery_timeout_ms": 1000,
        "command_ttl_ms": 300,
        "retry_base_ms": 10,
        "lease_ms": 1500,
        "sync_timeout_ms": 1000,
        "cache_check_ms": 100,
        "id": "ex-test-1",
    }
    values.update(overrides)
    return ExecutorConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def executor(nats_server: NatsServer, cache_server: ValkeyServer) -> AsyncIterator[Executor]:
    ex = Executor(executor_config(nats_server.url, f"{cache_server.url}/0"))
    await ex.start()
    yield ex
    await ex.stop()


@pytest.fixture
async def sims(ea_url: str, secret: str, executor: Executor) -> AsyncIterator[StartSims]:
    """Start simulated terminals on the test gateway: ``await sims(["A1"], fill_latency_ms=5)``."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(accounts: list[str], **config: object) -> list[SimTerminal]:
        terminals = make_terminals(
            ea_url,
            accounts,
            lambda a: ea_token(secret, a),
            SimConfig(**config),  # type: ignore[arg-type]
            seed=3,
        )
        stop = asyncio.Event()
        stops.append((stop, asyncio.create_task(run_terminals(terminals, stop))))
        await wait_for(lambda: all(t.connected.is_set() for t in terminals), "simulated terminals to connect")
        return terminals

    yield start
    for stop, task in stops:
        stop.set()
        await task


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Integration tests run the compiled EAs: build them before the first test starts its timeout."""
    if any(item.get_closest_marker("integration") for item in session.items):
        prebuild_eas()


@pytest.fixture(scope="session")
def ea_dll_build() -> EaBuild:
    """The compiled EA with the DLL transport and the WebSocket library it imports, built once per session."""
    return build_ea_for_tests("dll")


@pytest.fixture(scope="session")
def ea_native_build() -> EaBuild:
    """The compiled EA with the native (MQL5 sockets) transport, built once per session."""
    return build_ea_for_tests("native")


# --- the fault suite (tests/faults): its options, and its recovery times in the summary --------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults", "the fault suite (tests/faults)")
    group.addoption("--faults-long", action="store_true", help="run the fault suite's long mode")
    group.addoption("--faults-rounds", type=int, default=None, help="rounds of faults (long mode; default 5)")
    group.addoption("--faults-seed", type=int, default=1, help="the seed of the fault schedule")


@pytest.fixture
def faults_options(request: pytest.FixtureRequest) -> tuple[int, int]:
    """(seed, rounds): one round in the short mode, ``--faults-rounds`` (default 5) with ``--faults-long``."""
    config = request.config
    rounds = config.getoption("--faults-rounds")
    if not config.getoption("--faults-long"):
        rounds = 1
    return int(config.getoption("--faults-seed")), int(rounds or 5)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fault suite's test gets time for its rounds (a round takes well under a minute)."""
    rounds = config.getoption("--faults-rounds") or 5
    for item in items:
        if item.get_closest_marker("faults"):
            limit = 240 if not config.getoption("--faults-long") else 120 + 90 * rounds
            item.add_marker(pytest.mark.timeout(limit))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from .faults.nemesis import RECOVERY, recovery_table

    if RECOVERY:
        terminalreporter.section("fault suite: recovery times")
        for line in recovery_table(RECOVERY):
            terminalreporter.write_line(line)
