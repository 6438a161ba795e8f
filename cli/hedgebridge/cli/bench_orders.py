"""The bench's order-path rows: what a hedge system sees of an order, next to plain NATS in the same run.

A stack of its own (a nats-server, a valkey-server, the gateway, one executor and then two, simulated terminals
with zero fill delay, every one its own process) and a plain NATS responder as the baseline:

- Client API round trip: orders through the SDK (``HedgebridgeClient`` → ``/client`` → executor → terminal →
  back), each one right after a plain NATS request/reply so both see the same machine noise; once without a
  price stream, once with the client subscribed to a terminal streaming prices (``--orders-tick-ms``).
- Sustained orders (the knee): an open loop over ``--knee-terminals`` terminals at rising rates
  (``--knee-rates``), every order started next to a plain NATS request at the same moment, with one executor
  and then with two; a step holds when none is lost (every order FILLED), the rate asked is reached and its p99
  is at most ``KNEE_RATIO`` times the plain NATS p99 of the same step. The knee is the highest rate held.
- CPU per order: user + system time (``/proc/<pid>/stat``) of the gateway, the executors, NATS, the cache and
  the terminals over a run of orders, divided by the orders; next to what a plain NATS request/reply costs the
  server and the responder.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from hedgebridge.cli.bench_ea import order_once, wait_ready
from hedgebridge.cli.bench_rows import NATS_RESPONDER, Processes, Row
from hedgebridge.client import HedgebridgeClient
from hedgebridge.common import auth, loop
from hedgebridge.common.servers import NatsServer, ValkeyServer, free_port, wait_for_port
from hedgebridge.protocol import CloseOrder, OpenOrder, OrderResult, pack, subjects

KNEE_RATIO = 5.0  # a step holds while its p99 is at most this many times plain NATS's (the goal at 1,000/s)
QUIET, STREAMING = "ORD-QUIET", "ORD-PRICES"
_BODY = b"x" * 200


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    nats: NatsServer
    cache: ValkeyServer
    env: dict[str, str]
    url: str  # the gateway's base URL
    procs: Processes
    roles: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def start(self, role: str, argv: list[str]) -> subprocess.Popen[bytes]:
        process = self.procs.start([sys.executable, *argv], self.env)
        self.roles.setdefault(role, []).append(process)
        return process

    def sim(self, accounts: list[str], tick_ms: int = 0) -> None:
        ticks = ["--tick-interval-ms", str(tick_ms)]
        named = [a for account in accounts for a in ("--account", account)]
        url = f"{self.url}/ea"
        argv = ["-m", "hedgebridge.cli", "sim", *named, "--url", url, "--fill-latency-ms", "0", *ticks]
        self.start("terminals", [*argv, "--log-level", "WARNING"])

    def pids(self) -> dict[str, list[int]]:
        """The processes an order runs through, by role (NATS and the cache included)."""
        out = {role: [p.pid for p in ps if p.poll() is None] for role, ps in self.roles.items() if role != "baseline"}
        out["nats"] = [self.nats.pid] if self.nats.pid else []
        out["cache"] = [self.cache.pid] if self.cache.pid else []
        return out

    def cpu(self, roles: dict[str, list[int]]) -> dict[str, float]:
        return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in roles.items()}


async def _start(workdir: Path, procs: Processes) -> Stack:
    server = NatsServer(workdir / "orders-nats", monitor_port=free_port())
    cache = ValkeyServer(workdir / "orders-cache")
    server.start()
    cache.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_") or k == loop.ENV}
    env.update(
        HEDGEBRIDGE_NATS_URL=server.url,
        HEDGEBRIDGE_REDIS_URL=f"{cache.url}/0",
        HEDGEBRIDGE_JWT_SECRET=auth.new_secret(),
        HEDGEBRIDGE_GATEWAY_PORT=str(port),
        HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS="60000",
        HEDGEBRIDGE_GATEWAY_MESSAGE_RATE="0",
        HEDGEBRIDGE_GATEWAY_IP_CONNECT_RATE="0",
        HEDGEBRIDGE_LOG_LEVEL="WARNING",
    )
    stack = Stack(server, cache, env, f"ws://127.0.0.1:{port}", procs)
    stack.start("gateway", ["-m", "hedgebridge.gateway"])
    stack.start("executors", ["-m", "hedgebridge.executor"])
    echo = stack.start("baseline", ["-c", NATS_RESPONDER, server.url])
    if not await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30):
        raise RuntimeError("the orders bench's gateway did not listen")
    assert echo.stdout is not None
    await asyncio.to_thread(echo.stdout.readline)
    return stack


async def _plain(nc: NatsClient) -> float:
    started = time.perf_counter_ns()
    await nc.request("bench.echo", _BODY, timeout=10)
    return (time.perf_counter_ns() - started) / 1e6


class Alternating:
    """Opens and closes alternating per account (each account's positions stay few); counts the orders lost
    (not FILLED, or no answer)."""

    def __init__(self, accounts: list[str]) -> None:
        self.accounts = accounts
        self.held: dict[str, list[str]] = {a: [] for a in accounts}
        self.lost = 0
        self.why: collections.Counter[str] = collections.Counter()  # the lost ones: their status, or the error

    def next(self, i: int) -> OpenOrder | CloseOrder:
        account = self.accounts[i % len(self.accounts)]
        held = self.held[account]
        if held:
            return CloseOrder(account_id=account, position_id=held.pop())
        return OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=0.01)

    async def timed(self, order: OpenOrder | CloseOrder, answer: Awaitable[object]) -> float:
        started = time.perf_counter_ns()
        try:
            result = await answer
        except Exception as exc:
            self.lost += 1
            self.why[type(exc).__name__] += 1
            return (time.perf_counter_ns() - started) / 1e6
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if not isinstance(result, OrderResult) or result.status != "FILLED":
            self.lost += 1
            self.why[result.status if isinstance(result, OrderResult) else type(result).__name__] += 1
        elif isinstance(order, OpenOrder) and result.position_id:
            self.held[order.account_id].append(result.position_id)
        return elapsed


async def _client_round_trips(
    stack: Stack, nc: NatsClient, account: str, count: int, rate: float, prices: bool
) -> tuple[list[float], list[float], int, float]:
    """(plain NATS ms, client order ms, orders lost, price events per second received), paced pairs."""
    token = auth.mint_token(stack.env["HEDGEBRIDGE_JWT_SECRET"], role="admin", subject="bench")
    orders = Alternating([account])
    plain: list[float] = []
    samples: list[float] = []
    received = 0
    async with await HedgebridgeClient.connect(f"{stack.url}/client", token) as client:
        counter: asyncio.Task[None] | None = None
        if prices:
            subscription = await client.subscribe(["prices"], recent=None)

            async def count_prices() -> None:
                nonlocal received
                async for _ in subscription:
                    received += 1

            counter = asyncio.create_task(count_prices())
        started = time.perf_counter()
        try:
            for i in range(count):
                await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
                plain.append(await _plain(nc))
                order = orders.next(i)
                samples.append(await orders.timed(order, client.request(order)))
        finally:
            elapsed = time.perf_counter() - started
            if counter is not None:
                counter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await counter
    return plain, samples, orders.lost, received / elapsed


@dataclass
class Step:
    rate: float
    achieved: float
    plain: list[float]
    orders: list[float]
    lost: int
    why: dict[str, int] = field(default_factory=dict)  # the lost orders by status (or error)

    def row(self, terminals: int, executors: int) -> Row:
        baseline = Row(f"plain NATS request/reply at {self.rate:g}/s (baseline)", self.plain)
        lost = ", ".join(f"{n} {what}" for what, n in sorted(self.why.items()))
        name = (
            f"orders at {self.rate:g}/s over {terminals} terminals, {executors} executor(s) "
            f"(achieved {self.achieved:.0f}/s; NATS p50/p99 {baseline.p50:.2f}/{baseline.p99:.2f} ms"
            f"{'; lost: ' + lost if lost else ''})"
        )
        return Row(name, self.orders, baseline, f"p99 <= {KNEE_RATIO:g}x NATS, none lost", errors=self.lost)

    def held(self) -> bool:
        ratio = Row("", self.orders, Row("", self.plain)).ratio(99) or 0.0
        return self.lost == 0 and self.achieved >= 0.95 * self.rate and ratio <= KNEE_RATIO


async def _step(nc: NatsClient, orders: Alternating, rate: float, count: int) -> Step:
    """An open loop of ``count`` starts at ``rate``: each start sends an order and a plain request together."""
    lost_before, why_before = orders.lost, orders.why.copy()
    started = time.perf_counter()
    plain_tasks: list[asyncio.Task[float]] = []
    order_tasks: list[asyncio.Task[float]] = []
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        order = orders.next(i)
        order_tasks.append(asyncio.create_task(orders.timed(order, order_once(nc, pack(order)))))
        plain_tasks.append(asyncio.create_task(_plain(nc)))
    measured = await asyncio.gather(*order_tasks)
    achieved = count / (time.perf_counter() - started)
    plain = list(await asyncio.gather(*plain_tasks))
    return Step(rate, achieved, plain, list(measured), orders.lost - lost_before, dict(orders.why - why_before))


async def _knee(
    nc: NatsClient, orders: Alternating, rates: list[float], seconds: float, executors: int
) -> tuple[list[Row], Row]:
    rows: list[Row] = []
    best: Step | None = None
    for rate in rates:
        step = await _step(nc, orders, rate, max(50, int(rate * seconds)))
        rows.append(step.row(len(orders.accounts), executors))
        if not step.held():
            break
        best = step
    name = f"knee, {executors} executor(s): highest rate held over {len(orders.accounts)} terminals"
    if best is None:
        knee = Row(name, [], target=f"p99 <= {KNEE_RATIO:g}x NATS, none lost")
        knee.skipped = f"no rate held (lowest asked: {rates[0]:g}/s)"
        return rows, knee
    knee = best.row(len(orders.accounts), executors)
    knee.name = f"{name}: {best.rate:g}/s"
    knee.met = True
    return rows, knee


async def _cpu_rows(stack: Stack, nc: NatsClient, orders: Alternating, rate: float, count: int) -> list[Row]:
    """CPU time per order over every process of the stack, next to a plain request/reply's (server + responder)."""
    roles = stack.pids()
    before = stack.cpu(roles)
    await _step(nc, orders, rate, count)  # orders with their plain twins: the twins' cost is subtracted
    after = stack.cpu(roles)
    echo = stack.roles["baseline"][0].pid
    plain_roles = {"nats": roles["nats"], "baseline": [echo]}
    plain_before = stack.cpu(plain_roles)
    started = time.perf_counter()
    tasks = []
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(_plain(nc)))
    await asyncio.gather(*tasks)
    plain_after = stack.cpu(plain_roles)
    plain_ms = {role: (plain_after[role] - plain_before[role]) * 1000 / count for role in plain_roles}
    per_order = {role: (after[role] - before[role]) * 1000 / count for role in roles}
    per_order["nats"] -= plain_ms["nats"]  # the plain twins went through the same server
    baseline = Row(f"CPU per plain NATS request/reply, server + responder, ms ({count} at {rate:g}/s)", [])
    baseline.samples = [sum(plain_ms.values())]
    parts = ", ".join(f"{role} {ms:.2f}" for role, ms in per_order.items())
    row = Row(f"CPU per order, all processes, ms ({parts})", [sum(per_order.values())], baseline)
    return [baseline, row]


