"""The client API (/client) against a real gateway, nats-server, executor and simulated terminals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NatsClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hedgebridge.client import ClientError, HedgebridgeClient, Leg
from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.executor.service import Executor
from hedgebridge.gateway.client_rules import SLOW_CONSUMER
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    ActionLeg,
    ActionRequest,
    ActionState,
    BatchItem,
    BatchResult,
    CloseBatch,
    ErrorMessage,
    Heartbeat,
    Message,
    OpenedEvent,
    OpenOrder,
    OrderResult,
    Position,
    PositionUpdate,
    PriceTick,
    TerminalStatus,
    encode_frame,
    errors,
    pack,
    subjects,
    utcnow,
)
from hedgebridge.protocol.client import (
    Auth,
    ClientReply,
    ClientRequest,
    ClientWelcome,
    Push,
    ServerFrame,
    Subscribe,
    Subscribed,
    Unsubscribe,
    decode_server_frame,
)
from hedgebridge.protocol.errors import CloseCode
from hedgebridge.sim import SimConfig
from hedgebridge.sim.terminal import SimTerminal, make_terminals, run_terminals

from ..conftest import gateway_config
from ..helpers import ea_token, wait_for

pytestmark = pytest.mark.integration

IN = "CL-IN"
OUT = "CL-OUT"
ACCOUNT_TOPICS = ["prices", "positions", "balances", "trades", "terminals"]


def system_token(secret: str, *accounts: str, users: tuple[str, ...] = ()) -> str:
    return auth.mint_token(secret, role="system", subject="sys-1", accounts=list(accounts), users=list(users))


def admin_token(secret: str) -> str:
    return auth.mint_token(secret, role="admin", subject="root")


def client_url(gateway: Gateway) -> str:
    return f"ws://127.0.0.1:{gateway.port}/client"


class RawClient:
    """A bare client written from the protocol description: JSON frames over a websockets connection."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[ServerFrame] = []
        self._beat: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, token: str | None, **options: object) -> RawClient:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        ws = await connect(
            url,
            additional_headers=headers,
            subprotocols=["hedgebridge.v1"],  # type: ignore[list-item]
            ping_interval=None,
            open_timeout=5,
            max_size=None,
            **options,  # type: ignore[arg-type]
        )
        return cls(ws)

    async def send(self, message: Message) -> None:
        await self.ws.send(encode_frame(message).decode())

    async def recv(self, timeout_s: float = 5.0) -> ServerFrame:
        frame = decode_server_frame(await asyncio.wait_for(self.ws.recv(), timeout_s))
        self.frames.append(frame)
        return frame

    async def recv_type(self, kind: type[Message], timeout_s: float = 5.0) -> ServerFrame:
        deadline = time.monotonic() + timeout_s
        while True:
            frame = await self.recv(max(deadline - time.monotonic(), 0.01))
            if isinstance(frame, kind):
                return frame

    def keep_alive(self, interval_s: float = 0.2) -> None:
        async def beat() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await self.send(Heartbeat(timestamp=utcnow()))
                    await asyncio.sleep(interval_s)

        self._beat = asyncio.create_task(beat())

    async def subscribe(self, topics: list[str], accounts: list[str] | None = None) -> ServerFrame:
        await self.send(Subscribe(request_id="s", topics=topics, accounts=accounts))  # type: ignore[arg-type]
        return await self.recv_type(Subscribed | ErrorMessage)  # type: ignore[arg-type]

    async def closed(self, timeout_s: float = 10.0) -> tuple[int | None, str | None]:
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while time.monotonic() < deadline:
                await asyncio.wait_for(self.ws.recv(), max(deadline - time.monotonic(), 0.01))
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        await self.ws.close()


