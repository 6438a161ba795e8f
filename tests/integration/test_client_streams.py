"""Streams that never drop silently, against a real gateway and nats-server: resuming a topic with its last
(epoch, seq) gives exactly the events missed then the live ones; a cursor the history no longer reaches gets
RESYNC and a fresh start; snapshot topics start with the last state of each account; a client that falls
behind is warned before it is closed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from websockets.asyncio.client import connect

from hedgebridge.client import HedgebridgeClient, Notice, Reconnected
from hedgebridge.common import auth, streams
from hedgebridge.common.servers import NatsServer, free_port
from hedgebridge.gateway.client_rules import SLOW_CONSUMER
from hedgebridge.gateway.server import Gateway
from hedgebridge.protocol import (
    CloseOrder,
    ErrorMessage,
    OpenedEvent,
    OpenOrder,
    OrderResult,
    PositionUpdate,
    PriceTick,
    errors,
    pack,
    subjects,
    utcnow,
)
from hedgebridge.protocol.client import (
    CaughtUp,
    ClientWelcome,
    Cursor,
    Push,
    Resync,
    ServerFrame,
    SlowConsumerWarning,
    Subscribe,
    Subscribed,
    decode_server_frame,
)
from hedgebridge.protocol.errors import CloseCode

from ..conftest import StartSims, gateway_config
from ..helpers import order, wait_for
from .test_client_api import IN, OUT, RawClient, admin_token, client_url, started_gateway, system_token

pytestmark = pytest.mark.integration


def _opened(account: str, n: int) -> bytes:
    event = OpenedEvent(
        timestamp=utcnow(),
        account_id=account,
        position_id=f"p-{account}-{n}",
        mt_ticket=str(n),
        price=1.1,
        status="SUCCESS",
    )
    return pack(event)


def _result(account: str, n: int) -> bytes:
    return pack(OrderResult(status="FILLED", kind="OPEN", account_id=account, action_id=f"a-{account}-{n}"))


class Reader:
    """Every frame a raw client receives, read in the background."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.frames: list[ServerFrame] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                self.frames.append(decode_server_frame(await self.client.ws.recv()))

    def of(self, kind: type) -> list[ServerFrame]:
        return [f for f in self.frames if isinstance(f, kind)]

    def events(self, topic: str) -> list[Push]:
        return [f for f in self.frames if isinstance(f, Push) and f.topic == topic]

    def caught_up(self, topic: str) -> list[CaughtUp]:
        return [f for f in self.frames if isinstance(f, CaughtUp) and f.topic == topic]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def reading(gateway: Gateway, token: str, subscribe: Subscribe) -> AsyncIterator[Reader]:
    client = await RawClient.connect(client_url(gateway), token)
    await client.recv_type(ClientWelcome)
    client.keep_alive()
    await client.send(subscribe)
    reader = Reader(client)
    try:
        await wait_for(lambda: bool(reader.of(Subscribed) or reader.of(ErrorMessage)), "the answer to SUBSCRIBE")
        yield reader
    finally:
        await reader.stop()
        await client.close()


async def test_a_resumed_topic_gets_exactly_the_missed_events_then_the_live_ones(
    gateway: Gateway, secret: str, nc: NatsClient
) -> None:
    js = nc.jetstream()
    token = system_token(secret, IN)
    first = Subscribe(request_id="s1", topics=["trades"], accounts=[IN], recent=0)
    async with reading(gateway, token, first) as reader:
        await wait_for(lambda: bool(reader.caught_up("trades")), "CAUGHT_UP")
        [start] = reader.caught_up("trades")
        assert start.epoch is not None
        assert start.seq is not None
        assert start.replayed == 0
        mine = [(await js.publish(subjects.event(IN, "OPENED"), _opened(IN, n))).seq for n in range(3)]
        await js.publish(subjects.event(OUT, "OPENED"), _opened(OUT, 0))
        await wait_for(lambda: len(reader.events("trades")) == 3, "three live trades")
        live = reader.events("trades")
        assert [p.seq for p in live] == mine
        assert {p.epoch for p in live} == {start.epoch}
        cursor = Cursor(epoch=start.epoch, seq=mine[-1])

    # disconnected: trades happen, for this account and another
    missed = []
    for n in range(3, 8):
        missed.append((await js.publish(subjects.event(IN, "OPENED"), _opened(IN, n))).seq)
        await js.publish(subjects.event(OUT, "OPENED"), _opened(OUT, n))

    # trades keep happening while the client resumes: the hand-over from history to live is exercised
    published = list(missed)

    async def keep_trading() -> None:
        for n in range(8, 208):
            published.append((await js.publish(subjects.event(IN, "OPENED"), _opened(IN, n))).seq)

    trading = asyncio.create_task(keep_trading())
    again = Subscribe(request_id="s2", topics=["trades"], accounts=[IN], resume={"trades": cursor})
    async with reading(gateway, token, again) as reader:
        await trading
        await wait_for(
            lambda: bool(reader.events("trades")) and reader.events("trades")[-1].seq == published[-1],
            lambda: f"the last trade ({len(reader.events('trades'))} of {len(published)} received)",
        )
        got = [p.seq for p in reader.events("trades")]
        assert got == published  # every missed and live trade of the account, once, in order
        assert {getattr(p.data, "account_id", None) for p in reader.events("trades")} == {IN}
        [caught_up] = reader.caught_up("trades")
        assert caught_up.replayed >= len(missed)
        assert caught_up.seq is not None
        order = [f for f in reader.frames if isinstance(f, Push | CaughtUp)]
        marker = order.index(caught_up)
        assert all(p.seq is not None and p.seq <= caught_up.seq for p in order[:marker] if isinstance(p, Push))
        assert all(p.seq is not None and p.seq > caught_up.seq for p in order[marker + 1 :] if isinstance(p, Push))
        assert not reader.of(Resync)


