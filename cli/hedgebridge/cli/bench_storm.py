"""``hedgebridge bench``, the reconnect storm row: N simulated terminals from one address (loopback) connected
to a gateway with the default settings, the gateway restarted, and the time until every terminal is connected
again to the new one.

The gateway runs as its own process on a port of its own (its handshake limits as shipped: only the NATS URL,
the key, the port, its name and the log level are set), the terminals in simulator processes of up to
``PER_PROCESS`` each. The bench follows TERMINAL_STATUS on NATS: once all N are CONNECTED to the first
gateway it stops it (SIGTERM: every terminal is closed with 1001 and starts reconnecting), starts the second on
the same port and takes, for each terminal, the time from the moment the new gateway accepts connections to
its CONNECTED there. The row's samples are these times; "all back" is the largest, the target's measure.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.aio.msg import Msg

from hedgebridge.cli.bench_rows import Processes, Row
from hedgebridge.common import auth
from hedgebridge.common.servers import NatsServer, free_port, terminate
from hedgebridge.protocol import ProtocolError, TerminalStatus, subjects, unpack

PER_PROCESS = 500  # terminals per simulator process
TARGET_S = 3.0
FIRST_ID, SECOND_ID = "gw-storm-1", "gw-storm-2"


@dataclass
class _Connected:
    """When each account was reported CONNECTED, per gateway (the bench's clock)."""

    at: dict[str, dict[str, float]] = field(default_factory=lambda: {FIRST_ID: {}, SECOND_ID: {}})
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_status(self, msg: Msg) -> None:
        received = time.perf_counter()
        try:
            event = unpack(msg.data, TerminalStatus)
        except ProtocolError:  # not a status this bench reads
            return
        if event.status == "CONNECTED" and event.gateway_id in self.at:
            self.at[event.gateway_id].setdefault(event.account_id, received)
            self.changed.set()

    async def until(self, gateway_id: str, count: int, deadline: float) -> bool:
        while len(self.at[gateway_id]) < count:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return False
        return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


async def _wait_listening(port: int, timeout_s: float) -> float | None:
    """The bench's clock when ``port`` first accepts a connection (polled every 10 ms), None at the deadline."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if await asyncio.to_thread(_listening, port):
            return time.perf_counter()
        await asyncio.sleep(0.01)
    return None


async def measure(nats_url: str, secret: str, procs: Processes, terminals: int, timeout_s: float = 120.0) -> Row:
    """The reconnect storm row (``skipped`` says why when it could not be measured)."""
    name = f"reconnect storm: {terminals} terminals from one address, gateway restarted (default limits)"
    row = Row(name, [], target=f"all back <= {TARGET_S:g} s after the new gateway listens")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_")}
    env.update(
        HEDGEBRIDGE_NATS_URL=nats_url,
        HEDGEBRIDGE_JWT_SECRET=secret,
        HEDGEBRIDGE_GATEWAY_PORT=str(port),
        HEDGEBRIDGE_LOG_LEVEL="WARNING",
    )
    connected = _Connected()
    nc = await nats.connect(nats_url)
    try:
        await nc.subscribe(subjects.ALL_STATUS, cb=connected.on_status)
        await nc.flush()
        first = procs.start([sys.executable, "-m", "hedgebridge.gateway"], {**env, "HEDGEBRIDGE_GATEWAY_ID": FIRST_ID})
        if await _wait_listening(port, 60) is None:
            row.skipped = "the first gateway did not listen within 60 s"
            return row
        url = f"ws://127.0.0.1:{port}/ea"
        for k in range(math.ceil(terminals / PER_PROCESS)):
            count = min(PER_PROCESS, terminals - k * PER_PROCESS)
            procs.start(
                [
                    sys.executable, "-m", "hedgebridge.cli", "sim", "--accounts", str(count),
                    "--prefix", f"STORM-{k}-", "--url", url, "--secret", secret, "--tick-interval-ms", "0",
                    "--log-level", "ERROR",
                ],
                env,
            )  # fmt: skip
        if not await connected.until(FIRST_ID, terminals, time.perf_counter() + timeout_s):
            row.skipped = f"only {len(connected.at[FIRST_ID])} of {terminals} terminals connected before the restart"
            return row
        stopped = time.perf_counter()
        await asyncio.to_thread(terminate, first)
        procs.start([sys.executable, "-m", "hedgebridge.gateway"], {**env, "HEDGEBRIDGE_GATEWAY_ID": SECOND_ID})
        listening = await _wait_listening(port, 60)
        if listening is None:
            row.skipped = "the restarted gateway did not listen within 60 s"
            return row
        await connected.until(SECOND_ID, terminals, listening + timeout_s)
    finally:
        await nc.close()
    back = connected.at[SECOND_ID]
    row.samples = [(at - listening) * 1000 for at in back.values()]
    row.errors = terminals - len(back)
    if not row.samples:
        row.skipped = f"no terminal came back within {timeout_s:g} s"
        return row
    last_ms = max(row.samples)
    row.name += (
        f": {len(back)} of {terminals} back, the last {last_ms:.0f} ms after the new gateway listened"
        f" ({(listening - stopped) * 1000:.0f} ms from the stop to listening)"
    )
    row.met = row.errors == 0 and last_ms <= TARGET_S * 1000
    return row


async def alone(workdir: Path, procs: Processes, terminals: int) -> Row:
    """The row by itself (``bench --only storm``), on a NATS server of its own."""
    nats_server = NatsServer(workdir / "nats")
    nats_server.start()
    try:
        return await measure(nats_server.url, auth.new_secret(), procs, terminals)
    finally:
        procs.stop()
        nats_server.stop()