async def measure(args: argparse.Namespace, workdir: Path, procs: Processes) -> list[Row]:
    stack = await _start(workdir, procs)
    accounts = [f"KNEE-{i}" for i in range(1, args.knee_terminals + 1)]
    try:
        stack.sim([QUIET])
        nc = await nats.connect(stack.nats.url)
        try:
            await wait_ready(nc, QUIET, "the orders bench's terminal")
            plain, quiet, quiet_lost, _ = await _client_round_trips(
                stack, nc, QUIET, args.warmup + args.client_orders, args.client_rate, prices=False
            )
            stack.sim([STREAMING], args.orders_tick_ms)
            await wait_ready(nc, STREAMING, "the streaming terminal")
            plain_s, streaming, streaming_lost, price_rate = await _client_round_trips(
                stack, nc, STREAMING, args.warmup + args.client_orders, args.client_rate, prices=True
            )
            rows = _client_rows(args.warmup, plain, quiet, quiet_lost, plain_s, streaming, streaming_lost, price_rate)
            stack.sim(accounts)
            for account in accounts:
                await wait_ready(nc, account, f"the terminal {account}")
            orders = Alternating(accounts)
            steps = rates(args.knee_rates)
            cpu = await _cpu_rows(stack, nc, orders, args.client_rate, args.cpu_orders)  # before any overload
            steps1, knee1 = await _knee(nc, orders, steps, args.knee_seconds, 1)
            stack.start("executors", ["-m", "hedgebridge.executor"])
            await _wait_executors(stack, 2)
            steps2, knee2 = await _knee(nc, orders, steps, args.knee_seconds, 2)
        finally:
            await nc.close()
    finally:
        procs.stop()
        stack.nats.stop()
        stack.cache.stop()
    return [*rows, *steps1, knee1, *steps2, knee2, *cpu]