async def test_a_cursor_older_than_the_retention_gets_resync_and_a_fresh_start(
    gateway: Gateway, secret: str, nc: NatsClient
) -> None:
    js = nc.jetstream()
    token = admin_token(secret)
    await nc.publish(
        subjects.event(IN, "POSITION_UPDATE"), pack(PositionUpdate(timestamp=utcnow(), account_id=IN, positions=[]))
    )
    async with reading(gateway, token, Subscribe(request_id="s1", topics=["orders"], recent=0)) as reader:
        seen = (await js.publish(subjects.result(IN), _result(IN, 0))).seq
        await wait_for(lambda: [p.seq for p in reader.events("orders")] == [seen], "the live result")
        [start] = reader.caught_up("orders")
        assert start.epoch is not None
    cursor = Cursor(epoch=start.epoch, seq=seen)
    for n in range(1, 4):
        await js.publish(subjects.result(IN), _result(IN, n))  # missed, then removed by the retention

    # the history keeps events for one second now: what was missed expires
    info = await js.stream_info(subjects.EVENTS_STREAM)
    config: StreamConfig = info.config
    config.max_age, config.duplicate_window = 1.0, 0.5
    await js.update_stream(config)

    async def expired() -> bool:
        return (await js.stream_info(subjects.EVENTS_STREAM)).state.first_seq > cursor.seq + 1

    await wait_for(expired, "the missed results to expire", timeout_s=15)
    fresh = (await js.publish(subjects.result(IN), _result(IN, 9))).seq

    again = Subscribe(request_id="s2", topics=["orders", "positions"], resume={"orders": cursor}, recent=5)
    async with reading(gateway, token, again) as reader:
        await wait_for(
            lambda: bool(reader.caught_up("orders") and reader.caught_up("positions")), "both topics to start"
        )
        [resync] = reader.of(Resync)
        assert isinstance(resync, Resync)
        assert (resync.topic, resync.reason, resync.epoch) == ("orders", "HISTORY_EXPIRED", cursor.epoch)
        assert resync.first_seq > cursor.seq + 1
        # then the most recent events the stream still holds, and the cursor from there
        assert [p.seq for p in reader.events("orders")] == [fresh]
        [caught_up] = reader.caught_up("orders")
        assert (caught_up.epoch, caught_up.seq) == (cursor.epoch, fresh)
        order = [f for f in reader.frames if isinstance(f, Resync | CaughtUp | Push) and f.topic == "orders"]
        assert [type(f) for f in order] == [Resync, Push, CaughtUp]
        # a snapshot topic starts with the last state of every account
        snapshot = reader.events("positions")
        assert [(type(p.data), p.data.account_id, p.seq) for p in snapshot] == [(PositionUpdate, IN, None)]  # type: ignore[union-attr]
        assert reader.caught_up("positions")[0].snapshot == 1

    # a cursor from another history (the stream was created again) is told so as well
    other = Subscribe(request_id="s3", topics=["orders"], resume={"orders": Cursor(epoch="HB_EVENTS@1", seq=1)})
    async with reading(gateway, token, other) as reader:
        await wait_for(lambda: bool(reader.caught_up("orders")), "the topic to start")
        [resync] = reader.of(Resync)
        assert isinstance(resync, Resync)
        assert resync.reason == "EPOCH_CHANGED"
        assert [p.seq for p in reader.events("orders")] == [fresh]  # the last events (100 by default)

    # what a stream-mode SUBSCRIBE may not ask is refused with the field named
    refused = Subscribe(request_id="s4", topics=["prices"], resume={"orders": cursor})
    async with reading(gateway, token, refused) as reader:
        [error] = reader.of(ErrorMessage)
        assert isinstance(error, ErrorMessage)
        assert (error.code, error.field, error.ref_id) == (errors.INVALID_FIELD, "resume.orders", "s4")


