"""``hedgebridge bench``: latencies of hedgebridge next to raw baselines measured in the same run.

Everything runs on this machine on free loopback ports: a nats-server and a valkey-server started here, the
gateway and the executor as their own processes, one simulated terminal with zero fill delay in its own
process (and, where it builds, the compiled EA in its own process with each transport: ``bench_ea``), a plain
``websockets`` echo server and a plain NATS responder as baselines. Figures are reported as ratios to the
baselines because shared machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import nats
from websockets.asyncio.client import ClientConnection, connect

from hedgebridge.cli import (
    bench_dll,
    bench_ea,
    bench_figures,
    bench_gateway,
    bench_obs,
    bench_orders,
    bench_storm,
    bench_table,
)
from hedgebridge.cli.bench_gateway_stack import ECHO_SERVER
from hedgebridge.cli.bench_rows import NATS_RESPONDER, Processes, Row
from hedgebridge.cli.bench_sync import measure_action_sync, measure_client_sync
from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, ServerError, ValkeyServer, free_port, wait_for_port
from hedgebridge.protocol import (
    ActionLeg,
    CloseOrder,
    Heartbeat,
    OpenOrder,
    Welcome,
    decode_frame,
    encode_frame,
    pack,
    subprotocol,
    utcnow,
)
from hedgebridge.sim.ea.launch import Transport

BENCH_ACCOUNT = "BENCH-1"
LOAD_ACCOUNTS = tuple(f"LOAD-{i}" for i in range(1, 5))


async def _paced(count: int, rate: float, call: Callable[[], Awaitable[float]]) -> list[float]:
    """Run ``call`` ``count`` times, one start every 1/rate s on an absolute schedule, one at a time."""
    samples: list[float] = []
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        samples.append(await call())
    return samples


async def _open_loop(
    count: int, rate: float, call: Callable[[int], Coroutine[Any, Any, float]]
) -> tuple[list[float], float]:
    """Start ``call`` ``count`` times at ``rate`` per second on an absolute schedule, without waiting for the
    previous ones (an open loop: a slow answer does not slow the arrivals). Returns the latencies and the
    achieved completion rate."""
    interval = 1.0 / rate
    start = time.perf_counter()
    tasks: list[asyncio.Task[float]] = []
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(call(i)))
    samples = list(await asyncio.gather(*tasks))
    return samples, count / (time.perf_counter() - start)


async def _round_trip(ws: ClientConnection, frame: str, seq: int, done: Callable[[str | bytes, int], bool]) -> float:
    started = time.perf_counter_ns()
    await ws.send(frame)
    while not done(await ws.recv(), seq):
        pass
    return (time.perf_counter_ns() - started) / 1e6


def _is_heartbeat_reply(data: str | bytes, seq: int) -> bool:
    message = decode_frame(data)
    return isinstance(message, Heartbeat) and message.reply and message.seq == seq


async def run(args: argparse.Namespace, workdir: Path, procs: Processes) -> bench_figures.Section:
    if args.only == "storm":
        return bench_figures.Section([await bench_storm.alone(workdir, procs, args.storm_terminals)], [])
    if args.gateway_only or args.only in ("ingest", "idle"):
        return await bench_gateway.run_alone(args, workdir, procs)
    library = await asyncio.to_thread(bench_dll.prepare)  # before any measurement: a build loads the machine
    ea_ready = await asyncio.to_thread(bench_ea.prepare)
    nats_server = NatsServer(workdir / "nats")
    cache = ValkeyServer(workdir / "cache")
    nats_server.start()
    cache.start()
    try:
        rows = await _measure(args, nats_server, cache, procs, library, ea_ready)
        procs.stop()  # the reconnect storm, the observability stacks and the order path's stack run alone
        rows.append(await _storm(args, nats_server, procs))
        procs.stop()
        rows += await bench_obs.measure(args, workdir, cache, procs, Row)
        procs.stop()
        rows += await bench_orders.measure(args, workdir, procs)
        procs.stop()
        if args.skip_gateway:
            return bench_figures.Section(rows, [])
        gateway = await bench_gateway.measure(args, nats_server, cache, procs)
        return bench_figures.Section(rows + gateway.rows, gateway.figures)
    finally:
        procs.stop()
        nats_server.stop()
        cache.stop()


async def _storm(args: argparse.Namespace, nats_server: NatsServer, procs: Processes) -> Row:
    return await bench_storm.measure(nats_server.url, auth.new_secret(), procs, args.storm_terminals)


async def _measure(
    args: argparse.Namespace,
    nats_server: NatsServer,
    cache: ValkeyServer,
    procs: Processes,
    library: Path | str,
    ea_ready: dict[Transport, str | None],
) -> list[Row]:
    secret = auth.new_secret()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    gateway_port = free_port()
    env.update(
        HEDGEBRIDGE_NATS_URL=nats_server.url,
        HEDGEBRIDGE_REDIS_URL=f"{cache.url}/0",
        HEDGEBRIDGE_JWT_SECRET=secret,
        HEDGEBRIDGE_GATEWAY_PORT=str(gateway_port),
        HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS="60000",
        HEDGEBRIDGE_GATEWAY_MESSAGE_RATE="0",  # the bench sends far more than a terminal would: no rate limits
        HEDGEBRIDGE_GATEWAY_IP_CONNECT_RATE="0",
        HEDGEBRIDGE_LOG_LEVEL="WARNING",
    )
    echo_port = free_port()
    procs.start([sys.executable, "-c", ECHO_SERVER, str(echo_port)])
    procs.start([sys.executable, "-m", "hedgebridge.gateway"], env)
    procs.start([sys.executable, "-m", "hedgebridge.executor"], env)
    procs.start([sys.executable, "-m", "hedgebridge.coordinator"], env)
    responder = procs.start([sys.executable, "-c", NATS_RESPONDER, nats_server.url])
    for port, what in ((echo_port, "the echo server"), (gateway_port, "the gateway")):
        if not await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30):
            raise RuntimeError(f"{what} did not listen")
    assert responder.stdout is not None
    await asyncio.to_thread(responder.stdout.readline)

    samples, warmup = args.samples, args.warmup
    token = auth.mint_token(secret, role="ea", subject="BENCH-0")
    async with (
        connect(f"ws://127.0.0.1:{echo_port}", compression=None, ping_interval=None) as echo_ws,
        connect(
            f"ws://127.0.0.1:{gateway_port}/ea",
            additional_headers={"Authorization": f"Bearer {token}"},
            subprotocols=[subprotocol()],  # type: ignore[list-item]
            compression=None,
            ping_interval=None,
        ) as gateway_ws,
    ):
        if not isinstance(decode_frame(await gateway_ws.recv()), Welcome):
            raise RuntimeError("the gateway did not send WELCOME")
        echo: list[float] = []
        heartbeats: list[float] = []
        for seq in range(warmup + samples):  # interleaved, so both see the same machine noise
            frame = encode_frame(Heartbeat(timestamp=utcnow(), seq=seq, account_id="BENCH-0")).decode()
            echo.append(await _round_trip(echo_ws, frame, seq, lambda _data, _seq: True))
            heartbeats.append(await _round_trip(gateway_ws, frame, seq, _is_heartbeat_reply))
    dll_rows = await _dll_rows(gateway_port, secret, library, samples, warmup)

    nc = await nats.connect(nats_server.url)
    try:
        body = b"x" * 200

        async def plain_request() -> float:
            started = time.perf_counter_ns()
            await nc.request("bench.echo", body, timeout=10)
            return (time.perf_counter_ns() - started) / 1e6

        plain = await _paced(warmup + args.orders, args.rate, plain_request)

        procs.start(
            [
                sys.executable, "-m", "hedgebridge.cli", "sim", "--account", BENCH_ACCOUNT,
                "--url", f"ws://127.0.0.1:{gateway_port}/ea", "--fill-latency-ms", "0", "--tick-interval-ms", "0",
                "--log-level", "WARNING",
            ],
            env,
        )  # fmt: skip
        await bench_ea.wait_ready(nc, BENCH_ACCOUNT, "the simulated terminal")
        orders, errors = await bench_ea.order_round_trips(nc, BENCH_ACCOUNT, warmup + args.orders, args.rate, _paced)
        nats_row = Row("plain NATS request/reply (baseline)", plain[warmup:])
        gateway_url = f"ws://127.0.0.1:{gateway_port}/ea"
        ea_rows = await bench_ea.rows(
            nc, gateway_url, env, procs, ea_ready, nats_row, args.orders, warmup, args.rate, _paced
        )

        # sustained load: an open loop at --load-rate over several terminals, next to plain NATS at that rate
        async def plain_at(_: int) -> float:
            return await plain_request()

        plain_load, plain_rate = await _open_loop(args.load_orders, args.load_rate, plain_at)
        for account in LOAD_ACCOUNTS:
            procs.start(
                [
                    sys.executable, "-m", "hedgebridge.cli", "sim", "--account", account,
                    "--url", f"ws://127.0.0.1:{gateway_port}/ea", "--fill-latency-ms", "0",
                    "--tick-interval-ms", "0", "--log-level", "WARNING",
                ],
                env,
            )  # fmt: skip
        for account in LOAD_ACCOUNTS:
            await bench_ea.wait_ready(nc, account, f"the simulated terminal {account}")
        load_errors = 0
        tickets: dict[str, list[str]] = {a: [] for a in LOAD_ACCOUNTS}

        async def load_order(i: int) -> float:
            nonlocal load_errors
            account = LOAD_ACCOUNTS[i % len(LOAD_ACCOUNTS)]
            held = tickets[account]
            if held:
                body = pack(CloseOrder(account_id=account, mt_ticket=held.pop()))
            else:
                body = pack(OpenOrder(account_id=account, symbol="EURUSD", side="BUY", volume=0.01))
            started = time.perf_counter_ns()
            result = await bench_ea.order_once(nc, body)
            elapsed = (time.perf_counter_ns() - started) / 1e6
            if result.status != "FILLED":
                load_errors += 1
            elif result.kind == "OPEN" and result.mt_ticket:
                held.append(result.mt_ticket)
            return elapsed

        load, load_rate = await _open_loop(args.load_orders, args.load_rate, load_order)

        # action sync: states of real hedge actions to client API subscribers; state fan-out over NATS
        admin = auth.mint_token(secret, role="admin", subject="bench")
        legs = [
            ActionLeg(account_id=LOAD_ACCOUNTS[0], symbol="EURUSD", side="BUY", volume=0.01),
            ActionLeg(account_id=LOAD_ACCOUNTS[1], symbol="EURUSD", side="SELL", volume=0.01),
        ]
        client_sync, client_missing = await measure_client_sync(
            f"ws://127.0.0.1:{gateway_port}/client", admin, nats_server.url, legs, args.subscribers, args.actions
        )
        fan_out = await measure_action_sync(nats_server.url, args.subscribers, args.actions * 4)
    finally:
        await nc.close()

    echo_row = Row("plain websockets echo (baseline)", echo[warmup:])
    hb_row = Row("gateway heartbeat round trip", heartbeats[warmup:], echo_row, "p99 <= 1.5x echo")
    hb_row.met = hb_row.p99 <= 1.5 * echo_row.p99
    order_row = Row(
        "order round trip, open/close (zero-fill sim)",
        orders[warmup:],
        nats_row,
        "p99 < 10 ms (design: processing < 10 ms)",
        errors=errors,
    )
    order_row.met = order_row.p99 < 10.0 and errors == 0
    plain_load_row = Row(f"plain NATS request/reply, open loop at {plain_rate:.0f}/s (baseline)", plain_load)
    load_row = Row(
        f"orders sustained at {load_rate:.0f}/s over {len(LOAD_ACCOUNTS)} terminals",
        load,
        plain_load_row,
        f">= {0.95 * args.load_rate:.0f}/s, none lost",
        errors=load_errors,
    )
    load_row.met = load_rate >= 0.95 * args.load_rate and load_errors == 0
    n = args.subscribers
    raw_row = Row(f"plain NATS publish to {n} subscribers (baseline)", fan_out.baseline)
    sync_row = Row(
        f"action state to {n} NATS subscribers (JetStream publish)",
        fan_out.measured,
        raw_row,
        "p99 < 20 ms",
        errors=fan_out.measured_missing,
    )
    sync_row.met = sync_row.p99 < 20 and fan_out.measured_missing == 0
    client_row = Row(
        f"action state to {n} client API subscribers (real actions)",
        client_sync,
        raw_row,
        "p99 < 20 ms",
        errors=client_missing,
    )
    client_row.met = client_row.p99 < 20 and client_missing == 0
    return [
        echo_row,
        hb_row,
        *dll_rows,
        nats_row,
        order_row,
        *ea_rows,
        plain_load_row,
        load_row,
        raw_row,
        sync_row,
        client_row,
    ]


async def _dll_rows(port: int, secret: str, library: Path | str, samples: int, warmup: int) -> list[Row]:
    """The WebSocket client library's heartbeat round trips next to a Python EA client's (bench_dll)."""
    baseline = Row("python websockets EA client heartbeat, own process (baseline)", [])
    row = Row("DLL (ctypes, Linux build) heartbeat round trip, own process", [], baseline)
    if isinstance(library, str):
        baseline.skipped = row.skipped = library
        return [baseline, row]
    dll_token, ws_token = (auth.mint_token(secret, role="ea", subject=f"BENCH-{k}") for k in ("DLL", "PY"))
    measured = await bench_dll.measure(f"ws://127.0.0.1:{port}/ea", dll_token, ws_token, library, samples, warmup)
    baseline.samples, row.samples = measured.websockets, measured.dll
    return [baseline, row]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=2000, help="heartbeat round trips (default 2000)")
    parser.add_argument("--orders", type=int, default=2000, help="order round trips (default 2000)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second for NATS/orders (default 200)")
    parser.add_argument("--load-orders", type=int, default=2500, help="orders of the sustained run (default 2500)")
    parser.add_argument("--load-rate", type=float, default=500.0, help="orders/s of the sustained run (default 500)")
    parser.add_argument("--subscribers", type=int, default=100, help="action-sync subscribers (default 100)")
    parser.add_argument("--actions", type=int, default=25, help="hedge entries and exits for action sync (default 25)")
    parser.add_argument("--warmup", type=int, default=200, help="samples discarded first (default 200)")
    parser.add_argument(
        "--storm-terminals", type=int, default=1000, help="terminals of the reconnect storm (default 1000)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--only",
        choices=("orders", "storm", "ingest", "idle"),
        help="measure only this part: orders (the order path's rows), storm (the reconnect storm row), "
        "ingest (the gateway's event ingest rows), idle (its idle terminal rows: --idle-terminals, --idle-window-s)",
    )
    bench_obs.add_arguments(parser)
    bench_orders.add_arguments(parser)
    bench_gateway.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if (
        min(args.samples, args.orders, args.load_orders, args.subscribers, args.actions, args.obs_orders) < 1
        or min(args.client_orders, args.knee_terminals, args.cpu_orders, args.storm_terminals) < 1
        or args.warmup < 0
        or min(args.rate, args.load_rate, args.client_rate, args.knee_seconds) <= 0
    ):
        print("hedgebridge bench: counts must be >= 1, --warmup >= 0, rates > 0", file=sys.stderr)
        return 2
    try:
        bench_orders.rates(args.knee_rates)
    except ValueError as exc:
        print(f"hedgebridge bench: --knee-rates: {exc}", file=sys.stderr)
        return 2
    procs = Processes()
    with tempfile.TemporaryDirectory(prefix="hedgebridge-bench-") as workdir:
        try:
            if args.only == "orders":
                section = bench_figures.Section(asyncio.run(bench_orders.measure(args, Path(workdir), procs)), [])
            else:
                section = asyncio.run(run(args, Path(workdir), procs))
        except (ServerError, RuntimeError, OSError) as exc:
            print(f"hedgebridge bench: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        finally:
            procs.stop()
    if args.json:
        print(json.dumps([row.as_json() for row in section.rows] + [f.as_json() for f in section.figures]))
    else:
        print(bench_table.header(args))
        if section.rows:  # the idle rows alone are figures only
            print("\n".join(bench_table.table(section.rows)))
        if section.figures:
            print()
            print("\n".join(bench_figures.table(section.figures)))
    return 0
