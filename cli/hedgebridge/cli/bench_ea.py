"""The bench's order round trips through a terminal process, and the compiled EA's rows.

``order_round_trips`` is how the bench measures an order round trip for every terminal kind: paced open and close
requests alternating on one account (so its position list stays short), timed from the request to the
executor's result. The simulator's row runs it against ``hedgebridge sim``; the compiled EA's rows run it, in the
same bench run and against the same plain NATS request/reply baseline, against ``hedgebridge sim --terminal ea``
with each transport. The EA is built before any measurement (a build loads the machine); where it cannot be
built (no MQL5 runtime in the tree, no g++, missing headers) its row is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NatsClient

from hedgebridge.cli.bench_rows import Processes, Row
from hedgebridge.common.servers import terminate
from hedgebridge.protocol import CloseOrder, OpenOrder, OrderResult, pack, subjects, unpack
from hedgebridge.sim.ea import launch

Paced = Callable[[int, float, Callable[[], Awaitable[float]]], Awaitable[list[float]]]


async def order_once(nc: NatsClient, request: bytes) -> OrderResult:
    reply = await nc.request(subjects.ORDER_REQUEST, request, timeout=10)
    return unpack(reply.data, OrderResult)


async def wait_ready(nc: NatsClient, account: str, what: str, timeout_s: float = 30) -> None:
    """Until an OPEN on ``account`` is FILLED (the terminal is connected and trading)."""
    request = pack(OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=0.01))
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if (await order_once(nc, request)).status == "FILLED":
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {timeout_s:g}s")
        await asyncio.sleep(0.05)


async def order_round_trips(
    nc: NatsClient, account: str, count: int, rate: float, paced: Paced
) -> tuple[list[float], int]:
    """``count`` paced round trips, opens and closes alternating; (latencies in ms, results not FILLED)."""
    opening = pack(OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=0.01))
    errors = 0
    open_position: list[str] = []

    async def order() -> float:
        nonlocal errors
        body = pack(CloseOrder(account_id=account, position_id=open_position.pop())) if open_position else opening
        started = time.perf_counter_ns()
        result = await order_once(nc, body)
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if result.status != "FILLED":
            errors += 1
        elif body is opening and result.position_id:
            open_position.append(result.position_id)
        return elapsed

    return await paced(count, rate, order), errors


def prepare() -> dict[launch.Transport, str | None]:
    """Build the EA for each transport before measuring; None when built, else why its row is skipped."""
    if not launch.runtime_present():
        return dict.fromkeys(launch.TRANSPORTS, launch.NO_RUNTIME)
    ready: dict[launch.Transport, str | None] = {}
    for transport in launch.TRANSPORTS:
        try:
            launch.build(transport)
            if transport == "dll":
                launch.dll_library()
            ready[transport] = None
        except launch.EaUnavailable as exc:
            ready[transport] = str(exc).splitlines()[0][:200]
    return ready


async def rows(
    nc: NatsClient,
    gateway_url: str,
    env: dict[str, str],
    procs: Processes,
    prepared: dict[launch.Transport, str | None],
    baseline: Row,
    count: int,
    warmup: int,
    rate: float,
    paced: Paced,
) -> list[Row]:
    """One row per transport: the compiled EA's order round trip, next to ``baseline``."""
    out: list[Row] = []
    for transport in launch.TRANSPORTS:
        row = Row(f"order round trip, compiled EA ({transport})", [], baseline)
        out.append(row)
        if prepared.get(transport) is not None:
            row.skipped = str(prepared[transport])
            continue
        account = f"BENCH-EA-{transport.upper()}"
        ea = procs.start(
            [
                sys.executable, "-m", "hedgebridge.cli", "sim", "--terminal", "ea", "--transport", transport,
                "--account", account, "--url", gateway_url, "--tick-interval-ms", "0", "--log-level", "WARNING",
            ],
            env,
        )  # fmt: skip
        try:
            await wait_ready(nc, account, f"the compiled EA ({transport})", timeout_s=120)
            samples, row.errors = await order_round_trips(nc, account, warmup + count, rate, paced)
            row.samples = samples[warmup:]
        finally:
            await asyncio.to_thread(terminate, ea)  # the measurements after it run without it
    return out
