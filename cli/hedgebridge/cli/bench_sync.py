"""Action-sync fan-out: how long an action's state takes from the coordinator to every subscribed system.

The states are published by a coordinator's own publication path (``Coordinator.publish_state``: JetStream
publish to ``hb.action.<actionId>`` with a de-duplication id, acknowledged by the stream) and received by
``n_subscribers`` separate NATS connections subscribed to ``hb.action.*``, as independent systems are. The
baseline is a plain NATS publish of the same payload to the same subscribers, measured in the same run.
Latency is publish start → receipt, on one monotonic clock (sender and receivers share the process).
States are sent one at a time, paced, so the figures are latencies rather than queueing under a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hedgebridge.coordinator.config import CoordinatorConfig
from hedgebridge.coordinator.service import Coordinator
from hedgebridge.protocol import ActionState, pack, subjects, utcnow

BASELINE_SUBJECT = f"{subjects.PREFIX}.bench.fanout"


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


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


async def measure_action_sync(
    nats_url: str,
    n_subscribers: int = 100,
    n_actions: int = 200,
    *,
    interval_ms: float = 5.0,
    wait_s: float = 5.0,
) -> dict[str, float | int]:
    """Fan-out latency of ActionState publications to ``n_subscribers`` NATS subscribers, against a raw NATS
    publish of the same payload. Returns p50/p99 (ms) of both, the sample counts and any missed deliveries."""
    if n_subscribers < 1 or n_actions < 1:
        raise ValueError("n_subscribers and n_actions must be positive")
    run = uuid.uuid4().hex[:8]
    coordinator = Coordinator(CoordinatorConfig(nats_url=nats_url, id=f"co-bench-{run}", reconcile_interval_ms=600_000))
    await coordinator.start()
    subscribers = [await nats.connect(nats_url, name=f"bench-sync-{i}") for i in range(n_subscribers)]
    try:
        template = ActionState(
            action_id=f"bench-{run}-0", kind="HEDGE_ENTRY", state="RUNNING", seq=1, timestamp=utcnow()
        )

        def state_for(number: int) -> ActionState:
            return ActionState(
                action_id=f"bench-{run}-{number}",
                kind=template.kind,
                state=template.state,
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
    return {
        "subscribers": n_subscribers,
        "actions": n_actions,
        "samples": len(sync),
        "sync_p50_ms": _percentile(sync, 50),
        "sync_p99_ms": _percentile(sync, 99),
        "sync_missing": sync_missing,
        "raw_p50_ms": _percentile(raw, 50),
        "raw_p99_ms": _percentile(raw, 99),
        "raw_missing": raw_missing,
    }
