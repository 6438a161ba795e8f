"""The raw WebSocket client connections of the gateway bench's load processes (``bench_wsload``).

A connection is an asyncio protocol (the handshake, masked text frames with a zero mask key, a minimal frame
parser that answers Pings), so one process holds thousands of them with little CPU. ``open_clients`` opens
them a few handshakes at a time, as terminals reconnecting after a restart would: a handshake the server
refuses with 503 (the gateway's budget of handshakes, ``GATEWAY_CONNECT_RATE``) or 429 comes back after its
``Retry-After``, a connect the kernel refuses (nothing listening, a full backlog, no ephemeral port left)
after a backoff; every refusal is counted by its reason (``Opening``), and a connection still refused after
its attempts is left out and counted as failed, with the reason, instead of ending the process. While it
opens them the process prints ``progress <json>`` every ``PROGRESS_S``, so the bench can tell a slow
server from one that stopped accepting.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

_OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x1, 0x8, 0x9, 0xA
ATTEMPTS = 20  # per connection, before it is counted as failed
HANDSHAKE_TIMEOUT_S = 60.0
PROGRESS_S = 2.0


class Refused(ConnectionError):
    """The server answered the handshake with something other than 101."""

    def __init__(self, reason: str, retry_after_s: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s

    @classmethod
    def of(cls, head: list[str], body: bytes) -> Refused:
        """From the response's status line and headers (``head``) and what came of its body."""
        status = " ".join(head[0].split(" ")[1:2])  # the code: "503"
        retry_after: float | None = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "retry-after":
                try:
                    retry_after = float(value.strip())
                except ValueError:
                    retry_after = None
        text = body.decode(errors="replace").strip().splitlines()
        return cls(f"HTTP {status} {text[0] if text else head[0]}".strip(), retry_after)


@dataclass
class Opening:
    """What opening a load process's connections came to (sent to the bench as JSON)."""

    total: int
    opened: int = 0
    failed: int = 0
    seconds: float = 0.0  # how long opening them took
    refused: collections.Counter[str] = field(default_factory=collections.Counter)  # every refused attempt
    failures: collections.Counter[str] = field(default_factory=collections.Counter)  # the last reason of each failed

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "opened": self.opened,
            "failed": self.failed,
            "seconds": round(self.seconds, 1),
            "refused": dict(self.refused),
            "failures": dict(self.failures),
        }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Refused):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return f"no handshake answer within {HANDSHAKE_TIMEOUT_S:.0f} s"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"connect: {os.strerror(exc.errno)} (errno {exc.errno})"
    return f"{type(exc).__name__}: {exc}"


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def _report_progress(opening: Opening) -> None:
    while True:
        print("progress " + json.dumps(opening.as_json()), flush=True)
        await asyncio.sleep(PROGRESS_S)


async def open_clients(
    url: str, headers: list[dict[str, str]], on_frame: Callable[[int, bytes], None], concurrency: int = 16
) -> tuple[list[RawClient], Opening]:
    """One connection per entry of ``headers``, ``concurrency`` handshakes at a time (see the module)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    clients: list[RawClient | None] = [None] * len(headers)
    gate = asyncio.Semaphore(concurrency)
    opening = Opening(len(headers))

    async def one(i: int) -> None:
        reason = ""
        for attempt in range(ATTEMPTS):
            client = RawClient(f"{host}:{port}", parts.path or "/", headers[i], lambda data: on_frame(i, data))
            async with gate:
                try:
                    await loop.create_connection(lambda c=client: c, host, port)  # type: ignore[misc]
                    await asyncio.wait_for(asyncio.shield(client.opened), HANDSHAKE_TIMEOUT_S)
                except (OSError, TimeoutError) as exc:
                    if client.transport is not None:
                        client.transport.abort()
                    reason = _reason(exc)
                    opening.refused[reason] += 1
                    wait = exc.retry_after_s if isinstance(exc, Refused) else None
                else:
                    clients[i] = client
                    opening.opened += 1
                    return
            await asyncio.sleep(wait if wait is not None else min(0.2 * (attempt + 1), 2.0))  # outside the gate
        opening.failed += 1
        opening.failures[reason] += 1

    progress = asyncio.create_task(_report_progress(opening))
    started = time.monotonic()
    try:
        await asyncio.gather(*(one(i) for i in range(len(headers))))
    finally:
        progress.cancel()
    opening.seconds = time.monotonic() - started
    print("progress " + json.dumps(opening.as_json()), flush=True)
    return [c for c in clients if c is not None], opening


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
        self.opened.add_done_callback(_retrieved)  # a handshake given up on may still fail later
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
            head = bytes(buffer[:end]).decode(errors="replace").split("\r\n")
            del buffer[: end + 4]
            if " 101 " not in head[0]:
                if not self.opened.done():
                    self.opened.set_exception(Refused.of(head, bytes(buffer)))
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
