"""An action whose run fails inside the coordinator (its record cannot be written: JetStream lost its quorum)
is answered UNSETTLED with the code INTERNAL and its actionId — its outcome is not known, never REJECTED
(which says nothing was sent) — and asked again with the same actionId once JetStream is back, it settles."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hedgebridge.common import bus
from hedgebridge.common.servers import NatsCluster, ValkeyServer
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import FINAL_ACTION_STATES, ActionLeg, ActionRequest, ActionState, errors, pack, subjects
from hedgebridge.protocol import unpack as decode
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import make_terminals, run_terminals

from ..conftest import executor_config, gateway_config
from ..helpers import ea_token, wait_for
from .conftest import coordinator_config

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    nodes = NatsCluster(tmp_path / "cluster", size=3)
    nodes.start()
    yield nodes
    nodes.stop()


async def test_an_action_failing_inside_the_coordinator_is_unsettled_internal_then_settles(
    cluster: NatsCluster, cache_server: ValkeyServer, secret: str
) -> None:
    url = cluster.nodes[0].url  # everything on the node that stays up
    redis_url = f"{cache_server.url}/0"
    gateway = Gateway(gateway_config(url, secret, id="gw-internal", stream_replicas=3))
    executor = Executor(executor_config(url, redis_url, stream_replicas=3))
    coordinator = Coordinator(coordinator_config(url, redis_url, stream_replicas=3))
    for service in (gateway, executor, coordinator):
        await service.start()
    stop = asyncio.Event()
    terminals = make_terminals(
        f"ws://127.0.0.1:{gateway.port}/ea",
        ["I1", "I2"],
        lambda a: ea_token(secret, a),
        SimConfig(fill_latency_ms=2, tick_interval_ms=0),
        seed=7,
    )
    running = asyncio.create_task(run_terminals(terminals, stop))
    nc = await bus.connect(url, "internal-test")
    legs = [
        ActionLeg(account_id="I1", symbol="EURUSD", side="BUY", volume=1.0),
        ActionLeg(account_id="I2", symbol="EURUSD", side="SELL", volume=1.0),
    ]
    hedge = ActionRequest(action_id="h-internal", kind="HEDGE_ENTRY", legs=legs)
    try:
        await wait_for(lambda: all(t.connected.is_set() for t in terminals), "the terminals to connect")
        for node in cluster.nodes[1:]:
            node.kill()  # the actions' records cannot be written now
        reply = await nc.request(subjects.ACTION_REQUEST, pack(hedge), timeout=60)
        answer = decode(reply.data, ActionState)
        assert (answer.action_id, answer.state, answer.code) == ("h-internal", "UNSETTLED", errors.INTERNAL)
        for node in cluster.nodes[1:]:
            node.start()
        await asyncio.to_thread(cluster.wait_healthy, 60)
        final: ActionState | None = None

        async def settled() -> bool:
            nonlocal final
            try:
                data = (await nc.request(subjects.ACTION_REQUEST, pack(hedge), timeout=20)).data
            except Exception:  # the streams electing their leaders
                return False
            final = decode(data, ActionState)
            return final.state in FINAL_ACTION_STATES

        await wait_for(settled, lambda: f"the action to settle (last: {final})", timeout_s=60, interval_s=0.5)
        assert final is not None
        assert final.state == "COMPLETED", final
        for terminal in terminals:  # each leg executed once
            assert len([a for a in terminal.account.received if a.startswith("h-internal")]) == 1
    finally:
        stop.set()
        await running
        await nc.close()
        for service in (coordinator, executor, gateway):
            await service.stop()
