"""Load for the gateway bench (``bench_gateway``): many WebSocket client connections from one process.

The connections are raw asyncio protocols (the handshake, masked text frames with a zero mask key, a
minimal frame parser that answers Pings), so one load process can hold thousands of them with little CPU:
what is measured is the server's cost, not the load's. Run as ``python -m hedgebridge.cli.bench_wsload MODE
JSON``; the process prints ``ready`` once every connection is open, then works until stdin closes, then
prints one JSON line of what it saw.

- ``idle``: every connection sends one HEARTBEAT a second (spread evenly over the second by one timer for
  all of them) and counts the frames it receives.
- ``receive``: every connection (a client API subscriber when ``subscribe`` is given) records the receipt
  time (``time.monotonic``, one clock for every process of the machine) of each frame carrying a marker
  ``<marker><number>``; the result is ``[[number, time], ...]``.
- ``blast``: after a ``go`` line on stdin, every connection writes its frames as fast as the server reads
  them (TCP back-pressure); prints ``sent <seconds>`` when all of them are written.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import nats

from hedgebridge.protocol import (
    AccountUpdate,
    Message,
    Position,
    PositionUpdate,
    PriceTick,
    encode_frame,
    pack,
    utcnow,
)

_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def frame(payload: bytes, opcode: int = _OP_TEXT) -> bytes:
    """One final client frame, masked with the zero key (RFC 6455 allows any key; zero leaves the payload)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


class RawClient(asyncio.Protocol):
    """One WebSocket client connection; ``on_frame`` gets every text or binary payload."""

    def __init__(self, host: str, path: str, headers: dict[str, str], on_frame: Callable[[bytes], None]) -> None:
        self._request = self._handshake(host, path, headers)
        self._on_frame = on_frame
        self._buffer = bytearray()
        self._upgraded = False
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()

    @staticmethod
    def _handshake(host: str, path: str, headers: dict[str, str]) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._can_write.set()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed before the handshake"))

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def drained(self) -> None:
        await self._can_write.wait()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:end]).split(b"\r\n", 1)[0]
            del buffer[: end + 4]
            if b" 101 " not in status:
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self._upgraded = True
            if not self.opened.done():
                self.opened.set_result(None)
        while len(buffer) >= 2:
            opcode, n, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if n == 126:
                if len(buffer) < 4:
                    return
                n, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif n == 127:
                if len(buffer) < 10:
                    return
                n, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + n:
                return
            payload = bytes(buffer[offset : offset + n])
            del buffer[: offset + n]
            if opcode == _OP_PING:
                self.send(frame(payload, _OP_PONG))
            elif opcode == _OP_CLOSE:
                self.send(frame(payload[:2], _OP_CLOSE))
                assert self.transport is not None
                self.transport.close()
            elif opcode != _OP_PONG:
                self._on_frame(payload)


