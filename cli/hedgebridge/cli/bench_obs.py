"""Bench rows for observability: what tracing and the metrics cost an order, and what the profiles do.

- Tracing: three stacks (gateway, executor and a zero-delay simulated terminal as processes, each stack on its
  own nats-server) run side by side: tracing off, on without export, and on with OTLP/HTTP export (to the
  collector at ``HEDGEBRIDGE_BENCH_OTLP_ENDPOINT`` or 127.0.0.1:4318 when one listens there; else to a sink in
  this process that accepts and discards, and the row says so). Orders go round-robin to the three, so they see
  the same machine noise; the rows are ratios to "tracing off".
- Metrics: the metric calls one order makes, timed in this process, as a ratio to an order round trip.
- Profiles: two stacks, latency and throughput, each with a terminal streaming prices and a client API
  connection subscribed to them that sends orders; the rows are the client's order round trips under that
  price stream (and the price frames it received per second), the throughput profile as a ratio to latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from websockets.asyncio.client import connect

from hedgebridge.cli.bench_rows import Processes, Row
from hedgebridge.common import auth
from hedgebridge.common.obs import metrics
from hedgebridge.common.servers import NatsServer, ValkeyServer, free_port, port_is_free, wait_for_port
from hedgebridge.protocol import CloseOrder, OpenOrder, OrderResult, pack, subjects, subprotocol, unpack

ACCOUNT = "OBS-1"


@dataclass
class Stack:
    name: str
    nats: NatsServer
    gateway_port: int
    secret: str


async def _stack(
    name: str, workdir: Path, cache: ValkeyServer, db: int, procs: Processes, extra: dict[str, str], sim: list[str]
) -> Stack:
    server = NatsServer(workdir / f"nats-{name}")
    server.start()
    secret = auth.new_secret()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env.update(
        HEDGEBRIDGE_NATS_URL=server.url,
        HEDGEBRIDGE_REDIS_URL=f"{cache.url}/{db}",
        HEDGEBRIDGE_JWT_SECRET=secret,
        HEDGEBRIDGE_GATEWAY_PORT=str(port),
        HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS="60000",
        HEDGEBRIDGE_LOG_LEVEL="WARNING",
        **extra,
    )
    procs.start([sys.executable, "-m", "hedgebridge.gateway"], env)
    procs.start([sys.executable, "-m", "hedgebridge.executor"], env)
    if not await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30):
        raise RuntimeError(f"the {name} gateway did not listen")
    procs.start(
        [
            sys.executable, "-m", "hedgebridge.cli", "sim", "--account", ACCOUNT, "--url",
            f"ws://127.0.0.1:{port}/ea", "--fill-latency-ms", "0", "--log-level", "WARNING", *sim,
        ],
        env,
    )  # fmt: skip
    return Stack(name, server, port, secret)


class _Orders:
    """Alternating open/close orders over NATS for one stack."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self.open: list[str] = []
        self.errors = 0

    async def once(self) -> float:
        if self.open:
            body = pack(CloseOrder(account_id=ACCOUNT, position_id=self.open.pop()))
        else:
            body = pack(OpenOrder(account_id=ACCOUNT, symbol="EURUSD", side="BUY", volume=0.01))
        started = time.perf_counter_ns()
        reply = await self.nc.request(subjects.ORDER_REQUEST, body, timeout=10)
        elapsed = (time.perf_counter_ns() - started) / 1e6
        result = unpack(reply.data, OrderResult)
        if result.status != "FILLED":
            self.errors += 1
        elif result.kind == "OPEN" and result.position_id:
            self.open.append(result.position_id)
        return elapsed

    async def ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(Exception):
                await self.once()
                if self.errors == 0:
                    return
            self.errors = 0
            if time.monotonic() > deadline:
                raise RuntimeError("a bench stack's terminal did not answer orders")
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def _otlp_sink() -> Any:
    """An OTLP/HTTP endpoint in this process that accepts every export and discards it."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _collector() -> str | None:
    configured = os.environ.get("HEDGEBRIDGE_BENCH_OTLP_ENDPOINT")
    if configured:
        return configured
    return None if port_is_free(4318) else "http://127.0.0.1:4318"


async def _round_robin(count: int, rate: float, calls: list[Callable[[], Awaitable[float]]]) -> list[list[float]]:
    samples: list[list[float]] = [[] for _ in calls]
    interval = 1.0 / rate
    start = time.perf_counter()
    for i, j in itertools.product(range(count), range(len(calls))):
        delay = start + (i * len(calls) + j) * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        samples[j].append(await calls[j]())
    return samples


@contextlib.asynccontextmanager
async def _clients(stacks: list[Stack]) -> AsyncIterator[list[NatsClient]]:
    clients = [await nats.connect(s.nats.url) for s in stacks]
    try:
        yield clients
    finally:
        for client in clients:
            await client.close()


async def measure_tracing(
    args: argparse.Namespace, workdir: Path, cache: ValkeyServer, procs: Processes, row: type[Row]
) -> list[Row]:
    collector = _collector()
    with _otlp_sink() as sink:
        endpoint = collector or sink
        variants = [
            ("off", {}),
            ("on", {"HEDGEBRIDGE_TRACING": "true"}),
            ("otlp", {"HEDGEBRIDGE_OTLP_ENDPOINT": endpoint}),
        ]
        stacks = [
            await _stack(f"trace-{n}", workdir, cache, 1 + i, procs, extra, ["--tick-interval-ms", "0"])
            for i, (n, extra) in enumerate(variants)
        ]
        try:
            async with _clients(stacks) as clients:
                orders = [_Orders(c) for c in clients]
                for o in orders:
                    await o.ready()
                samples = await _round_robin(args.warmup + args.obs_orders, args.rate, [o.once for o in orders])
        finally:
            for stack in stacks:
                stack.nats.stop()
    samples = [s[args.warmup :] for s in samples]
    off = row("order round trip, tracing off (baseline)", samples[0], errors=orders[0].errors)
    on = row("order round trip, tracing on (no export)", samples[1], off, "p50 <= 1.1x off", errors=orders[1].errors)
    on.met = (on.ratio(50) or 0) <= 1.1 and on.errors == 0
    where = "a local collector" if collector else "an in-bench sink that discards (no collector on :4318)"
    otlp = row(f"order round trip, tracing on, OTLP/HTTP to {where}", samples[2], off, errors=orders[2].errors)
    # the metric calls of one order, timed here: their share of an order round trip
    per_order = _metrics_cost(args.obs_orders)
    cost = row("metrics of one order (in-process calls) vs tracing off", per_order, off, "p50 <= 0.01x")
    cost.met = (cost.ratio(50) or 1) <= 0.01
    return [off, on, otlp, cost]


def _metrics_cost(count: int) -> list[float]:
    """Milliseconds of the metric calls one order makes in the executor and the gateway."""
    samples = []
    hops = metrics.HOP_LATENCY
    for _ in range(count):
        started = time.perf_counter_ns()
        metrics.observe_order("OPEN", "FILLED", "DONE", 0.001)
        hops.labels(metrics.HOP_EXECUTOR_DELIVERY).observe(0.0001)
        hops.labels(metrics.HOP_EXECUTOR_REPORT).observe(0.0001)
        hops.labels(metrics.HOP_GATEWAY_COMMAND).observe(0.0001)
        hops.labels(metrics.HOP_GATEWAY_REPORT).observe(0.0001)
        metrics.COMMAND_ROUND_TRIP.labels("OPENED").observe(0.001)
        metrics.FRAMES.labels("out", "ea", "OPEN").inc()
        metrics.FRAMES.labels("in", "ea", "OPENED").inc()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples


# --- profiles ----------------------------------------------------------------------------------------------


async def _client_orders(stack: Stack, count: int, warmup: int, rate: float) -> tuple[list[float], float, int]:
    """Orders through the client API while subscribed to the terminal's price stream: (round trips in ms,
    price frames per second received, orders not filled)."""
    token = auth.mint_token(stack.secret, role="admin", subject="bench")
    async with connect(
        f"ws://127.0.0.1:{stack.gateway_port}/client",
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=[subprotocol()],  # type: ignore[list-item]
        compression="deflate",
        max_size=None,
    ) as ws:
        await ws.recv()  # CLIENT_WELCOME
        await ws.send(json.dumps({"type": "SUBSCRIBE", "requestId": "prices", "topics": ["prices"]}))
        replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        prices = 0

        async def read() -> None:
            nonlocal prices
            async for data in ws:
                frame = json.loads(data)
                if frame["type"] == "EVENT":
                    prices += 1
                elif frame["type"] == "REPLY" and frame["requestId"] in replies:
                    replies.pop(frame["requestId"]).set_result(frame["result"])

        reader = asyncio.create_task(read())
        held: list[str] = []
        errors = 0
        samples: list[float] = []
        try:
            interval = 1.0 / rate
            start = time.perf_counter()
            counted_from, prices_from = 0.0, 0
            for i in range(warmup + count):
                if i == warmup:
                    counted_from, prices_from = time.perf_counter(), prices
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if held:
                    body: dict[str, Any] = {"type": "CLOSE_ORDER", "accountId": ACCOUNT, "positionId": held.pop()}
                else:
                    body = {
                        "type": "OPEN_ORDER",
                        "accountId": ACCOUNT,
                        "symbol": "EURUSD",
                        "side": "BUY",
                        "volume": 0.01,
                    }
                rid = f"r{i}"
                future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                replies[rid] = future
                started = time.perf_counter_ns()
                await ws.send(json.dumps({"type": "REQUEST", "requestId": rid, "body": body}))
                result = await asyncio.wait_for(future, 10)
                if i >= warmup:
                    samples.append((time.perf_counter_ns() - started) / 1e6)
                if result.get("status") != "FILLED":
                    errors += 1 if i >= warmup else 0
                elif result.get("kind") == "OPEN" and result.get("positionId"):
                    held.append(result["positionId"])
            price_rate = (prices - prices_from) / max(time.perf_counter() - counted_from, 1e-9)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return samples, price_rate, errors


async def measure_profiles(
    args: argparse.Namespace, workdir: Path, cache: ValkeyServer, procs: Processes, row: type[Row]
) -> list[Row]:
    ticks = ["--tick-interval-ms", str(args.obs_tick_ms)]
    stacks = [
        await _stack(f"profile-{p}", workdir, cache, 4 + i, procs, {"HEDGEBRIDGE_PROFILE": p}, ticks)
        for i, p in enumerate(("latency", "throughput"))
    ]
    try:
        async with _clients(stacks) as clients:
            for client in clients:
                await _Orders(client).ready()
            measured = await asyncio.gather(
                *(_client_orders(s, args.obs_orders, args.warmup, args.rate / 2) for s in stacks)
            )
    finally:
        for stack in stacks:
            stack.nats.stop()
    (lat, lat_prices, lat_errors), (thr, thr_prices, thr_errors) = measured
    latency = row(
        f"client order round trip under a price stream, latency profile ({lat_prices:.0f} prices/s received)",
        lat,
        errors=lat_errors,
    )
    throughput = row(
        f"client order round trip under a price stream, throughput profile ({thr_prices:.0f} prices/s received)",
        thr,
        latency,
        errors=thr_errors,
    )
    return [latency, throughput]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--obs-orders", type=int, default=500, help="orders per variant for tracing and profile rows (default 500)"
    )
    parser.add_argument(
        "--obs-tick-ms", type=int, default=5, help="price tick interval of the profile rows' terminals (default 5)"
    )


async def measure(
    args: argparse.Namespace, workdir: Path, cache: ValkeyServer, procs: Processes, row: type[Row]
) -> list[Row]:
    return [
        *await measure_tracing(args, workdir, cache, procs, row),
        *await measure_profiles(args, workdir, cache, procs, row),
    ]
