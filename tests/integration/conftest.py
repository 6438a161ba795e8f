"""Fixtures for the integration tests of this directory: coordinators on the test servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.coordinator.config import CoordinatorConfig
from hedgebridge.coordinator.service import Coordinator

StartCoordinator = Callable[..., Awaitable[Coordinator]]


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