async def open_clients(
    url: str, headers: list[dict[str, str]], on_frame: Callable[[int, bytes], None], concurrency: int = 16
) -> list[RawClient]:
    """One connection per entry of ``headers``, ``concurrency`` handshakes at a time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    clients: list[RawClient | None] = [None] * len(headers)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            for attempt in range(5):
                client = RawClient(f"{host}:{port}", parts.path or "/", headers[i], lambda data: on_frame(i, data))
                try:
                    await loop.create_connection(lambda c=client: c, host, port)  # type: ignore[misc]
                    await asyncio.wait_for(asyncio.shield(client.opened), 60)
                except (OSError, TimeoutError) as exc:
                    if attempt == 4:
                        raise ConnectionError(f"connection {i}: {exc}") from None
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                clients[i] = client
                return

    await asyncio.gather(*(one(i) for i in range(len(headers))))
    return [c for c in clients if c is not None]


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _readline() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def _idle(spec: dict[str, Any]) -> Any:
    received = 0

    def count(_i: int, _data: bytes) -> None:
        nonlocal received
        received += b"HEARTBEAT" in _data

    clients = await open_clients(spec["url"], spec["headers"], count)
    beat = frame(spec["frame"].encode())
    print("ready", flush=True)
    stop = asyncio.create_task(_until_stdin_closes())
    ticks = 100  # the heartbeats of a second, sent in slices every 10 ms
    start, tick = time.monotonic(), 0
    sent = 0
    while not stop.done():
        for client in clients[tick % ticks :: ticks]:
            client.send(beat)
            sent += 1
        tick += 1
        delay = start + tick * spec["interval_s"] / ticks - time.monotonic()
        if delay > 0:
            await asyncio.wait([stop], timeout=delay)
    closed = sum(c.closed for c in clients)
    return {"sent": sent, "received": received, "closed": closed}


def _drop_index(on_frame: Callable[[bytes, bytes], None], answer: bytes, _index: int, data: bytes) -> None:
    on_frame(data, answer)


async def _receive(spec: dict[str, Any]) -> Any:
    """Groups of connections (``url``, ``headers``, optional ``subscribe`` frame and the text of its answer)."""
    marker: bytes = spec["marker"].encode()
    seen: list[tuple[int, float]] = []
    subscribed = asyncio.Semaphore(0)

    def on_frame(data: bytes, answer: bytes) -> None:
        now = time.monotonic()
        at = data.find(marker)
        if at >= 0:
            start = end = at + len(marker)
            while end < len(data) and 48 <= data[end] <= 57:
                end += 1
            seen.append((int(data[start:end]), now))
        elif answer and answer in data:
            subscribed.release()

    clients: list[RawClient] = []
    for group in spec["groups"]:
        answer: bytes = group.get("answer", "").encode()
        opened = await open_clients(group["url"], group["headers"], functools.partial(_drop_index, on_frame, answer))
        if group.get("subscribe"):
            for client in opened:
                client.send(frame(group["subscribe"].encode()))
            for _ in opened:
                await asyncio.wait_for(subscribed.acquire(), 60)
        clients += opened
    print("ready", flush=True)
    stop = asyncio.create_task(_until_stdin_closes())
    beat = frame(spec["frame"].encode())
    while not stop.done():
        await asyncio.wait([stop], timeout=1.0)
        for client in clients:
            client.send(beat)
    return seen


async def _publish(spec: dict[str, Any]) -> Any:
    """The raw NATS baseline of an ingest run: the same events, msgpack, published as fast as nats-py can."""
    nc = await nats.connect(spec["nats_url"])
    bodies = [(f"{spec['subject']}.{a}", pack(m)) for a in spec["accounts"] for m in ingest_messages(a, spec["count"])]
    print("ready", flush=True)
    await _readline()  # "go"
    cpu, started = time.process_time(), time.monotonic()
    for subject, body in bodies:
        await nc.publish(subject, body)
    await nc.flush()
    elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    await nc.close()
    return {"seconds": elapsed, "cpu": cpu, "events": len(bodies)}


def end_symbol(account: str) -> str:
    """The symbol of an ingest run's last price from ``account``: in the cache once all its events are."""
    return f"END.{account}"[:32]


def ingest_messages(account: str, count: int, symbols: int = 20) -> list[Message]:
    """``count`` events of one terminal, as a busy one sends them: prices of ``symbols`` symbols, with an
    ACCOUNT_UPDATE and a POSITION_UPDATE every 20 events; the last one is a price of ``end_symbol``."""
    now = utcnow()
    position = Position(
        mt_ticket="1", symbol="SYM0", side="BUY", volume=0.1, open_price=1.1, current_price=1.1, profit=0.0
    )
    out: list[Message] = []
    for i in range(count - 1):
        if i % 20 == 18:
            out.append(
                AccountUpdate(
                    timestamp=now, account_id=account, balance=1e4, equity=1e4 + i, margin=0.0, free_margin=1e4
                )
            )
        elif i % 20 == 19:
            out.append(PositionUpdate(timestamp=now, account_id=account, positions=[position]))
        else:
            bid = 1.0 + i * 1e-6
            out.append(PriceTick(account_id=account, symbol=f"SYM{i % symbols}", bid=bid, ask=bid + 1e-4, time=now))
    out.append(PriceTick(account_id=account, symbol=end_symbol(account), bid=float(count), ask=float(count), time=now))
    return out


async def _blast(spec: dict[str, Any]) -> Any:
    clients = await open_clients(spec["url"], spec["headers"], lambda _i, _data: None)
    frames = [[frame(encode_frame(m)) for m in ingest_messages(a, spec["count"])] for a in spec["accounts"]]
    print("ready", flush=True)
    await _readline()  # "go"
    started = time.monotonic()

    async def write(client: RawClient, mine: list[bytes]) -> None:
        chunk = 64
        for i in range(0, len(mine), chunk):
            client.send(b"".join(mine[i : i + chunk]))
            await client.drained()

    await asyncio.gather(*(write(c, f) for c, f in zip(clients, frames, strict=True)))
    print(f"sent {time.monotonic() - started:.6f}", flush=True)
    await _until_stdin_closes()
    return {"closed": sum(c.closed for c in clients)}


MODES = {"idle": _idle, "receive": _receive, "blast": _blast, "publish": _publish}


async def _main(mode: str) -> None:
    raise_fd_limit()
    spec = json.loads(sys.stdin.readline())
    result = await MODES[mode](spec)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
