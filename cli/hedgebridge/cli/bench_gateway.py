"""Bench rows for the gateway's own costs, each next to a baseline measured in the same run:

- Idle terminals (fan-in): ``--idle-terminals`` connections (1,000 by default; 10,000 with
  ``--idle-terminals 1000,10000``) held by one gateway process, each sending a HEARTBEAT a second, against a
  plain ``websockets`` echo server holding as many connections with the same traffic. Memory per connection
  is the growth of the server's RSS from a warm start (20 connections) to all of them; CPU is the server's
  utime+stime (``/proc/<pid>/stat``) over ``--idle-window-s``, per 1,000 connections. Connections that
  could not be opened (with the reasons: HTTP refusals, connect errors) are each row's errors and note.
- Fan-out: action and order states (JetStream, as the coordinator and the executor publish them) to
  ``--fanout-subscribers`` client API connections subscribed to ``actions`` and ``orders``, against a plain
  ``websockets`` server that broadcasts the same frames from a core NATS subject (``websockets.broadcast``)
  to as many connections; both kinds are held by the same receiver processes, and the states of both are
  sent interleaved, so they see the same machine. Latency is publish → receipt on ``time.monotonic``.
- Event ingest (throughput profile): ``--ingest-terminals`` terminals writing ``--ingest-events`` events in
  all (prices, account and position updates) as fast as the gateway reads them, timed until the cache holds
  the last event of every terminal (gateway → NATS → executor → cache), against a raw nats-py publish of the
  same events. CPU per event of the gateway and of the executor comes from ``/proc``.

The load processes, the plain servers and the gateway processes are ``bench_gateway_stack``'s; the server's
RLIMIT_NOFILE soft limit is raised to the hard limit first (children inherit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import redis.asyncio as aioredis

from hedgebridge.cli.bench_figures import Figure, Section, cpu_seconds, rss_bytes
from hedgebridge.cli.bench_gateway_stack import (
    BROADCAST_SERVER,
    ECHO_SERVER,
    Stack,
    describe_opening,
    loads,
    plain_server,
    split,
    stop_pid,
)
from hedgebridge.cli.bench_rows import Processes, Row
from hedgebridge.cli.bench_wsclient import raise_fd_limit
from hedgebridge.cli.bench_wsload import end_symbol
from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, ValkeyServer
from hedgebridge.protocol import (
    ActionState,
    Heartbeat,
    OrderResult,
    encode_frame,
    pack,
    subjects,
    subprotocol,
    utcnow,
)

WARM = 20  # connections opened before the memory baseline is read
PER_LOAD_PROCESS = 2500
FANOUT_RECEIVERS = 4
FANOUT_MARKER = "fanout-"
PLAIN_OFFSET = 1_000_000  # the baseline's message numbers, so one marker serves both
INGEST_DB = 3

# --- idle terminals ----------------------------------------------------------------------------------------------


@dataclass
class Held:
    per_connection: float  # bytes
    cpu_per_1000: float  # share of a core
    sent: int
    received: int
    closed: int
    opened: int  # connections held (the rest failed to open: ``opening`` says why)
    opening: str  # what opening them came to (``describe_opening``)
    failed: int


async def _hold(pid: int, url: str, headers: list[dict[str, str]], window_s: float) -> Held:
    heartbeat = encode_frame(Heartbeat(timestamp=utcnow(), seq=1)).decode()

    def spec(part: list[dict[str, str]]) -> dict[str, Any]:
        return {"url": url, "headers": part, "frame": heartbeat, "interval_s": 1.0}

    async with loads("idle", [spec(headers[:WARM])]) as warm:
        await asyncio.sleep(1.0)
        before = rss_bytes(pid)
        rest = headers[WARM:]
        async with loads("idle", [spec(p) for p in split(rest, math.ceil(len(rest) / PER_LOAD_PROCESS))]) as held:
            await asyncio.sleep(2.0)  # every connection beat at least once: its buffers exist
            cpu, started = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(window_s)
            used = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
            after = rss_bytes(pid)
            results = [await load.finish() for load in held]
        grown = sum(r["opening"]["opened"] for r in results)  # the connections the growth is spread over
        results += [await load.finish() for load in warm]
    openings = [r["opening"] for r in results]
    opened = sum(o["opened"] for o in openings)
    return Held(
        per_connection=(after - before) / max(grown, 1),
        cpu_per_1000=used / (max(opened, 1) / 1000),
        sent=sum(r["sent"] for r in results),
        received=sum(r["received"] for r in results),
        closed=sum(r["closed"] for r in results),
        opened=opened,
        opening=describe_opening(openings),
        failed=sum(o["failed"] for o in openings),
    )


async def measure_idle(
    nats_server: NatsServer, cache: ValkeyServer, procs: Processes, n: int, window_s: float
) -> list[Figure]:
    stack = Stack(nats_server, cache, procs, 1)
    headers = [stack.ea_headers(f"IDLE-{i}") for i in range(n)]
    pid, port = await plain_server(procs, ECHO_SERVER)
    try:  # the same handshake (a token, the subprotocol offered) as the terminals': the same headers are kept
        plain = await _hold(pid, f"ws://127.0.0.1:{port}/", headers, window_s)
    finally:
        stop_pid(procs, pid)
    pid = await stack.gateway()
    try:
        gateway = await _hold(pid, f"{stack.url}/ea", headers, window_s)
    finally:
        stop_pid(procs, pid)
    mem_base = Figure(
        f"plain websockets, {n:,} connections: memory per connection (baseline)",
        plain.per_connection / 1024,
        "KB",
        errors=plain.failed,
        note=f"connections: {plain.opening}",
    )
    errors = gateway.closed + gateway.failed  # a connection closed while held, or never opened
    mem = Figure(
        f"gateway, {n:,} idle terminals: memory per connection",
        gateway.per_connection / 1024,
        "KB",
        mem_base,
        "<= 1.3x plain websockets",
        errors=errors,
        note=f"connections: {gateway.opening}",
    )
    complete = errors == 0 and plain.failed == 0
    mem.met = gateway.per_connection <= 1.3 * plain.per_connection and complete
    cpu_base = Figure(
        f"plain websockets, {n:,} connections, heartbeat 1 s: CPU per 1,000 (baseline)",
        plain.cpu_per_1000 * 100,
        "% core",
        errors=plain.failed,
    )
    unanswered = max(gateway.sent - gateway.received, 0)
    cpu = Figure(
        f"gateway, {n:,} idle terminals, heartbeat 1 s: CPU per 1,000 terminals",
        gateway.cpu_per_1000 * 100,
        "% core",
        cpu_base,
        "10,000 within one core (<= 10 % per 1,000)",
        errors=errors,
        note=f"{gateway.sent:,} heartbeats, {unanswered:,} unanswered at the end; {gateway.closed:,} closed while held",
    )
    cpu.met = gateway.cpu_per_1000 <= 0.10 and complete
    return [mem_base, mem, cpu_base, cpu]


# --- fan-out -----------------------------------------------------------------------------------------------------


def _fanout_messages(k: int) -> tuple[str, bytes]:
    """Message ``k`` of the fan-out: an action state (even) or an order result (odd), with its subject."""
    action_id = f"{FANOUT_MARKER}{k}"
    if k % 2 == 0:
        state = ActionState(action_id=action_id, kind="HEDGE_ENTRY", state="RUNNING", seq=1, timestamp=utcnow())
        return subjects.action(action_id), pack(state)
    result = OrderResult(status="FILLED", kind="OPEN", account_id="FAN-1", action_id=action_id, mt_ticket=str(k))
    return subjects.result("FAN-1"), pack(result)


async def measure_fanout(
    nats_server: NatsServer, cache: ValkeyServer, procs: Processes, counts: list[int], messages: int
) -> tuple[list[Row], list[Figure]]:
    stack = Stack(nats_server, cache, procs, 1)
    gateway_pid = await stack.gateway()
    plain_subject = f"{subjects.PREFIX}.bench.fanout"
    plain_pid, plain_port = await plain_server(procs, BROADCAST_SERVER, nats_server.url, plain_subject)
    admin = auth.mint_token(stack.secret, role="admin", subject="bench-fanout")
    client_headers = {"Authorization": f"Bearer {admin}", "Sec-WebSocket-Protocol": subprotocol()}
    subscribe = json.dumps({"type": "SUBSCRIBE", "requestId": "s", "topics": ["actions", "orders"]})
    heartbeat = encode_frame(Heartbeat(timestamp=utcnow())).decode()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    rows: list[Row] = []
    figures: list[Figure] = []
    try:
        for n in counts:
            specs = [
                {
                    "marker": FANOUT_MARKER,
                    "frame": heartbeat,
                    "groups": [
                        {
                            "url": f"{stack.url}/client",
                            "headers": [client_headers] * len(part),
                            "subscribe": subscribe,
                            "answer": '"SUBSCRIBED"',
                        },
                        {"url": f"ws://127.0.0.1:{plain_port}/", "headers": [{}] * len(part)},
                    ],
                }
                for part in split(list(range(n)), FANOUT_RECEIVERS)
            ]
            interval_s = 0.05 if n <= 100 else 0.15
            sent: dict[int, float] = {}
            async with loads("receive", specs) as receivers:
                cpu_gw, cpu_plain = cpu_seconds(gateway_pid), cpu_seconds(plain_pid)
                for k in range(messages):
                    subject, body = _fanout_messages(k)
                    sent[k] = time.monotonic()
                    await js.publish(subject, body)
                    await asyncio.sleep(interval_s / 2)
                    frame = encode_frame(_fanout_state(k + PLAIN_OFFSET))
                    sent[k + PLAIN_OFFSET] = time.monotonic()
                    await nc.publish(plain_subject, frame)
                    await nc.flush()
                    await asyncio.sleep(interval_s / 2)
                await asyncio.sleep(2.0)
                cpu_gw, cpu_plain = cpu_seconds(gateway_pid) - cpu_gw, cpu_seconds(plain_pid) - cpu_plain
                seen = [pair for load in receivers for pair in await load.finish()]
            gateway_ms = [(t - sent[k]) * 1000 for k, t in seen if k < PLAIN_OFFSET and k in sent]
            plain_ms = [(t - sent[k]) * 1000 for k, t in seen if k >= PLAIN_OFFSET and k in sent]
            goal = 10.0 if n <= 100 else 50.0
            base = Row(f"plain websockets broadcast to {n:,} connections, from core NATS (baseline)", plain_ms)
            row = Row(
                f"action/order state to {n:,} client API subscribers (JetStream → gateway)",
                gateway_ms,
                base,
                f"p99 < {goal:g} ms",
                errors=n * messages - len(gateway_ms),
            )
            if not gateway_ms or not plain_ms:
                raise RuntimeError("no fan-out message reached a subscriber")
            row.met = row.p99 < goal and row.errors == 0
            rows += [base, row]
            plain_cpu = Figure(
                f"plain websockets broadcast to {n:,}: CPU per frame delivered (baseline)",
                cpu_plain / len(plain_ms) * 1e6,
                "µs",
            )
            figures += [
                plain_cpu,
                Figure(
                    f"gateway fan-out to {n:,} client API subscribers: CPU per frame delivered",
                    cpu_gw / len(gateway_ms) * 1e6,
                    "µs",
                    plain_cpu,
                    note="JetStream consumer, decode, one encode, per-subscriber rules, one write per subscriber",
                ),
            ]
    finally:
        await nc.close()
        stop_pid(procs, plain_pid)
        stop_pid(procs, gateway_pid)
    return rows, figures


def _fanout_state(k: int) -> ActionState:
    return ActionState(action_id=f"{FANOUT_MARKER}{k}", kind="HEDGE_ENTRY", state="RUNNING", seq=1, timestamp=utcnow())


# --- event ingest ------------------------------------------------------------------------------------------------


async def measure_ingest(
    nats_server: NatsServer, cache: ValkeyServer, procs: Processes, terminals: int, events: int
) -> list[Figure]:
    per = max(2, events // terminals)
    accounts = [f"INGEST-{i}" for i in range(terminals)]
    total = per * terminals
    async with loads(
        "publish", [{"nats_url": nats_server.url, "subject": f"{subjects.PREFIX}.bench.ingest", "accounts": accounts,
                     "count": per}]
    ) as publisher:  # fmt: skip
        await publisher[0].say("go")
        raw = await publisher[0].finish()
    r = aioredis.from_url(f"{cache.url}/{INGEST_DB}", decode_responses=True)
    await r.flushdb()
    stack = Stack(nats_server, cache, procs, INGEST_DB, HEDGEBRIDGE_PROFILE="throughput")
    gateway_pid = await stack.gateway()
    executor_pid = stack.executor()
    try:
        deadline = time.monotonic() + 30
        while not await r.exists("hb:epoch"):  # the executor marks the cache once it is subscribed
            if time.monotonic() > deadline:
                raise RuntimeError("the executor did not start")
            await asyncio.sleep(0.05)
        spec = {"url": f"{stack.url}/ea", "headers": [stack.ea_headers(a) for a in accounts], "accounts": accounts,
                "count": per}  # fmt: skip
        async with loads("blast", [spec]) as blaster:
            cpu_gw, cpu_ex = cpu_seconds(gateway_pid), cpu_seconds(executor_pid)
            started = time.monotonic()
            await blaster[0].say("go")
            keys = [f"hb:price:{end_symbol(a)}" for a in accounts]
            deadline = started + 300
            while await r.exists(*keys) < len(keys):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cache did not receive the last events within 300 s")
                await asyncio.sleep(0.005)
            elapsed = time.monotonic() - started
            cpu_gw, cpu_ex = cpu_seconds(gateway_pid) - cpu_gw, cpu_seconds(executor_pid) - cpu_ex
            written = float((await blaster[0].line()).split()[1])
            closed = (await blaster[0].finish())["closed"]
    finally:
        await r.aclose()
        stop_pid(procs, executor_pid)
        stop_pid(procs, gateway_pid)
    base = Figure(
        f"raw nats-py publish of the same {raw['events']:,} events (baseline)",
        raw["events"] / raw["seconds"],
        "events/s",
        note=f"{raw['cpu'] / raw['events'] * 1e6:.1f} µs CPU per event",
    )
    rate = total / elapsed
    row = Figure(
        f"event ingest, {terminals} terminals → gateway → NATS → executor → cache (throughput profile)",
        rate,
        "events/s",
        base,
        ">= 50,000 events/s",
        errors=closed,
        note=(
            f"{total:,} events; terminals wrote them in {written:.2f} s; CPU per event: gateway "
            f"{cpu_gw / total * 1e6:.1f} µs, executor {cpu_ex / total * 1e6:.1f} µs"
        ),
    )
    row.met = rate >= 50_000 and closed == 0
    capacity = Figure(
        "event ingest per second of gateway CPU (what one gateway process on a core of its own takes)",
        total / cpu_gw if cpu_gw else 0.0,
        "events/s",
        Figure(
            "raw nats-py publish per second of CPU (baseline)",
            raw["events"] / raw["cpu"] if raw["cpu"] else 0.0,
            "events/s",
        ),
        ">= 50,000 events/s",
        note="the wall-clock row above is bound by the machine's other load when its cores are shared",
    )
    capacity.met = capacity.value >= 50_000 and closed == 0
    return [base, row, capacity]


# --- the section -------------------------------------------------------------------------------------------------


def _counts(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of counts: {text!r}") from None
    if not values or min(values) < WARM + 1:
        raise argparse.ArgumentTypeError(f"counts must be above {WARM}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("gateway rows (bench_gateway)")
    group.add_argument("--gateway-only", action="store_true", help="run only the gateway rows")
    group.add_argument("--skip-gateway", action="store_true", help="leave the gateway rows out")
    group.add_argument(
        "--idle-terminals", type=_counts, default=[1000], help="idle terminal counts (default 1000; e.g. 1000,10000)"
    )
    group.add_argument("--idle-window-s", type=float, default=5.0, help="CPU window of the idle rows (default 5)")
    group.add_argument(
        "--fanout-subscribers", type=_counts, default=[100, 1000], help="fan-out subscriber counts (default 100,1000)"
    )
    group.add_argument("--fanout-messages", type=int, default=60, help="states per fan-out row (default 60)")
    group.add_argument("--ingest-events", type=int, default=100_000, help="events of the ingest row (default 100000)")
    group.add_argument("--ingest-terminals", type=int, default=10, help="terminals of the ingest row (default 10)")


async def measure(args: argparse.Namespace, nats_server: NatsServer, cache: ValkeyServer, procs: Processes) -> Section:
    if args.only == "ingest":  # ``bench --only ingest``: the ingest rows by themselves
        return Section([], await measure_ingest(nats_server, cache, procs, args.ingest_terminals, args.ingest_events))
    idle_only = args.only == "idle"  # ``bench --only idle``: the idle terminal rows by themselves
    limit = raise_fd_limit()
    needed = max(max(args.idle_terminals) + 200, 0 if idle_only else max(args.fanout_subscribers) * 2 + 200)
    if limit < needed:
        raise RuntimeError(f"RLIMIT_NOFILE is {limit}; the gateway rows need {needed} (raise the hard limit)")
    figures: list[Figure] = []
    for n in args.idle_terminals:
        figures += await measure_idle(nats_server, cache, procs, n, args.idle_window_s)
    if idle_only:
        return Section([], figures)
    rows, fanned = await measure_fanout(nats_server, cache, procs, args.fanout_subscribers, args.fanout_messages)
    figures += fanned
    figures += await measure_ingest(nats_server, cache, procs, args.ingest_terminals, args.ingest_events)
    return Section(rows, figures)


async def run_alone(args: argparse.Namespace, workdir: Path, procs: Processes) -> Section:
    """Only the gateway rows (``--only ingest``, ``--only idle``: only those rows), on servers of their own."""
    nats_server = NatsServer(workdir / "nats")
    cache = ValkeyServer(workdir / "cache")
    nats_server.start()
    cache.start()
    try:
        return await measure(args, nats_server, cache, procs)
    finally:
        procs.stop()
        nats_server.stop()
        cache.stop()
