"""An order's result is recorded even when JetStream is briefly unavailable as it is written: on a three-node
cluster with two nodes down (no quorum for the replicated records, core NATS still up on the third), the
caller is answered, and the record is written once the nodes are back, with the result the caller got."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hedgebridge.common import bus
from hedgebridge.common.servers import NatsCluster, ValkeyServer
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import OpenedEvent, OrderRecord, subjects, unpack, utcnow

from ..conftest import executor_config, gateway_config
from ..helpers import order, wait_for
from .test_orders import ScriptedEa, buy

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    nodes = NatsCluster(tmp_path / "cluster", size=3)
    nodes.start()
    yield nodes
    nodes.stop()


async def test_a_result_written_while_jetstream_has_no_quorum_is_written_when_it_is_back(
    cluster: NatsCluster, cache_server: ValkeyServer, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = cluster.nodes[0].url  # everything on the node that stays up
    gateway = Gateway(gateway_config(url, secret, id="gw-quorum", stream_replicas=3))
    executor = Executor(
        executor_config(url, f"{cache_server.url}/0", stream_replicas=3, order_timeout_ms=20_000, lease_ms=120_000)
    )
    await gateway.start()
    await executor.start()
    nc = await bus.connect(url, "record-retry-test")
    ea = await ScriptedEa.connect(f"ws://127.0.0.1:{gateway.port}/ea", secret, "A1")
    try:
        pending = asyncio.create_task(order(nc, buy(action_id="no-quorum"), timeout_s=30))
        await wait_for(lambda: len(ea.opens()) == 1, "the OPEN")
        for node in cluster.nodes[1:]:
            node.kill()  # the records' stream has no quorum now
        command = ea.opens()[0]
        await ea.ea.send(
            OpenedEvent(
                timestamp=utcnow(),
                account_id="A1",
                position_id=command.position_id,
                action_id=command.action_id,
                mt_ticket="4242",
                price=1.1,
                volume=command.volume,
                status="SUCCESS",
            )
        )
        result = await pending
        assert (result.status, result.mt_ticket) == ("FILLED", "4242")
        failed = ("writing it again", "background order work failed")  # with and without the retry
        await wait_for(
            lambda: any(f in r.getMessage() for r in caplog.records for f in failed), "a failed write", timeout_s=30
        )
        for node in cluster.nodes[1:]:
            node.start()
        await asyncio.to_thread(cluster.wait_healthy, 60)

        async def recorded() -> bool:
            try:
                kv = await nc.jetstream().key_value(subjects.ORDERS_BUCKET)
                entry = await kv.get("no-quorum")
            except Exception:  # the bucket's stream electing a leader
                return False
            record = unpack(entry.value or b"", OrderRecord)
            return record.result is not None and record.result.status == "FILLED"

        await wait_for(recorded, "the result to be recorded", timeout_s=60)
        again = await order(nc, buy(action_id="no-quorum"))
        assert (again.status, again.duplicate, again.mt_ticket) == ("FILLED", True, "4242")
        assert len(ea.opens()) == 1
    finally:
        await ea.close()
        await nc.close()
        await executor.stop()
        await gateway.stop()
