"""The services on a three-node NATS cluster (pip-installed nats-server on loopback, routes between the
nodes, JetStream clustered) with every stream and bucket replicated three times: orders and actions go
through, and keep going through when one node is killed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.common import bus, streams
from hedgebridge.common.servers import NatsCluster, ValkeyServer
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import ActionLeg, ActionRequest, ActionState, OpenOrder, OrderResult, pack, subjects, unpack
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


async def _ask(nc: NatsClient, subject: str, body: OpenOrder | ActionRequest, timeout_s: float) -> bytes | None:
    try:
        reply = await nc.request(subject, pack(body), timeout=timeout_s)
    except (NoRespondersError, NatsTimeoutError):
        return None
    return reply.data


async def _filled(nc: NatsClient, request: OpenOrder) -> OrderResult:
    """Ask until the order has a final result: the same actionId every time, so it executes once at most."""
    result: OrderResult | None = None

    async def done() -> bool:
        nonlocal result
        data = await _ask(nc, subjects.ORDER_REQUEST, request, 5.0)
        result = unpack(data, OrderResult) if data else None
        return result is not None and result.status not in ("IN_FLIGHT", "OUTCOME_UNKNOWN", "EXPIRED")

    await wait_for(done, lambda: f"order {request.action_id} to finish (last: {result})", timeout_s=60)
    assert result is not None
    return result


async def test_orders_and_actions_on_a_three_node_cluster_survive_a_node(
    cluster: NatsCluster, cache_server: ValkeyServer, secret: str
) -> None:
    url = cluster.url
    redis_url = f"{cache_server.url}/0"
    gateway = Gateway(gateway_config(url, secret, id="gw-cluster", stream_replicas=3))
    executor = Executor(executor_config(url, redis_url, stream_replicas=3, order_timeout_ms=5000))
    coordinator = Coordinator(coordinator_config(url, redis_url, stream_replicas=3))
    await gateway.start()
    await executor.start()
    await coordinator.start()
    stop = asyncio.Event()
    terminals = make_terminals(
        f"ws://127.0.0.1:{gateway.port}/ea",
        ["C1", "C2"],
        lambda a: ea_token(secret, a),
        SimConfig(fill_latency_ms=2, tick_interval_ms=0),
        seed=5,
    )
    running = asyncio.create_task(run_terminals(terminals, stop))
    nc = await bus.connect(url, "cluster-test")
    try:
        await wait_for(lambda: all(t.connected.is_set() for t in terminals), "the terminals to connect")
        info = await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2  # a leader and two replicas on the other nodes
        for bucket in (subjects.ORDERS_BUCKET, subjects.BOOK_BUCKET, streams.REVOKED_BUCKET):
            status = await (await nc.jetstream().key_value(bucket)).status()
            assert status.stream_info.config.num_replicas == 3, bucket

        first = await _filled(nc, OpenOrder(account_id="C1", symbol="EURUSD", side="BUY", volume=0.1, action_id="o-1"))
        assert first.status == "FILLED"
        legs = [
            ActionLeg(account_id="C1", symbol="EURUSD", side="BUY", volume=1.0),
            ActionLeg(account_id="C2", symbol="EURUSD", side="SELL", volume=1.0),
        ]
        hedge = ActionRequest(action_id="h-1", kind="HEDGE_ENTRY", legs=legs)
        data = await _ask(nc, subjects.ACTION_REQUEST, hedge, 30)
        assert data is not None
        assert unpack(data, ActionState).state == "COMPLETED"

        # kill the node holding the events stream's leadership (the hardest one to lose), mid-way
        leader = info.cluster.leader
        victim = next(n for n in cluster.nodes if f"hedgebridge-{n.port}" == leader)
        victim.kill()
        after = await _filled(nc, OpenOrder(account_id="C2", symbol="EURUSD", side="SELL", volume=0.2, action_id="o-2"))
        assert after.status == "FILLED"
        again = await _filled(nc, OpenOrder(account_id="C2", symbol="EURUSD", side="SELL", volume=0.2, action_id="o-2"))
        assert (again.status, again.duplicate) == ("FILLED", True)  # recorded once, in the replicated bucket
        assert terminals[1].account.received.count("o-2") == 1

        async def new_leader() -> bool:
            try:
                now = await nc.jetstream().stream_info(subjects.EVENTS_STREAM)
            except Exception:  # a request during the election may time out
                return False
            return now.cluster is not None and now.cluster.leader not in (None, leader)

        await wait_for(new_leader, "another node to lead the events stream", timeout_s=30)
    finally:
        stop.set()
        await running
        await nc.close()
        await coordinator.stop()
        await executor.stop()
        await gateway.stop()
