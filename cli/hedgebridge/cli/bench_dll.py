"""The bench's DLL rows: HEARTBEAT round trips through the WebSocket client library (``dll/``, the Linux build
loaded with ctypes) against the bench's gateway, next to the same round trips by a plain Python ``websockets``
client speaking the EA protocol (the way the Python simulator talks).

Each client runs in its own process, so neither competes with the bench (or the other) for a GIL. Both connect
once as their own account, wait for WELCOME, then take turns: the bench asks one for a round of heartbeats,
then the other, until both have their samples, so both see the same machine noise. The library is polled as
the EA polls it (``ReceiveMessage`` until the reply is there), yielding the CPU between polls
(``sched_yield``) so that the library's own I/O thread and the gateway can run on a small machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DLL_DIR = Path(__file__).resolve().parents[3] / "dll"
LIBRARY = DLL_DIR / "build" / "linux" / "libhedgebridge_ws.so"
ROUNDS = 10

# Both clients: argv = url token [library]; stdin: one count per line; stdout: "ready", then one JSON list of
# round trips (ms) per count. Frames other than the awaited reply are skipped; a gateway's own HEARTBEAT ping
# is answered at once, as the EA does.
_DLL_CLIENT = r"""
import ctypes, json, os, sys, time
url, token, path = sys.argv[1], sys.argv[2], sys.argv[3]
lib = ctypes.CDLL(path)
lib.ConnectWebSocket.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
lib.WsSend.argtypes = [ctypes.c_char_p]
lib.ReceiveMessage.argtypes = [ctypes.c_void_p, ctypes.c_int]
buffer = ctypes.create_string_buffer(1 << 20)
def receive(deadline):
    while True:
        n = lib.ReceiveMessage(buffer, len(buffer))
        if n > 0:
            return json.loads(buffer.raw[:n])
        if time.perf_counter() > deadline:
            raise SystemExit("no frame from the gateway in time (error %d)" % lib.WsGetLastError())
        os.sched_yield()
if lib.ConnectWebSocket(url.encode(), token.encode()) != 1:
    raise SystemExit("ConnectWebSocket refused its arguments")
while receive(time.perf_counter() + 10).get("type") != "WELCOME":
    pass
print("ready", flush=True)
seq = 0
for line in sys.stdin:
    samples = []
    for _ in range(int(line)):
        seq += 1
        frame = json.dumps({"type": "HEARTBEAT", "timestamp": "2026-01-01T00:00:00Z", "seq": seq}).encode()
        start = time.perf_counter()
        if lib.WsSend(frame) != 1:
            raise SystemExit("WsSend failed (error %d)" % lib.WsGetLastError())
        while True:
            reply = receive(start + 10)
            if reply.get("type") == "HEARTBEAT" and reply.get("reply") and reply.get("seq") == seq:
                break
            if reply.get("type") == "HEARTBEAT" and not reply.get("reply"):
                lib.WsSend(json.dumps({**reply, "reply": True}).encode())
        samples.append((time.perf_counter() - start) * 1000)
    print(json.dumps(samples), flush=True)
lib.DisconnectWebSocket()
"""

_WEBSOCKETS_CLIENT = r"""
import asyncio, json, sys, time
from websockets.asyncio.client import connect
async def main(url, token):
    async with connect(url, additional_headers={"Authorization": "Bearer " + token},
                       subprotocols=["hedgebridge.v1"], compression=None, ping_interval=None) as ws:
        while json.loads(await ws.recv()).get("type") != "WELCOME":
            pass
        print("ready", flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        seq = 0
        while line := await reader.readline():
            samples = []
            for _ in range(int(line)):
                seq += 1
                frame = json.dumps({"type": "HEARTBEAT", "timestamp": "2026-01-01T00:00:00Z", "seq": seq})
                start = time.perf_counter()
                await ws.send(frame)
                while True:
                    reply = json.loads(await ws.recv())
                    if reply.get("type") == "HEARTBEAT" and reply.get("reply") and reply.get("seq") == seq:
                        break
                    if reply.get("type") == "HEARTBEAT" and not reply.get("reply"):
                        await ws.send(json.dumps({**reply, "reply": True}))
                samples.append((time.perf_counter() - start) * 1000)
            print(json.dumps(samples), flush=True)
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@dataclass(frozen=True, slots=True)
class DllRounds:
    dll: list[float]
    websockets: list[float]


def prepare() -> Path | str:
    """The Linux library, built with ``make -C dll linux`` when needed; a reason (str) when it cannot be."""
    if not (DLL_DIR / "Makefile").is_file():
        return f"no dll/ sources next to this installation ({DLL_DIR}); run the bench from a checkout"
    missing = [tool for tool in ("make", "g++") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install g++ make libboost-dev libssl-dev)"
    build = subprocess.run(
        ["nice", "-n", "10", "make", "-C", str(DLL_DIR), "linux"], capture_output=True, text=True, check=False
    )
    if build.returncode != 0 or not LIBRARY.is_file():
        detail = (build.stderr.strip().splitlines() or build.stdout.strip().splitlines() or ["no output"])[-1]
        return f"make -C dll linux failed: {detail[:160]}"
    return LIBRARY


class _Client:
    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name

    @classmethod
    async def start(cls, name: str, script: str, *args: str) -> _Client:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        client = cls(process, name)
        if await client._line() != "ready":
            raise RuntimeError(f"the {name} client did not connect")
        return client

    async def _line(self) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if not line:
            assert self.process.stderr is not None
            error = (await self.process.stderr.read()).decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"the {self.name} client stopped: {error[-1] if error else 'no message'}")
        return line.decode().strip()

    async def round(self, count: int) -> list[float]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{count}\n".encode())
        await self.process.stdin.drain()
        samples: list[float] = json.loads(await self._line())
        return samples

    async def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def measure(url: str, dll_token: str, ws_token: str, library: Path, samples: int, warmup: int) -> DllRounds:
    """``warmup`` + ``samples`` round trips per client, in alternating rounds; the warm-up ones are dropped."""
    clients: list[_Client] = []
    try:
        dll = await _Client.start("ctypes/DLL", _DLL_CLIENT, url, dll_token, str(library))
        clients.append(dll)
        plain = await _Client.start("websockets", _WEBSOCKETS_CLIENT, url, ws_token)
        clients.append(plain)
        await dll.round(warmup)
        await plain.round(warmup)
        measured = DllRounds([], [])
        per_round = max(1, -(-samples // ROUNDS))
        while len(measured.dll) < samples:
            count = min(per_round, samples - len(measured.dll))
            measured.dll.extend(await dll.round(count))
            measured.websockets.extend(await plain.round(count))
        return measured
    finally:
        for client in clients:
            await client.stop()