async def _wait_executors(stack: Stack, count: int, timeout_s: float = 30) -> None:
    """Until ``count`` executors take order requests (NATS's monitoring lists their subscriptions)."""
    url = f"http://127.0.0.1:{stack.nats.monitor_port}/connz?subs=1"
    deadline = time.monotonic() + timeout_s
    while True:
        connz = await asyncio.to_thread(_read_json, url)
        serving = sum(subjects.ORDER_REQUEST in c.get("subscriptions_list", []) for c in connz.get("connections", []))
        if serving >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} executors did not serve orders within {timeout_s:g}s")
        await asyncio.sleep(0.1)


def _read_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def _client_rows(
    warmup: int,
    plain: list[float],
    quiet: list[float],
    quiet_lost: int,
    plain_s: list[float],
    streaming: list[float],
    streaming_lost: int,
    price_rate: float,
) -> list[Row]:
    target = "p50 <= 2 ms, p99 <= 5 ms"
    baseline = Row("plain NATS request/reply, each next to a client order (baseline)", plain[warmup:])
    row = Row(
        "client API order round trip (SDK -> /client -> executor -> terminal -> back)",
        quiet[warmup:],
        baseline,
        target,
        errors=quiet_lost,
    )
    baseline_s = Row("plain NATS request/reply, next to client orders under prices (baseline)", plain_s[warmup:])
    row_s = Row(
        f"client API order round trip with {price_rate:.0f} prices/s streaming to the client",
        streaming[warmup:],
        baseline_s,
        target,
        errors=streaming_lost,
    )
    for r in (row, row_s):
        r.met = r.p50 <= 2.0 and r.p99 <= 5.0 and r.errors == 0
    return [baseline, row, baseline_s, row_s]


def rates(text: str) -> list[float]:
    """The rates of ``--knee-rates`` (comma-separated orders/s, rising)."""
    try:
        values = [float(r) for r in text.split(",")]
    except ValueError:
        raise ValueError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) <= 0 or values != sorted(values):
        raise ValueError("rates must be positive and rising")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-orders", type=int, default=1000, help="client API orders per variant (default 1000)")
    parser.add_argument("--client-rate", type=float, default=100.0, help="client API orders/s (default 100)")
    parser.add_argument(
        "--orders-tick-ms", type=int, default=5, help="price tick interval of the streaming terminal (default 5)"
    )
    parser.add_argument(
        "--knee-rates", default="200,500,1000,1500,2000", help="orders/s of the sustained steps (default 200,...,2000)"
    )
    parser.add_argument("--knee-seconds", type=float, default=2.0, help="length of each sustained step (default 2)")
    parser.add_argument("--knee-terminals", type=int, default=10, help="terminals of the sustained steps (default 10)")
    parser.add_argument("--cpu-orders", type=int, default=500, help="orders of the CPU-per-order run (default 500)")