async def test_a_client_that_falls_behind_is_warned_before_it_is_closed(
    nats_server: NatsServer, secret: str, nc: NatsClient
) -> None:
    async with started_gateway(
        nats_server,
        secret,
        client_queue_max=1000,
        client_queue_high_water_pct=10,
        heartbeat_timeout_ms=60_000,
        message_rate=0,
    ) as gw:
        token = auth.mint_token(secret, role="admin", subject="ops")
        slow = await connect(
            client_url(gw),
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=["hedgebridge.v1"],  # type: ignore[list-item]
            max_queue=1,  # reads nothing while the test does not: the gateway's queue grows
            ping_interval=None,
        )
        assert json.loads(await slow.recv())["type"] == "CLIENT_WELCOME"
        await slow.send(json.dumps({"type": "SUBSCRIBE", "requestId": "s", "topics": ["prices"]}))
        assert json.loads(await slow.recv())["type"] == "SUBSCRIBED"
        tick = pack(PriceTick(account_id="A1", symbol="EURUSD", bid=1.1, ask=1.1001, time=utcnow()))

        async def flood_until(done: Callable[[], bool]) -> None:
            sent = 0
            while not done():
                assert sent < 500_000, "the gateway never reacted"
                for _ in range(20):  # well below the 900 frames between the warning and the limit
                    await nc.publish(subjects.event("A1", "PRICE"), tick)
                sent += 20
                await nc.flush()

        await flood_until(lambda: gw.clients.slow_warnings > 0)
        assert gw.clients.slow_consumers == 0  # warned, not closed
        # the client reads again: the warning is the first thing after what the kernel already held
        frame: dict[str, object] = {"type": ""}
        while frame["type"] != "SLOW_CONSUMER":
            frame = json.loads(await asyncio.wait_for(slow.recv(), 10))
        warning = decode_server_frame(json.dumps(frame))
        assert isinstance(warning, SlowConsumerWarning)
        assert (warning.high_water, warning.limit) == (100, 1000)
        assert warning.queued >= 100
        # and stops reading again: past the limit it is closed with the documented code
        await flood_until(lambda: gw.clients.slow_consumers > 0)
        assert gw.clients.slow_warnings >= 1
        with contextlib.suppress(Exception):
            while True:
                await asyncio.wait_for(slow.recv(), 10)
        assert (slow.close_code, slow.close_reason) == (CloseCode.POLICY_VIOLATION, SLOW_CONSUMER)


