"""The fault suite: the whole stack as real processes under a steady load while the nemesis kills, restarts and
pauses each kind of process and drops terminals at every step of an order; then the checker reads the whole
history. Short by default (one round of every fault); ``--faults-long --faults-rounds N --faults-seed N``."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from hedgebridge.client import HedgebridgeClient
from hedgebridge.common import bus

from .checker import History, check
from .load import STREAM_TOPICS, Load, StreamClient, reference, system_token
from .nemesis import Nemesis, until
from .schedule import schedule
from .stack import FaultStack

pytestmark = [pytest.mark.faults, pytest.mark.integration]

ACCOUNTS = ["F1", "F2", "F3", "F4"]


async def test_guarantees_hold_under_faults(tmp_path: Path, faults_options: tuple[int, int]) -> None:
    seed, rounds = faults_options
    faults = schedule(seed, rounds, ACCOUNTS)
    stack = FaultStack(tmp_path, ACCOUNTS)
    history = History()
    clients: list[HedgebridgeClient] = []
    tasks: list[asyncio.Task[None]] = []
    nc = None
    nemesis = None
    try:
        await asyncio.to_thread(stack.start)
        token = system_token(stack.secret, ACCOUNTS)

        async def terminals_up() -> bool:
            state = await asyncio.to_thread(stack.terminal_state)
            return all(v["connected"] for v in state.values())

        await until(terminals_up, "the terminals to connect", 30)

        async def client(gateway: str) -> HedgebridgeClient:
            url = stack.gateway_url(gateway, "client")
            made = await HedgebridgeClient.connect(url, token, reconnect=True, reconnect_for_s=120)
            clients.append(made)
            return made

        streams = {gw: StreamClient(f"stream-{gw}", history) for gw in ("gw-1", "gw-2")}
        for gw, stream in streams.items():
            tasks.append(asyncio.create_task(stream.follow(await client(gw))))
        await until(lambda: all(len(s.first) == len(STREAM_TOPICS) for s in streams.values()), "streams", 30)
        load = Load(history, ACCOUNTS, seed)
        tasks.append(asyncio.create_task(load.orders(await client("gw-1"), 1)))
        tasks.append(asyncio.create_task(load.orders(await client("gw-2"), 2)))
        tasks.append(asyncio.create_task(load.actions(await client("gw-1"))))
        workers = tasks[-3:]
        nc = await bus.connect(stack.cluster.url, "faults-nemesis")
        nemesis = Nemesis(stack, load, history, nc, streams, print)
        await nemesis.run(faults)
        load.stop.set()
        async with asyncio.timeout(120):
            await asyncio.gather(*workers)
        await nemesis.converged("the end of the run")
        cursors = {
            topic: min((s.first[topic] for s in streams.values()), key=lambda c: c[1]) for topic in STREAM_TOPICS
        }
        done = len(history.received)
        await until(lambda: len(history.received) >= done, "the stream clients", 1)
        history.reference, history.published = await reference(stack.gateway_url("gw-1", "client"), token, cursors)
        nemesis.journal.into(history)
        print(
            f"history: {len(history.submits)} submits, {len(history.answers)} answers, {len(history.commands)} "
            f"commands, {len(history.executions)} executions, {len(history.actions)} actions, "
            f"{len(history.received)} stream items, {len(history.cache_checks)} cache checks"
        )
        problems = check(history)
        assert not problems, "\n".join(problems[:40])
        assert len(history.submits) > len(faults), "the load did not go on between the faults"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for made in clients:
            with contextlib.suppress(Exception):
                await made.aclose()
        if nemesis is not None:
            await nemesis.close()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        await asyncio.to_thread(stack.close)
