"""Action-sync fan-out: how long an action's state takes from the coordinator to every subscribed system.

Two measurements. Over the client API (``measure_client_sync``): real hedge actions run through the running
coordinator, executor and simulated terminals, watched by client API connections spread over receiver
processes. Over NATS (``measure_action_sync``): states are published by a coordinator's own publication path
(``Coordinator.publish_state``: JetStream publish to ``hb.action.<actionId>`` with a de-duplication id,
acknowledged by the stream) and received by ``n_subscribers`` separate NATS connections subscribed to
``hb.action.*``, as independent systems are; the baseline is a plain NATS publish of the same payload to the
same subscribers, in the same run. Latency there is publish start → receipt, on one monotonic clock (sender
and receivers share the process); states are sent one at a time, paced, so the figures are latencies rather
than queueing under a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from websockets.asyncio.client import connect

from hedgebridge.coordinator.config import CoordinatorConfig
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.protocol import (
    ActionLeg,
    ActionRequest,
    ActionState,
    Heartbeat,
    encode_frame,
    pack,
    subjects,
    subprotocol,
    unpack,
    utcnow,
)

BASELINE_SUBJECT = f"{subjects.PREFIX}.bench.fanout"


class _Receivers:
    """Receipt times of every message by every subscriber, keyed by the message's number."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.received: dict[int, list[float]] = {}
        self.complete: dict[int, asyncio.Event] = {}

    def expect(self, number: int) -> asyncio.Event:
        self.received[number] = []
        event = self.complete[number] = asyncio.Event()
        return event

    def callback(self, number_of: Callable[[Msg], int]) -> Callable[[Msg], Awaitable[None]]:
        async def on_message(msg: Msg) -> None:
            now = time.perf_counter()
            number = number_of(msg)
            times = self.received.get(number)
            if times is None:
                return
            times.append(now)
            if len(times) == self.count:
                self.complete[number].set()

        return on_message


async def _fan_out(
    subscribers: list[NatsClient],
    subject: str,
    number_of: Callable[[Msg], int],
    send: Callable[[int], Awaitable[None]],
    n_messages: int,
    interval_s: float,
    wait_s: float,
) -> tuple[list[float], int]:
    """Send ``n_messages`` one by one; returns every (subscriber, message) latency in ms and the missing count."""
    receivers = _Receivers(len(subscribers))
    subs = [await nc.subscribe(subject, cb=receivers.callback(number_of)) for nc in subscribers]
    for nc in subscribers:
        await nc.flush()
    latencies: list[float] = []
    missing = 0
    try:
        for number in range(n_messages):
            done = receivers.expect(number)
            sent = time.perf_counter()
            await send(number)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), wait_s)
            times = receivers.received.pop(number)
            missing += len(subscribers) - len(times)
            latencies += [(t - sent) * 1000 for t in times]
            await asyncio.sleep(interval_s)
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    return latencies, missing


@dataclass
class FanOut:
    """Per (subscriber, state) latencies in ms of the measured path and of its baseline."""

    measured: list[float]
    baseline: list[float]
    measured_missing: int = 0
    baseline_missing: int = 0


async def measure_action_sync(
    nats_url: str,
    n_subscribers: int = 100,
    n_actions: int = 200,
    *,
    interval_ms: float = 5.0,
    wait_s: float = 5.0,
) -> FanOut:
    """Fan-out latency of ActionState publications to ``n_subscribers`` NATS subscribers, against a raw NATS
    publish of the same payload to the same subscribers."""
    if n_subscribers < 1 or n_actions < 1:
        raise ValueError("n_subscribers and n_actions must be positive")
    run = uuid.uuid4().hex[:8]
    coordinator = Coordinator(CoordinatorConfig(nats_url=nats_url, id=f"co-bench-{run}", reconcile_interval_ms=600_000))
    await coordinator.start()
    subscribers = [await nats.connect(nats_url, name=f"bench-sync-{i}") for i in range(n_subscribers)]
    try:

        def state_for(number: int) -> ActionState:
            return ActionState(
                action_id=f"bench-{run}-{number}",
                kind="HEDGE_ENTRY",
                state="RUNNING",
                seq=number + 1,
                timestamp=utcnow(),
                account_ids=["A", "B"],
            )

        def number_of_state(msg: Msg) -> int:
            return int(msg.subject.rsplit("-", 1)[1])

        async def send_state(number: int) -> None:
            await coordinator.publish_state(state_for(number))

        sync, sync_missing = await _fan_out(
            subscribers, subjects.ALL_ACTIONS, number_of_state, send_state, n_actions, interval_ms / 1000, wait_s
        )

        publisher = coordinator.nats
        payload = pack(state_for(0))

        def number_of_raw(msg: Msg) -> int:
            return int(msg.headers["n"]) if msg.headers else -1

        async def send_raw(number: int) -> None:
            await publisher.publish(BASELINE_SUBJECT, payload, headers={"n": str(number)})
            await publisher.flush()

        raw, raw_missing = await _fan_out(
            subscribers, BASELINE_SUBJECT, number_of_raw, send_raw, n_actions, interval_ms / 1000, wait_s
        )
    finally:
        for nc in subscribers:
            with contextlib.suppress(Exception):
                await nc.close()
        await coordinator.kill()
    if not sync or not raw:
        raise RuntimeError("no state reached any subscriber")
    return FanOut(sync, raw, sync_missing, raw_missing)