async def _stored_seqs(nc: NatsClient, stream: str, subject: str) -> list[int]:
    """The sequences of every message of ``subject`` the stream holds, read straight from JetStream."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    seqs: list[int] = []
    try:
        while True:
            try:
                batch = await sub.fetch(100, timeout=1)
            except NatsTimeoutError:
                return seqs
            seqs += [m.metadata.sequence.stream for m in batch]
            if batch[-1].metadata.num_pending == 0:
                return seqs
    finally:
        await sub.unsubscribe()


async def test_the_sdk_resumes_after_its_gateway_restarts_with_exactly_the_trades_it_missed(
    gateway: Gateway, sims: StartSims, nats_server: NatsServer, secret: str, nc: NatsClient
) -> None:
    [terminal] = await sims([IN], fill_latency_ms=1, tick_interval_ms=0)
    port = free_port()
    front = Gateway(gateway_config(nats_server.url, secret, id="gw-front", port=port))  # the client's gateway
    await front.start()
    url = f"ws://127.0.0.1:{port}/client"
    client = await HedgebridgeClient.connect(url, system_token(secret, IN), reconnect=True, reconnect_for_s=30)
    received: list[Push | Notice] = []
    try:
        feed = await client.subscribe(["trades", "orders"])

        async def collect() -> None:
            async for item in feed.items():
                received.append(item)

        collector = asyncio.create_task(collect())

        def pushes(topic: str) -> list[Push]:
            return [p for p in received if isinstance(p, Push) and p.topic == topic]

        opened = [await order(nc, OpenOrder(account_id=IN, symbol="EURUSD", side="BUY", volume=0.1)) for _ in range(2)]
        await wait_for(lambda: len(pushes("orders")) == 2 and len(pushes("trades")) == 2, "the first trades")

        await front.stop()  # the client's connection ends (1001); it tries again while trades happen
        missed = [await order(nc, OpenOrder(account_id=IN, symbol="EURUSD", side="SELL", volume=0.2)) for _ in range(3)]
        closed = await order(nc, CloseOrder(account_id=IN, mt_ticket=opened[0].mt_ticket or ""))
        assert {r.status for r in [*missed, closed]} == {"FILLED"}
        front = Gateway(gateway_config(nats_server.url, secret, id="gw-front-2", port=port))
        await front.start()

        def resumed() -> dict[str, CaughtUp]:
            marks = [n for n in received if isinstance(n, Reconnected)]
            after = received[received.index(marks[0]) :] if marks else []
            return {n.topic: n for n in after if isinstance(n, CaughtUp)}

        await wait_for(lambda: set(resumed()) == {"trades", "orders"}, "the topics to resume", timeout_s=20)
        assert client.reconnects == 1
        last = await order(nc, OpenOrder(account_id=IN, symbol="EURUSD", side="BUY", volume=0.3))  # live again
        await wait_for(
            lambda: any(getattr(p.data, "action_id", None) == last.action_id for p in pushes("orders")),
            "the live result after the reconnect",
        )
        stored_orders = await _stored_seqs(nc, subjects.EVENTS_STREAM, subjects.result(IN))
        stored_trades = await _stored_seqs(nc, subjects.EVENTS_STREAM, f"hb.ea.{IN}.evt.*")
        await wait_for(lambda: len(pushes("trades")) >= len(stored_trades), "every trade report")
        # every result and trade report of the account, once each, in the stream's order: none missed
        assert [p.seq for p in pushes("orders")] == stored_orders
        assert [p.seq for p in pushes("trades")] == stored_trades
        assert len(stored_orders) == 7
        reconnected = [n for n in received if isinstance(n, Reconnected)]
        assert [(n.close_code, n.close_reason) for n in reconnected] == [(1001, "gateway shutting down")]
        assert resumed()["orders"].replayed == 4  # the three opens and the close done while it was away
        assert resumed()["trades"].replayed == len(stored_trades) - 2 - 1  # all but the first two and the last
        assert not [n for n in received if isinstance(n, Resync)]
        assert terminal.connected.is_set()
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
    finally:
        await client.aclose()
        await front.stop()


async def test_watch_resumes_after_a_restart_and_says_when_the_history_did_not_reach_back(
    nats_server: NatsServer, secret: str, nc: NatsClient
) -> None:
    js = nc.jetstream()
    port = free_port()
    front = Gateway(gateway_config(nats_server.url, secret, id="gw-watch", port=port))
    await front.start()
    watch = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "hedgebridge.cli", "watch", "--topic", "orders"),
        *("--url", f"ws://127.0.0.1:{port}/client", "--token", system_token(secret, IN)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HEDGEBRIDGE_HOME": "/nonexistent-hedgebridge-home"},
    )
    lines: list[dict[str, object]] = []
    notes: list[str] = []

    async def read_out() -> None:
        assert watch.stdout is not None
        async for line in watch.stdout:
            lines.append(json.loads(line))

    async def read_err() -> None:
        assert watch.stderr is not None
        async for line in watch.stderr:
            notes.append(line.decode().strip())

    readers = [asyncio.create_task(read_out()), asyncio.create_task(read_err())]
    try:
        await wait_for(lambda: any("watching orders" in n for n in notes), "watch to subscribe", timeout_s=60)
        first = (await js.publish(subjects.result(IN), _result(IN, 0))).seq
        await wait_for(lambda: [line["seq"] for line in lines] == [first], lambda: f"the first result: {notes}")

        # restarted while results happen: watch resumes with exactly what it missed
        await front.stop()
        missed = [(await js.publish(subjects.result(IN), _result(IN, n))).seq for n in (1, 2)]
        front = Gateway(gateway_config(nats_server.url, secret, id="gw-watch-2", port=port))
        await front.start()
        await wait_for(lambda: len(lines) == 3, lambda: f"the missed results: {lines} {notes}", timeout_s=30)
        assert [line["seq"] for line in lines] == [first, *missed]
        assert any("reconnected, resuming" in n for n in notes)
        assert any("orders resumed" in n and "2 events replayed" in n for n in notes)

        # restarted while the history is removed: watch says so, then carries on from what is left
        await front.stop()
        await js.publish(subjects.result(IN), _result(IN, 3))
        await js.purge_stream(subjects.EVENTS_STREAM)
        kept = (await js.publish(subjects.result(IN), _result(IN, 4))).seq
        front = Gateway(gateway_config(nats_server.url, secret, id="gw-watch-3", port=port))
        await front.start()
        await wait_for(lambda: any("RESYNC orders: HISTORY_EXPIRED" in n for n in notes), lambda: f"{notes}", 30)
        await wait_for(lambda: lines[-1]["seq"] == kept, lambda: f"the result kept: {lines}")
        live = (await js.publish(subjects.result(IN), _result(IN, 5))).seq
        await wait_for(lambda: lines[-1]["seq"] == live, "the live result after the resync")
        assert [line["seq"] for line in lines] == [first, *missed, kept, live]
        assert {line["data"]["accountId"] for line in lines} == {IN}  # type: ignore[index]
    finally:
        watch.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(watch.wait(), 30) == 0
        for reader in readers:
            reader.cancel()
        await front.stop()


async def test_a_stream_feed_survives_a_nats_restart_without_losing_or_repeating_events(
    gateway: Gateway, secret: str, nats_server: NatsServer
) -> None:
    async def publish(n: int) -> int:
        nc = await nats.connect(nats_server.url)
        try:
            return (await nc.jetstream().publish(subjects.result(IN), _result(IN, n))).seq
        finally:
            await nc.close()

    subscribe = Subscribe(request_id="s", topics=["orders"], accounts=[IN], recent=0)
    async with reading(gateway, system_token(secret, IN), subscribe) as reader:
        await wait_for(lambda: bool(reader.caught_up("orders")), "the topic to start")
        [tap] = [f for key, f in gateway.clients.feeds.feeds.items() if key[0] == "orders"]
        assert tap.last_seq == reader.caught_up("orders")[0].seq  # opened at the stream's head
        seqs = [await publish(0)]
        await wait_for(lambda: [p.seq for p in reader.events("orders")] == seqs, "the first result")
        nats_server.stop()  # the feed's consumer lives in the server's memory: it is gone
        nats_server.start()
        for n in range(1, 4):
            seqs.append(await publish(n))
        await wait_for(
            lambda: [p.seq for p in reader.events("orders")] == seqs,
            lambda: f"the results after the restart: {[p.seq for p in reader.events('orders')]} of {seqs}",
            timeout_s=30,
        )

    # the in-memory snapshots went with the restart: the gateway creates the stream again when it reconnects,
    # so each account's next report is its snapshot again
    nc = await nats.connect(nats_server.url)
    try:

        async def snapshots_back() -> bool:
            try:
                await nc.jetstream().stream_info(subjects.SNAPSHOTS_STREAM)
            except NotFoundError:
                return False
            return True

        await wait_for(snapshots_back, "HB_SNAPSHOTS to be created again", timeout_s=20)
        update = PositionUpdate(timestamp=utcnow(), account_id=IN, positions=[])
        await nc.publish(subjects.event(IN, "POSITION_UPDATE"), pack(update))
        await nc.flush()
    finally:
        await nc.close()
    subscribe = Subscribe(request_id="s2", topics=["positions"], accounts=[IN], recent=0)
    async with reading(gateway, system_token(secret, IN), subscribe) as reader:
        await wait_for(lambda: bool(reader.caught_up("positions")), "the snapshot")
        assert reader.caught_up("positions")[0].snapshot == 1
        assert [p.data for p in reader.events("positions")] == [update]


async def test_a_long_replay_of_one_topic_does_not_hold_back_another(
    gateway: Gateway, secret: str, nc: NatsClient
) -> None:
    js = nc.jetstream()
    first = (await js.publish(subjects.result(IN), _result(IN, 0))).seq
    epoch = streams.epoch(await js.stream_info(subjects.EVENTS_STREAM))
    for n in range(1, 501):
        await js.publish(subjects.result(IN), _result(IN, n))
    resume = Subscribe(
        request_id="s", topics=["orders", "prices"], accounts=[IN], resume={"orders": Cursor(epoch=epoch, seq=first)}
    )
    async with reading(gateway, system_token(secret, IN), resume) as reader:
        await wait_for(lambda: len(reader.caught_up("orders")) == 1, "the replay of 500 results")
        order = [f for f in reader.frames if isinstance(f, Push | CaughtUp)]
        prices_live = order.index(reader.caught_up("prices")[0])
        assert prices_live < 10  # prices are live at once, not after the 500 replayed results
        assert len(reader.events("orders")) == 500
