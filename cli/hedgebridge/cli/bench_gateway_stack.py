"""What the gateway bench's rows run on: the load processes (``bench_wsload``) and what opening their
connections came to, the plain ``websockets`` servers of the baselines, and the gateway (and executor)
processes of one measurement (``Stack``).

A load process reports its progress while it opens its connections; ``Load.start`` waits as long as it
makes progress and fails with the reasons (HTTP refusals by status and text, connect errors by errno) when
it stops making any for ``STALL_S`` or ends, instead of timing out blind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from hedgebridge.cli.bench_rows import Processes
from hedgebridge.common import auth, loop
from hedgebridge.common.servers import NatsServer, ValkeyServer, free_port, terminate, wait_for_port
from hedgebridge.protocol import subprotocol

STALL_S = 90.0  # a load process that opens no connection for this long has stopped making progress

ECHO_SERVER = """
import asyncio, resource, sys
from websockets.asyncio.server import serve
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1]), compression=None, ping_interval=None):
        await asyncio.Future()
asyncio.run(main())
"""

BROADCAST_SERVER = """
import asyncio, sys, nats
from websockets.asyncio.server import broadcast, serve
async def main():
    async def hold(ws):
        async for _ in ws:
            pass
    async with serve(hold, "127.0.0.1", int(sys.argv[2]), compression=None, ping_interval=None) as server:
        nc = await nats.connect(sys.argv[1])
        async def forward(msg):
            broadcast(server.connections, msg.data.decode())
        await nc.subscribe(sys.argv[3], cb=forward)
        await nc.flush()
        await asyncio.Future()
asyncio.run(main())
"""


class LoadFailed(RuntimeError):
    """A load process could not open its connections (the message says how far it got and why)."""


def describe_opening(openings: list[dict[str, Any]]) -> str:
    """What opening the connections came to, over load processes (their ``Opening`` tallies): how many were
    opened, how many failed and their reasons, and the refused attempts by reason."""
    total = sum(o.get("total", 0) for o in openings)
    opened = sum(o.get("opened", 0) for o in openings)
    failed = sum(o.get("failed", 0) for o in openings)
    refused: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    for o in openings:
        refused.update(o.get("refused", {}))
        failures.update(o.get("failures", {}))
    seconds = max((o.get("seconds", 0.0) for o in openings), default=0.0)
    text = f"{opened:,} of {total:,} opened (the slowest load process took {seconds:.0f} s)"
    if failed:
        text += f", {failed:,} failed (" + "; ".join(f"{r}: {n:,}" for r, n in failures.most_common()) + ")"
    if refused:
        text += ", attempts refused and retried: " + "; ".join(f"{r}: {n:,}" for r, n in refused.most_common())
    return text


class Load:
    """One ``bench_wsload`` process: started with its spec, ready once it says so, its JSON result at the end."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.opening: dict[str, Any] = {}  # its last progress line (``bench_wsclient.Opening``)

    @classmethod
    async def start(cls, mode: str, spec: dict[str, Any], stall_s: float = STALL_S) -> Load:
        """Once every connection of ``spec`` is open or given up; a process that ends first, or opens none
        for ``stall_s``, is a ``LoadFailed`` naming how far it got and why its connections were refused."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hedgebridge.cli.bench_wsload", mode,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        load = cls(process)
        try:
            await load._until_ready(spec, stall_s)
        except BaseException:
            await load.kill()
            raise
        return load

    async def _until_ready(self, spec: dict[str, Any], stall_s: float) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(spec).encode() + b"\n")
        await self.process.stdin.drain()
        done, moved_at = -1, time.monotonic()
        while True:
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), stall_s)
            except TimeoutError:
                line = b"progress {}"  # a silent process: its last progress stands
            text = line.decode().strip()
            if text == "ready":
                return
            if not text:
                raise LoadFailed(f"a load process ended before its connections were open ({self.opening_text()})")
            if text.startswith("progress "):
                self.opening = json.loads(text.removeprefix("progress ")) or self.opening
                now = time.monotonic()
                count = self.opening.get("opened", 0) + self.opening.get("failed", 0)
                if count > done:
                    done, moved_at = count, now
                elif now - moved_at > stall_s:
                    raise LoadFailed(f"no connection opened for {stall_s:.0f} s ({self.opening_text()})")

    def opening_text(self) -> str:
        return describe_opening([self.opening]) if self.opening else "it reported nothing"

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def line(self, timeout_s: float = 300) -> str:
        assert self.process.stdout is not None
        return (await asyncio.wait_for(self.process.stdout.readline(), timeout_s)).decode().strip()

    async def finish(self, timeout_s: float = 120) -> Any:
        out, _ = await asyncio.wait_for(self.process.communicate(b""), timeout_s)
        return json.loads(out.decode().strip().splitlines()[-1])

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@contextlib.asynccontextmanager
async def loads(mode: str, specs: list[dict[str, Any]]) -> AsyncIterator[list[Load]]:
    started: list[Load] = []
    try:
        for spec in specs:
            started.append(await Load.start(mode, spec))
        yield started
    finally:
        for load in started:
            await load.kill()


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


class Stack:
    """The processes of one measurement: a gateway (and an executor when asked) on the run's servers."""

    def __init__(self, nats_server: NatsServer, cache: ValkeyServer, procs: Processes, db: int, **extra: str) -> None:
        self.secret = auth.new_secret()
        self.port = free_port()
        self.nats_url = nats_server.url
        self.procs = procs
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGEBRIDGE_") or k == loop.ENV}
        env.update(
            HEDGEBRIDGE_NATS_URL=nats_server.url,
            HEDGEBRIDGE_REDIS_URL=f"{cache.url}/{db}",
            HEDGEBRIDGE_JWT_SECRET=self.secret,
            HEDGEBRIDGE_GATEWAY_PORT=str(self.port),
            HEDGEBRIDGE_GATEWAY_HEARTBEAT_TIMEOUT_MS="60000",
            HEDGEBRIDGE_GATEWAY_MESSAGE_RATE="0",
            HEDGEBRIDGE_GATEWAY_IP_CONNECT_RATE="0",
            HEDGEBRIDGE_LOG_LEVEL="WARNING",
            **extra,
        )
        self.env = env

    def _start(self, module: str) -> int:
        """A service process whose output is dropped (a pipe nobody reads would stall it once full)."""
        process = subprocess.Popen(
            [sys.executable, "-m", module], env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.children.append(process)
        return process.pid

    async def gateway(self) -> int:
        pid = self._start("hedgebridge.gateway")
        if not await asyncio.to_thread(wait_for_port, "127.0.0.1", self.port, 30):
            raise RuntimeError("the gateway did not listen")
        return pid

    def executor(self) -> int:
        return self._start("hedgebridge.executor")

    def ea_headers(self, account: str) -> dict[str, str]:
        token = auth.mint_token(self.secret, role="ea", subject=account)
        return {"Authorization": f"Bearer {token}", "Sec-WebSocket-Protocol": subprotocol()}

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


async def plain_server(procs: Processes, script: str, *argv: str) -> tuple[int, int]:
    port = free_port()
    pid = procs.start([sys.executable, "-c", script, *argv[:1], str(port), *argv[1:]]).pid
    if not await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 30):
        raise RuntimeError("a plain websockets server did not listen")
    return pid, port


def stop_pid(procs: Processes, pid: int) -> None:
    for child in procs.children:
        if child.pid == pid:
            terminate(child)
