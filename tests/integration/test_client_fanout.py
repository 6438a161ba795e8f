"""The fan-out of action and order states to many client API subscribers, one of which never reads."""

from __future__ import annotations

import base64
import os

import pytest
from nats.aio.client import Client as NatsClient
from websockets.asyncio.client import connect

from hedgebridge.common.servers import NatsServer
from hedgebridge.gateway.client_rules import SLOW_CONSUMER
from hedgebridge.protocol import ActionState, OrderResult, pack, subjects, utcnow
from hedgebridge.protocol.client import ClientWelcome, Push, Subscribed
from hedgebridge.protocol.errors import CloseCode

from ..helpers import wait_for
from .test_client_api import Collector, RawClient, admin_token, client_url, started_gateway

pytestmark = pytest.mark.integration

ACCOUNT = "FAN-1"
FAST = 3
BODY = base64.b64encode(os.urandom(150_000)).decode()  # large, hardly compressible: the never-reading
# client's socket buffers are full after a few dozen states


def _state(k: int) -> tuple[str, bytes]:
    """Message ``k``: an action state (even) or an order result (odd), with its subject."""
    action_id = f"fan-{k}"
    if k % 2 == 0:
        state = ActionState(
            action_id=action_id, kind="HEDGE_ENTRY", state="RUNNING", seq=1, timestamp=utcnow(), message=BODY
        )
        return subjects.action(action_id), pack(state)
    result = OrderResult(status="FILLED", kind="OPEN", account_id=ACCOUNT, action_id=action_id, message=BODY)
    return subjects.result(ACCOUNT), pack(result)


def _ids(pushes: list[Push]) -> list[str]:
    return [str(getattr(p.data, "action_id", "")) for p in pushes if p.topic in ("actions", "orders")]


@pytest.mark.parametrize("profile", ["latency", "throughput"])
async def test_a_never_reading_subscriber_is_closed_while_the_others_get_every_state_in_order(
    nats_server: NatsServer, secret: str, nc: NatsClient, profile: str
) -> None:
    settings: dict[str, object] = (
        {"client_batch_max": 1, "client_priority": True}
        if profile == "latency"
        else {"client_batch_max": 50, "client_priority": False, "compression": True}
    )
    async with started_gateway(
        nats_server, secret, client_queue_max=16, heartbeat_timeout_ms=60_000, message_rate=0, **settings
    ) as gw:
        fast = [await RawClient.connect(client_url(gw), admin_token(secret)) for _ in range(FAST)]
        never = RawClient(
            await connect(
                client_url(gw),
                additional_headers={"Authorization": f"Bearer {admin_token(secret)}"},
                subprotocols=["hedgebridge.v1"],  # type: ignore[list-item]
                ping_interval=None,
                max_queue=1,  # stops reading the socket once one message waits
                max_size=None,
            )
        )
        for client in [*fast, never]:
            await client.recv_type(ClientWelcome)
            assert isinstance(await client.subscribe(["actions", "orders"]), Subscribed)
        collectors = [Collector(client) for client in fast]
        js = nc.jetstream()
        sent: list[str] = []
        try:
            while gw.clients.slow_consumers == 0 or len(sent) < 20:
                assert len(sent) < 500, f"the never-reading client was not closed after {len(sent)} states"
                subject, body = _state(len(sent))
                await js.publish(subject, body)
                sent.append(f"fan-{len(sent)}")
                count = len(sent)
                await wait_for(
                    lambda n=count: all(len(c.pushes) >= n for c in collectors),  # type: ignore[misc]
                    f"every reading client to get state {count}",
                )
            assert await never.closed(timeout_s=20) == (CloseCode.POLICY_VIOLATION, SLOW_CONSUMER)
            assert gw.clients.slow_consumers == 1
            await wait_for(lambda: len(gw.clients.sessions) == FAST, "the never-reading session to be freed")
            for collector in collectors:
                assert _ids(collector.pushes) == sent  # every state, once, in the order it was stored
                seqs = [p.seq or 0 for p in collector.pushes]
                assert seqs == sorted(seqs)
                assert 0 not in seqs  # every one numbered by its stream sequence
                assert len(set(seqs)) == len(seqs)
        finally:
            for collector in collectors:
                await collector.stop()
            for client in fast:
                await client.close()