class _StateSeen(msgspec.Struct):
    """The part of an EVENT frame a receiver reads."""

    topic: str = ""
    data: dict[str, Any] = {}


async def _receive(url: str, token: str, n_clients: int) -> None:
    """A receiver process: ``n_clients`` client API connections subscribed to ``actions``. Prints ``ready``,
    then, when stdin closes, one JSON list of latencies (ms, from each state's timestamp to its receipt)."""
    decoder = msgspec.json.Decoder(_StateSeen)
    latencies: list[float] = []

    async def client() -> None:
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=[subprotocol()],  # type: ignore[list-item]
            compression=None,
            ping_interval=None,
            max_queue=None,
        ) as ws:
            await ws.recv()  # CLIENT_WELCOME
            await ws.send('{"type":"SUBSCRIBE","requestId":"s","topics":["actions"]}')
            await ws.recv()  # SUBSCRIBED
            ready.release()

            async def beat() -> None:
                while True:
                    await asyncio.sleep(1)
                    await ws.send(encode_frame(Heartbeat(timestamp=utcnow())).decode())

            beating = asyncio.create_task(beat())
            try:
                async for frame in ws:
                    now = time.time()
                    if '"ACTION_STATE"' in frame:
                        stamp = decoder.decode(frame).data["timestamp"]
                        latencies.append((now - datetime.fromisoformat(stamp).timestamp()) * 1000)
            finally:
                beating.cancel()

    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(client()) for _ in range(n_clients)]
    for _ in range(n_clients):
        await ready.acquire()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(latencies), flush=True)


async def measure_client_sync(
    client_url: str,
    token: str,
    nats_url: str,
    legs: Sequence[ActionLeg],
    n_clients: int = 100,
    n_actions: int = 25,
    processes: int = 4,
) -> tuple[list[float], int]:
    """Real hedge actions (entry, then exit) through a running coordinator, watched by ``n_clients`` client API
    connections subscribed to ``actions``, spread over ``processes`` receiver processes (as independent
    systems are). Returns every (client, state) latency in ms, from the state's timestamp to its receipt (one
    machine, one clock), and how many expected receipts never came."""
    per = [n_clients // processes + (1 if i < n_clients % processes else 0) for i in range(processes)]
    module = [sys.executable, "-m", "hedgebridge.cli.bench_sync", client_url, token]
    receivers = [
        await asyncio.create_subprocess_exec(
            *module, str(count), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        for count in per
        if count
    ]
    nc = await nats.connect(nats_url, name="bench-client-sync")
    try:
        for receiver in receivers:
            assert receiver.stdout is not None
            line = await asyncio.wait_for(receiver.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError("a client API receiver did not start")
        states = 0
        for i in range(n_actions):
            for request in (
                ActionRequest(action_id=f"bench-sync-{i}", kind="HEDGE_ENTRY", legs=list(legs)),
                ActionRequest(action_id=f"bench-sync-{i}-x", kind="EXIT", target_action_id=f"bench-sync-{i}"),
            ):
                reply = await nc.request(subjects.ACTION_REQUEST, pack(request), timeout=30)
                final = unpack(reply.data, ActionState)
                if final.state == "REJECTED":
                    raise RuntimeError(f"bench action refused: {final.message}")
                states += final.seq
        await asyncio.sleep(1)  # the last states are on their way to the receivers
        latencies: list[float] = []
        for receiver in receivers:
            out, _ = await asyncio.wait_for(receiver.communicate(b""), 60)
            latencies += json.loads(out.decode().strip().splitlines()[-1])
        return latencies, max(states * n_clients - len(latencies), 0)
    finally:
        await nc.close()
        for receiver in receivers:
            if receiver.returncode is None:
                receiver.kill()
                await receiver.wait()


if __name__ == "__main__":
    asyncio.run(_receive(sys.argv[1], sys.argv[2], int(sys.argv[3])))
