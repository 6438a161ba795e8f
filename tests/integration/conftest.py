"""Fixtures for the integration tests of this directory: coordinators on the test servers, compiled EAs behind
the test gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.coordinator.config import CoordinatorConfig
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import Event, subjects, unpack_event
from hedgebridge.sim.ea.launch import CompiledEa, EaSettings

from ..helpers import ea_token
from ..mt5.terminals import Bridges, EaBuild

StartCoordinator = Callable[..., Awaitable[Coordinator]]
StartEa = Callable[[str, str, EaSettings], Awaitable[CompiledEa]]


def coordinator_config(nats_url: str, redis_url: str, **overrides: object) -> CoordinatorConfig:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "redis_url": redis_url,
        "action_timeout_ms": 15_000,
        "leg_timeout_ms": 3_000,
        "lease_ms": 1_000,
        "sync_timeout_ms": 1_500,
        "reconcile_interval_ms": 600_000,
        "reconcile_debounce_ms": 50,
        "orphan_grace_ms": 2_000,
        "id": "co-test-1",
    }
    values.update(overrides)
    return CoordinatorConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def start_coordinator(nats_server: NatsServer, cache_server: ValkeyServer) -> AsyncIterator[StartCoordinator]:
    """Start coordinators: ``await start_coordinator(id="co-2", conflict_resolution="DROP_MISSING")``."""
    started: list[Coordinator] = []

    async def start(**overrides: object) -> Coordinator:
        coordinator = Coordinator(coordinator_config(nats_server.url, f"{cache_server.url}/0", **overrides))
        await coordinator.start()
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in reversed(started):
        await coordinator.stop()


@pytest.fixture
async def coordinator(start_coordinator: StartCoordinator) -> Coordinator:
    return await start_coordinator()


@pytest.fixture(params=["native", "dll"])
def ea_build(request: pytest.FixtureRequest) -> EaBuild:
    """The compiled EA, once with each transport."""
    built: EaBuild = request.getfixturevalue(f"ea_{request.param}_build")
    return built


@pytest.fixture
async def start_ea(ea_build: EaBuild, gateway: Gateway, secret: str, tmp_path: Path) -> AsyncIterator[StartEa]:
    """``await start_ea(account, name, settings)``: an EA whose terminal files (and trade server) are ``name``'s;
    starting the same name again is a restart of that terminal's EA. All are stopped at the end."""
    running: list[CompiledEa] = []

    async def start(account: str, name: str, settings: EaSettings) -> CompiledEa:
        ea = await CompiledEa.start(
            ea_build.binary,
            ea_build.transport,
            account=account,
            token=ea_token(secret, account),
            gateway_host="127.0.0.1",
            gateway_port=gateway.port,
            files_dir=tmp_path / name,
            dll_path=ea_build.dll_path,
            settings=settings,
        )
        running.append(ea)
        return ea

    yield start
    await asyncio.gather(*(ea.stop() for ea in running), return_exceptions=True)


@pytest.fixture
async def bridges(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Bridges]:
    """MT5 bridges on the simulated package, their books under ``tmp_path/books``; all stopped at the end."""
    running = Bridges(nats_server.url, tmp_path / "books")
    yield running
    await running.close()


@pytest.fixture
async def events(nc: NatsClient) -> AsyncIterator[list[Event]]:
    """Every terminal event published (``hb.ea.*.evt.>``), in order."""
    seen: list[Event] = []

    async def collect(msg: Msg) -> None:
        seen.append(unpack_event(msg.data))

    sub = await nc.subscribe(subjects.ALL_EVENTS, cb=collect)
    await nc.flush()
    yield seen
    await sub.unsubscribe()
