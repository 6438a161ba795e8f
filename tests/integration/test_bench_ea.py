"""The bench's order round trips: the loop every terminal kind is measured with, against the Python simulator on
the real gateway and executor; the compiled EA's rows next to the same baseline, measured where the EA builds
and skipped with the reason (printed in the table) where it cannot be. Once the MQL5 runtime is in the tree an
EA that does not build fails here instead of being skipped."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from hedgebridge.cli import bench_ea
from hedgebridge.cli.bench_rows import Processes, Row
from hedgebridge.cli.bench_table import table
from hedgebridge.gateway.server import Gateway
from hedgebridge.sim.ea import launch

from ..conftest import StartSims

pytestmark = pytest.mark.integration


async def paced(count: int, rate: float, call: Callable[[], Awaitable[float]]) -> list[float]:
    samples: list[float] = []
    start = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        samples.append(await call())
    return samples


async def test_the_order_loop_alternates_opens_and_closes_on_the_simulator(sims: StartSims, nc: NatsClient) -> None:
    (terminal,) = await sims(["BENCH-1"], fill_latency_ms=0, tick_interval_ms=0)
    await bench_ea.wait_ready(nc, "BENCH-1", "the simulated terminal")
    samples, errors = await bench_ea.order_round_trips(nc, "BENCH-1", 11, 200.0, paced)
    assert (len(samples), errors) == (11, 0)
    assert min(samples) > 0
    assert terminal.account.received.count("") == 0  # every order carried its own actionId
    assert len(terminal.account.received) == 12  # the readiness order and the 11 measured
    assert len(terminal.account.positions) == 2  # the readiness one, and the 11th (an open) not closed


@pytest.mark.timeout(600)  # builds the library (and the EAs) first: minutes on a loaded 2-core machine
async def test_the_compiled_ea_rows_are_measured_or_skipped_with_the_reason(
    gateway: Gateway, secret: str, nc: NatsClient, executor: object, tmp_path: Path
) -> None:
    prepared = bench_ea.prepare()
    baseline = Row("plain NATS request/reply (baseline)", [1.0, 2.0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env.update(HEDGEBRIDGE_JWT_SECRET=secret, HEDGEBRIDGE_HOME=str(tmp_path))
    procs = Processes()
    try:
        rows = await bench_ea.rows(
            nc, f"ws://127.0.0.1:{gateway.port}/ea", env, procs, prepared, baseline, 10, 2, 100.0, paced
        )
    finally:
        procs.stop()
    assert [r.name for r in rows] == ["order round trip, compiled EA (dll)", "order round trip, compiled EA (native)"]
    assert all(r.baseline is baseline for r in rows)
    lines = list(table(rows))
    if not launch.runtime_present():
        assert set(prepared.values()) == {launch.NO_RUNTIME}
        assert procs.children == []
        for row, line in zip(rows, lines[2:4], strict=True):
            assert row.samples == []
            assert line.startswith(f"| {row.name} | 0 | skipped: the MQL5 runtime for tests")
        return
    assert prepared == {"dll": None, "native": None}, f"the compiled EA does not build: {prepared}"
    for row in rows:
        assert (len(row.samples), row.errors, row.skipped) == (10, 0, "")
