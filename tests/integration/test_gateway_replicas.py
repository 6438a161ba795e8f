"""Gateway replicas as separate processes behind one NATS: a terminal may land on any of them, commands reach it
wherever it is, and a replica that stops tells its terminals to reconnect elsewhere (1001)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.common.servers import NatsServer, free_port, terminate, wait_for_port
from hedgebridge.executor.service import Executor
from hedgebridge.protocol import OpenCommand, OpenedEvent, OpenOrder, Welcome, utcnow
from hedgebridge.protocol.errors import CloseCode

from ..helpers import RawEa, ea_token, order, wait_for

pytestmark = pytest.mark.integration


class Replica:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ea"


@pytest.fixture
def replicas(nats_server: NatsServer, secret: str) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    for name in ("gw-a", "gw-b"):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
        env.update(
            HEDGEBRIDGE_NATS_URL=nats_server.url,
            HEDGEBRIDGE_JWT_SECRET=secret,
            HEDGEBRIDGE_GATEWAY_PORT=str(port),
            HEDGEBRIDGE_GATEWAY_ID=name,
            HEDGEBRIDGE_LOG_LEVEL="WARNING",
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "hedgebridge.gateway"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started.append(Replica(process, port))
    for replica in started:
        assert wait_for_port("127.0.0.1", replica.port, 30), "a gateway replica did not listen"
    yield started
    for replica in started:
        terminate(replica.process)


async def answer_opens(ea: RawEa, account: str, ticket: str) -> None:
    """Fill every OPEN this terminal receives."""
    while True:
        command = await ea.recv_type(OpenCommand, timeout_s=60)
        assert isinstance(command, OpenCommand)
        await ea.send(
            OpenedEvent(
                timestamp=utcnow(),
                account_id=account,
                position_id=command.position_id,
                action_id=command.action_id,
                mt_ticket=ticket,
                price=1.1,
                volume=command.volume,
                status="SUCCESS",
            )
        )


async def test_commands_reach_a_terminal_on_any_replica_and_a_stopping_replica_sends_it_elsewhere(
    replicas: list[Replica], executor: Executor, secret: str, nc: NatsClient
) -> None:
    first, second = replicas
    on_first = await RawEa.connect(first.url, ea_token(secret, "A1"))
    on_second = await RawEa.connect(second.url, ea_token(secret, "B1"))
    tasks: list[asyncio.Task[None]] = []
    try:
        for ea in (on_first, on_second):
            await ea.recv_type(Welcome)
            tasks.append(ea.keep_alive())
        answering_first = asyncio.create_task(answer_opens(on_first, "A1", "1"))
        tasks += [answering_first, asyncio.create_task(answer_opens(on_second, "B1", "2"))]
        buy = {"symbol": "EURUSD", "side": "BUY", "volume": 1.0}
        filled = await asyncio.gather(*(order(nc, OpenOrder(account_id=a, **buy)) for a in ("A1", "B1")))  # type: ignore[arg-type]
        assert [(r.status, r.mt_ticket) for r in filled] == [("FILLED", "1"), ("FILLED", "2")]

        answering_first.cancel()
        await asyncio.gather(answering_first, return_exceptions=True)
        first.process.terminate()  # a rolling update: the replica drains and tells its terminals to go elsewhere
        assert await on_first.closed() == CloseCode.GOING_AWAY
        moved = await RawEa.connect(second.url, ea_token(secret, "A1"))
        try:
            await moved.recv_type(Welcome)
            tasks += [moved.keep_alive(), asyncio.create_task(answer_opens(moved, "A1", "3"))]
            again = await order(nc, OpenOrder(account_id="A1", ttl_ms=5000, **buy))  # type: ignore[arg-type]
            assert (again.status, again.mt_ticket) == ("FILLED", "3")
        finally:
            await moved.close()
        await wait_for(lambda: first.process.poll() is not None, "the stopped replica to exit")
        assert first.process.returncode == 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ea in (on_first, on_second):
            await ea.close()