class Collector:
    """Reads a RawClient in the background and keeps every EVENT it gets."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.pushes: list[Push] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = decode_server_frame(await self.client.ws.recv())
                if isinstance(frame, Push):
                    self.pushes.append(frame)

    def seen(self, topic: str, account: str, kind: type | None = None) -> list[Push]:
        return [
            p
            for p in self.pushes
            if p.topic == topic
            and getattr(p.data, "account_id", None) == account
            and (kind is None or isinstance(p.data, kind))
        ]

    def accounts(self) -> set[str]:
        return {str(getattr(p.data, "account_id", "")) for p in self.pushes}

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def started_gateway(nats_server: NatsServer, secret: str, **overrides: object) -> AsyncIterator[Gateway]:
    gw = Gateway(gateway_config(nats_server.url, secret, id="gw-client-test", **overrides))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@contextlib.asynccontextmanager
async def run_sims(
    gateway: Gateway, secret: str, accounts: list[str], **config: object
) -> AsyncIterator[list[SimTerminal]]:
    settings: dict[str, object] = {"symbols": ("EURUSD",), "fill_latency_ms": 0.0, "tick_interval_ms": 50}
    settings.update(config)
    terminals = make_terminals(
        f"ws://127.0.0.1:{gateway.port}/ea",
        accounts,
        lambda account: ea_token(secret, account),
        SimConfig(**settings),  # type: ignore[arg-type]
        seed=11,
    )
    stop = asyncio.Event()
    runner = asyncio.create_task(run_terminals(terminals, stop))
    try:
        await wait_for(lambda: all(t.connected.is_set() for t in terminals), "the simulated terminals to connect")
        yield terminals
    finally:
        stop.set()
        await runner


def _open(account: str, **fields: object) -> OpenOrder:
    return OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=0.1, **fields)  # type: ignore[arg-type]


async def _error_for(client: RawClient, message: Message) -> ErrorMessage:
    await client.send(message)
    frame = await client.recv_type(ErrorMessage)
    assert isinstance(frame, ErrorMessage)
    return frame


# --- authentication ------------------------------------------------------------------------------------------


async def test_header_login_and_refusals(gateway: Gateway, secret: str) -> None:
    client = await RawClient.connect(client_url(gateway), system_token(secret, IN, users=("u1",)))
    welcome = await client.recv()
    assert isinstance(welcome, ClientWelcome)
    assert (welcome.role, welcome.subject, welcome.accounts, welcome.users) == ("system", "sys-1", [IN], ["u1"])
    assert welcome.heartbeat_interval_ms == 200
    await client.send(Heartbeat(timestamp=utcnow(), seq=9))
    beat = await client.recv()
    assert isinstance(beat, Heartbeat)
    assert (beat.seq, beat.reply) == (9, True)
    await client.close()

    admin = await RawClient.connect(client_url(gateway), admin_token(secret))
    welcome = await admin.recv()
    assert isinstance(welcome, ClientWelcome)
    assert (welcome.role, welcome.accounts) == ("admin", None)
    await admin.close()

    cases = {
        ea_token(secret, IN): (403, "token role is not 'system' or 'admin'"),
        "not-a-jwt": (401, "token invalid"),
        admin_token(auth.new_secret()): (401, "token signature invalid"),
    }
    for token, (status, reason) in cases.items():
        with pytest.raises(InvalidStatus) as info:
            await RawClient.connect(client_url(gateway), token)
        assert info.value.response.status_code == status
        assert reason in info.value.response.body.decode()


async def test_auth_frame_login_and_refusals_close_1008(nats_server: NatsServer, secret: str) -> None:
    async with started_gateway(nats_server, secret, client_auth_timeout_ms=300) as gw:
        client = await RawClient.connect(client_url(gw), None)
        await client.send(Auth(token=system_token(secret, IN)))
        welcome = await client.recv()
        assert isinstance(welcome, ClientWelcome)
        assert welcome.accounts == [IN]
        await client.close()

        silent = await RawClient.connect(client_url(gw), None)
        assert await silent.closed() == (CloseCode.POLICY_VIOLATION, "no AUTH frame within 300 ms")

        other = await RawClient.connect(client_url(gw), None)
        await other.send(Heartbeat(timestamp=utcnow()))
        assert await other.closed() == (CloseCode.POLICY_VIOLATION, "the first frame must be AUTH")

        ea = await RawClient.connect(client_url(gw), None)
        await ea.send(Auth(token=ea_token(secret, IN)))
        assert await ea.closed() == (CloseCode.POLICY_VIOLATION, "403 token role is not 'system' or 'admin'")

        bad = await RawClient.connect(client_url(gw), None)
        await bad.send(Auth(token="x.y.z"))
        code, reason = await bad.closed()
        assert code == CloseCode.POLICY_VIOLATION
        assert reason is not None
        assert reason.startswith("401 ")

        sdk = await HedgebridgeClient.connect(client_url(gw), admin_token(secret), auth_frame=True)
        assert sdk.welcome.role == "admin"
        await sdk.aclose()


# --- scope and malformed frames ------------------------------------------------------------------------------


async def test_everything_outside_the_scope_is_forbidden_with_the_field_named(gateway: Gateway, secret: str) -> None:
    client = await RawClient.connect(client_url(gateway), system_token(secret, IN))
    await client.recv_type(ClientWelcome)
    order = await _error_for(client, ClientRequest(request_id="r1", body=_open(OUT)))
    assert (order.code, order.field, order.ref_id, order.ref_type) == (
        errors.FORBIDDEN,
        "body.accountId",
        "r1",
        "REQUEST",
    )
    batch = CloseBatch(items=[BatchItem(account_id=IN, position_id="p"), BatchItem(account_id=OUT, position_id="q")])
    error = await _error_for(client, ClientRequest(request_id="r2", body=batch))
    assert (error.code, error.field, error.ref_id) == (errors.FORBIDDEN, "body.items[1].accountId", "r2")
    legs = [
        ActionLeg(account_id=OUT, symbol="EURUSD", side="BUY", volume=1.0),
        ActionLeg(account_id=IN, symbol="EURUSD", side="SELL", volume=1.0),
    ]
    error = await _error_for(client, ClientRequest(request_id="r3", body=ActionRequest(kind="HEDGE_ENTRY", legs=legs)))
    assert (error.code, error.field, error.ref_id) == (errors.FORBIDDEN, "body.legs[0].accountId", "r3")
    close_all = ActionRequest(kind="CLOSE_ALL", account_ids=[IN, OUT])
    error = await _error_for(client, ClientRequest(request_id="r4", body=close_all))
    assert (error.code, error.field) == (errors.FORBIDDEN, "body.accountIds[1]")
    exit_ = ActionRequest(kind="EXIT", target_action_id="never-recorded")
    error = await _error_for(client, ClientRequest(request_id="r5", body=exit_))
    assert (error.code, error.field, error.ref_id) == (errors.ACTION_NOT_FOUND, "body.targetActionId", "r5")
    refused = await client.subscribe(["prices"], [IN, OUT])
    assert isinstance(refused, ErrorMessage)
    assert (refused.code, refused.field, refused.ref_id) == (errors.FORBIDDEN, "accounts[1]", "s")
    assert gateway.clients.feeds.feeds == {}  # a refused subscription opened nothing
    ok = await client.subscribe(["prices"], [IN])
    assert isinstance(ok, Subscribed)
    await client.close()


async def test_malformed_frames_get_typed_errors_and_the_connection_stays_up(gateway: Gateway, secret: str) -> None:
    client = await RawClient.connect(client_url(gateway), admin_token(secret))
    await client.recv_type(ClientWelcome)
    cases: list[tuple[str, tuple[str, str | None, str | None]]] = [
        ("not json", (errors.MALFORMED_FRAME, None, None)),
        ('{"type":"WEATHER"}', (errors.UNKNOWN_TYPE, "type", None)),
        ('{"type":"REQUEST","requestId":"r9"}', (errors.MISSING_FIELD, "body", "r9")),
        (
            '{"type":"REQUEST","requestId":"r8","body":{"type":"OPEN_ORDER","accountId":"A","symbol":"EURUSD",'
            '"side":"BUY","volume":0}}',
            (errors.INVALID_FIELD, "body.volume", "r8"),
        ),
        ('{"type":"SUBSCRIBE","requestId":"s7","topics":["weather"]}', (errors.INVALID_FIELD, "topics[0]", "s7")),
        (
            '{"type":"REQUEST","requestId":"r6","body":{"type":"OPEN","accountId":"A"}}',
            (errors.INVALID_FIELD, "body.type", "r6"),
        ),
    ]
    for data, (code, field, ref_id) in cases:
        await client.ws.send(data)
        error = await client.recv_type(ErrorMessage)
        assert isinstance(error, ErrorMessage)
        assert error.code == code, data
        if field is not None:
            assert error.field == field, data
        assert error.ref_id == ref_id, data
    again = await _error_for(client, Auth(token="t"))
    assert again.code == errors.UNEXPECTED_TYPE
    await client.send(Heartbeat(timestamp=utcnow(), seq=3))
    beat = await client.recv_type(Heartbeat)
    assert isinstance(beat, Heartbeat)
    assert beat.seq == 3
    await client.close()


async def test_without_executor_or_coordinator_every_request_gets_a_definite_answer(
    gateway: Gateway, secret: str
) -> None:
    client = await RawClient.connect(client_url(gateway), system_token(secret, IN))
    await client.recv_type(ClientWelcome)
    await client.send(ClientRequest(request_id="o1", body=_open(IN)))
    reply = await client.recv_type(ClientReply)
    assert isinstance(reply, ClientReply)
    assert reply.request_id == "o1"
    result = reply.result
    assert isinstance(result, OrderResult)
    assert (result.status, result.code, result.account_id, result.kind) == (
        "EXPIRED",
        errors.EXECUTOR_UNAVAILABLE,
        IN,
        "OPEN",
    )
    assert result.action_id  # the gateway gave the request its idempotency key
    await client.send(
        ClientRequest(request_id="b1", body=CloseBatch(action_id="bx", items=[BatchItem(account_id=IN, mt_ticket="5")]))
    )
    reply = await client.recv_type(ClientReply)
    assert isinstance(reply, ClientReply)
    assert isinstance(reply.result, BatchResult)
    assert [(r.status, r.code, r.action_id) for r in reply.result.results] == [
        ("EXPIRED", errors.EXECUTOR_UNAVAILABLE, "bx-0")
    ]
    legs = [ActionLeg(account_id=IN, symbol="EURUSD", side="BUY", volume=1.0)]
    error = await _error_for(client, ClientRequest(request_id="a1", body=ActionRequest(kind="HEDGE_ENTRY", legs=legs)))
    assert (error.code, error.ref_id) == (errors.COORDINATOR_UNAVAILABLE, "a1")
    await client.close()


# --- live events ---------------------------------------------------------------------------------------------


async def test_a_system_client_sees_only_its_accounts_and_an_admin_sees_everything(
    gateway: Gateway, secret: str, nc: NatsClient
) -> None:
    system = await RawClient.connect(client_url(gateway), system_token(secret, IN))
    admin = await RawClient.connect(client_url(gateway), admin_token(secret))
    for client in (system, admin):
        await client.recv_type(ClientWelcome)
        client.keep_alive()
        subscribed = await client.subscribe(ACCOUNT_TOPICS)
        assert isinstance(subscribed, Subscribed)
        assert subscribed.accounts == ([IN] if client is system else None)  # an admin's: every account
    seen_system, seen_admin = Collector(system), Collector(admin)
    try:
        async with run_sims(gateway, secret, [IN, OUT]):
            # trades come from terminals' reports: the out-of-scope report is published first, the in-scope
            # one after it, on the same connection
            for account in (OUT, IN):
                opened = OpenedEvent(
                    timestamp=utcnow(),
                    account_id=account,
                    position_id=f"p-{account}",
                    mt_ticket="1",
                    price=1.1,
                    status="SUCCESS",
                )
                await nc.publish(subjects.event(account, "OPENED"), pack(opened))
            await nc.flush()
            kinds = {
                "prices": PriceTick,
                "positions": PositionUpdate,
                "balances": None,
                "trades": OpenedEvent,
                "terminals": TerminalStatus,
            }

            def window_closed() -> bool:
                # the admin saw every topic from the out-of-scope terminal, and the system client has since
                # received in-scope events of every topic
                return all(seen_admin.seen(t, OUT, k) for t, k in kinds.items()) and all(
                    len(seen_system.seen(t, IN, k)) >= (2 if t == "prices" else 1) for t, k in kinds.items()
                )

            def counts() -> str:
                mine = {t: len(seen_system.seen(t, IN, k)) for t, k in kinds.items()}
                theirs = {t: len(seen_admin.seen(t, OUT, k)) for t, k in kinds.items()}
                return f"events on every topic: system {mine}, admin (out of scope) {theirs}"

            await wait_for(window_closed, counts)
            assert seen_system.accounts() == {IN}
            assert {IN, OUT} <= seen_admin.accounts()
    finally:
        await seen_system.stop()
        await seen_admin.stop()
        await system.close()
        await admin.close()


async def test_clients_share_one_reference_counted_nats_subscription(gateway: Gateway, secret: str) -> None:
    registry = gateway.clients.feeds
    first = await RawClient.connect(client_url(gateway), system_token(secret, IN, OUT))
    second = await RawClient.connect(client_url(gateway), admin_token(secret))
    for client in (first, second):
        await client.recv_type(ClientWelcome)
        subscribed = await client.subscribe(["prices"], [IN])
        assert isinstance(subscribed, Subscribed)
        assert subscribed.accounts == [IN]
    feed = registry.feeds[("prices", IN)]
    assert len(feed.subscriptions) == 1
    assert len(feed.members) == 2
    assert set(registry.feeds) == {("prices", IN)}

    # a second subscribe for the same topic adds accounts; the shared feed stays one
    more = await first.subscribe(["prices"], [OUT])
    assert isinstance(more, Subscribed)
    assert set(registry.feeds) == {("prices", IN), ("prices", OUT)}

    await first.send(Unsubscribe(request_id="u1", topics=["prices"]))
    remaining = await first.recv_type(Subscribed)
    assert isinstance(remaining, Subscribed)
    assert (remaining.request_id, remaining.topics) == ("u1", [])
    assert set(registry.feeds) == {("prices", IN)}
    assert len(registry.feeds[("prices", IN)].members) == 1
    await second.close()
    await wait_for(lambda: not registry.feeds, "the last member to release the shared feed")
    await first.close()


def _big_update(account: str, positions: int) -> PositionUpdate:
    now = datetime.now(UTC)
    return PositionUpdate(
        timestamp=now,
        account_id=account,
        positions=[
            Position(
                mt_ticket=str(50_000_000 + i),
                position_id=f"position-{i:08d}",
                symbol="EURUSD",
                side="BUY",
                volume=0.1,
                open_price=1.08,
                current_price=1.09,
                profit=1.0,
            )
            for i in range(positions)
        ],
    )


async def test_a_slow_consumer_is_closed_while_a_normal_client_keeps_getting_events(
    nats_server: NatsServer, secret: str, nc: NatsClient
) -> None:
    async with started_gateway(nats_server, secret, client_queue_max=4, heartbeat_timeout_ms=60_000) as gw:
        normal = await RawClient.connect(client_url(gw), admin_token(secret))
        # the slow client stops reading: once the socket buffers are full, frames wait in its gateway queue
        slow = await RawClient.connect(client_url(gw), admin_token(secret))
        for client in (normal, slow):
            await client.recv_type(ClientWelcome)
            assert isinstance(await client.subscribe(["positions"], [IN]), Subscribed)
        received = Collector(normal)
        update = pack(_big_update(IN, 2000))
        try:
            sent = 0
            while gw.clients.slow_consumers == 0:
                assert sent < 500, f"the slow client was not closed after {sent} events"
                await nc.publish(subjects.event(IN, "POSITION_UPDATE"), update)
                sent += 1
                await wait_for(lambda n=sent: len(received.pushes) >= n, f"the normal client to get event {sent}")  # type: ignore[misc]
            # the normal client keeps getting events after the slow one was closed
            await nc.publish(subjects.event(IN, "POSITION_UPDATE"), pack(_big_update(IN, 1)))
            await wait_for(lambda: len(received.pushes) == sent + 1, "the normal client's next event")
            assert await slow.closed(timeout_s=20) == (CloseCode.POLICY_VIOLATION, SLOW_CONSUMER)
            assert len(gw.clients.sessions) == 1
        finally:
            await received.stop()
            await normal.close()


# --- orders through the executor, and the SDK ----------------------------------------------------------------


async def test_sdk_orders_round_trip_and_events(gateway: Gateway, executor: Executor, secret: str) -> None:
    async with (
        run_sims(gateway, secret, [IN, OUT], tick_interval_ms=0),
        await HedgebridgeClient.connect(client_url(gateway), system_token(secret, IN)) as client,
    ):
        trades = await client.subscribe(["trades", "orders"])
        assert trades.accounts == [IN]
        opened = await client.open(IN, "EURUSD", "BUY", 0.1, action_id="sdk-open-1")
        assert (opened.status, opened.kind, opened.account_id, opened.action_id) == ("FILLED", "OPEN", IN, "sdk-open-1")
        assert opened.mt_ticket
        again = await client.open(IN, "EURUSD", "BUY", 0.1, action_id="sdk-open-1")
        assert (again.status, again.mt_ticket) == ("FILLED", opened.mt_ticket)  # the same order, not a second one
        closed = await client.close(IN, mt_ticket=opened.mt_ticket)
        assert (closed.status, closed.kind) == ("FILLED", "CLOSE")
        batch = await client.close_batch([BatchItem(account_id=IN, mt_ticket=opened.mt_ticket)], action_id="b-1")
        assert [r.action_id for r in batch.results] == ["b-1-0"]
        assert batch.results[0].status != "FILLED"  # closed already

        topics: set[tuple[str, str]] = set()
        async with asyncio.timeout(10):
            while not {("trades", "OpenedEvent"), ("trades", "ClosedEvent"), ("orders", "OrderResult")} <= topics:
                push = await trades.next()
                assert getattr(push.data, "account_id", None) == IN
                topics.add((push.topic, type(push.data).__name__))
        await trades.close()

        with pytest.raises(ClientError) as info:
            await client.open(OUT, "EURUSD", "BUY", 0.1)
        assert (info.value.code, info.value.field) == (errors.FORBIDDEN, "body.accountId")
        with pytest.raises(ClientError) as info:
            await client.hedge([Leg(IN, "EURUSD", "BUY", 1.0), Leg(OUT, "EURUSD", "SELL", 1.0)])
        assert (info.value.code, info.value.field) == (errors.FORBIDDEN, "body.legs[1].accountId")
        with pytest.raises(ClientError) as info:
            await client.subscribe(["prices"], [OUT])
        assert (info.value.code, info.value.field) == (errors.FORBIDDEN, "accounts[0]")
        with pytest.raises(ClientError) as info:
            await client.close_all([IN])
        assert info.value.code == errors.COORDINATOR_UNAVAILABLE
        assert not client.closed


async def test_raw_client_open_and_close_with_concurrent_requests(
    gateway: Gateway, executor: Executor, secret: str
) -> None:
    async with run_sims(gateway, secret, [IN], tick_interval_ms=0):
        client = await RawClient.connect(client_url(gateway), system_token(secret, IN))
        await client.recv_type(ClientWelcome)
        client.keep_alive()
        for i in range(5):  # five orders in flight at once on one connection
            await client.send(ClientRequest(request_id=f"o{i}", body=_open(IN, action_id=f"raw-{i}")))
        replies: dict[str, OrderResult] = {}
        while len(replies) < 5:
            frame = await client.recv_type(ClientReply, timeout_s=15)
            assert isinstance(frame, ClientReply)
            assert isinstance(frame.result, OrderResult)
            replies[frame.request_id] = frame.result
        assert {r.status for r in replies.values()} == {"FILLED"}
        assert {r.action_id for r in replies.values()} == {f"raw-{i}" for i in range(5)}
        assert replies["o0"].mt_ticket is not None
        close = ClientRequest(
            request_id="c0",
            body=CloseBatch(items=[BatchItem(account_id=IN, mt_ticket=r.mt_ticket or "") for r in replies.values()]),
        )
        await client.send(close)
        frame = await client.recv_type(ClientReply, timeout_s=15)
        assert isinstance(frame, ClientReply)
        assert isinstance(frame.result, BatchResult)
        assert [r.status for r in frame.result.results] == ["FILLED"] * 5
        await client.close()


# --- CLI -----------------------------------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hedgebridge.cli", *args]


async def test_cli_watch_streams_json_lines_and_stops_on_sigterm(gateway: Gateway, secret: str) -> None:
    env = {**os.environ, "HEDGEBRIDGE_HOME": "/nonexistent-hedgebridge-home"}
    url, token = client_url(gateway), system_token(secret, IN)
    async with run_sims(gateway, secret, [IN, OUT]):
        counted = await asyncio.to_thread(
            subprocess.run,
            _cli("watch", "--url", url, "--token", token, "--topic", "prices", "--count", "3"),
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert counted.returncode == 0, counted.stderr
        lines = counted.stdout.splitlines()
        assert len(lines) == 3
        events = [json.loads(line) for line in lines]
        assert {e["topic"] for e in events} == {"prices"}
        assert {e["data"]["accountId"] for e in events} == {IN}
        assert {e["data"]["type"] for e in events} == {"PRICE"}

        process = await asyncio.to_thread(
            subprocess.Popen,
            _cli("watch", "--url", url, "--token", token, "--topic", "prices", "--topic", "balances"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert process.stdout is not None
            first = await asyncio.to_thread(process.stdout.readline)
            assert json.loads(first)["data"]["accountId"] == IN
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

        forbidden = await asyncio.to_thread(
            subprocess.run,
            _cli("watch", "--url", url, "--token", token, "--account", OUT),
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert forbidden.returncode == 5
        assert "FORBIDDEN" in forbidden.stderr


async def test_cli_action_without_a_coordinator_exits_unavailable(gateway: Gateway, secret: str) -> None:
    env = {**os.environ, "HEDGEBRIDGE_HOME": "/nonexistent-hedgebridge-home", "HEDGEBRIDGE_TOKEN": admin_token(secret)}
    hedge = await asyncio.to_thread(
        subprocess.run,
        _cli(
            "action",
            "hedge",
            "--url",
            client_url(gateway),
            "--leg",
            f"{IN}:EURUSD:BUY:1",
            "--leg",
            f"{OUT}:EURUSD:SELL:1",
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert hedge.returncode == 6, hedge.stderr
    assert errors.COORDINATOR_UNAVAILABLE in hedge.stderr
    forbidden = await asyncio.to_thread(
        subprocess.run,
        _cli(
            "action", "close-all", "--url", client_url(gateway), "--account", OUT, "--token", system_token(secret, IN)
        ),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert forbidden.returncode == 5, forbidden.stderr
    assert "body.accountIds[0]" in forbidden.stderr


async def test_actions_end_to_end_through_the_client_api_and_the_cli(
    gateway: Gateway, executor: Executor, coordinator: Coordinator, secret: str
) -> None:
    url = client_url(gateway)
    env = {**os.environ, "HEDGEBRIDGE_HOME": "/nonexistent-hedgebridge-home", "HEDGEBRIDGE_TOKEN": admin_token(secret)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_cli(*args, "--url", url), capture_output=True, text=True, timeout=90, env=env)

    async with (
        run_sims(gateway, secret, [IN, OUT], tick_interval_ms=0),
        await HedgebridgeClient.connect(url, system_token(secret, IN)) as system,
    ):
        watcher = await system.subscribe(["actions"])
        hedge = await asyncio.to_thread(
            cli,
            "action",
            "hedge",
            "--leg",
            f"{IN}:EURUSD:BUY:0.1",
            "--leg",
            f"{OUT}:EURUSD:SELL:0.1",
            "--action-id",
            "h-1",
        )
        assert hedge.returncode == 0, hedge.stderr
        states = [json.loads(line) for line in hedge.stdout.splitlines()]
        assert states[-1]["state"] == "COMPLETED"
        assert {leg["accountId"] for leg in states[-1]["legs"]} == {IN, OUT}

        with pytest.raises(ClientError) as info:
            await system.exit("h-1")  # one of its accounts is outside this token's scope
        assert (info.value.code, info.value.field) == (errors.FORBIDDEN, "body.targetActionId")

        mine = await system.hedge([Leg(IN, "EURUSD", "BUY", 0.1)], action_id="h-2", follow=True)
        assert mine.state == "COMPLETED"
        seen: list[ActionState] = []
        async with asyncio.timeout(10):  # the window ends with h-2's final state; h-1's states came before it
            while not any(s.action_id == "h-2" and s.state == "COMPLETED" for s in seen):
                push = await watcher.next()
                assert isinstance(push.data, ActionState)
                seen.append(push.data)
        assert {s.action_id for s in seen} == {"h-2"}
        left = await system.exit("h-2", follow=True)
        assert (left.kind, left.state) == ("EXIT", "COMPLETED")

        exit_ = await asyncio.to_thread(cli, "action", "exit", "h-1")
        assert exit_.returncode == 0, exit_.stderr
        assert json.loads(exit_.stdout.splitlines()[-1])["state"] == "COMPLETED"
        close_all = await asyncio.to_thread(cli, "action", "close-all", "--account", IN, "--account", OUT)
        assert close_all.returncode == 0, close_all.stderr
