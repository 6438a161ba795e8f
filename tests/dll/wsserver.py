"""A small WebSocket server for the library's tests, written from RFC 6455 so that it can misbehave on purpose.

``WsTestServer`` accepts the library's upgrade (selecting ``hedgebridge.v1``), sends the frames it was given,
and records every frame the client sends with its masking key (``ServerConnection.frames``). With
``answer_close=False`` it never answers the client's close frame and keeps the socket open until the test
calls ``release()``; with ``silent=True`` it accepts TCP and never answers the handshake at all. With
``refusals`` it answers the first upgrades with those HTTP refusals (a status and its headers, e.g. 503 with a
``Retry-After``), one per connection, and accepts the ones after. Each connection notes when it was accepted
and when its answer was written (``time.monotonic()``), so that a test can tell how long the client waited.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from hedgebridge.sim.ea.frames import OP_CLOSE, FrameParser, encode_frame

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "hedgebridge.v1"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer that refuses the upgrade: ``status`` with ``headers`` (``{"Retry-After": "2"}``)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> bytes:
        body = f"refused with {self.status}\n".encode()
        lines = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}", "Content-Type: text/plain"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines += [f"Content-Length: {len(body)}", "Connection: close"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(frozen=True, slots=True)
class ClientFrame:
    opcode: int
    key: bytes  # the masking key, as on the wire
    payload: bytes  # unmasked


def masking_key(raw: bytes) -> bytes:
    """The 4-byte masking key of one masked frame, as sent."""
    length = raw[1] & 0x7F
    start = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    return raw[start : start + 4]


@dataclass(eq=False)
class ServerConnection:
    writer: asyncio.StreamWriter
    handshake_key: bytes = b""  # the client's Sec-WebSocket-Key, decoded
    frames: list[ClientFrame] = field(default_factory=list)
    close_received: bool = False
    close_answered: bool = False
    eof: bool = False  # the client closed (or cut) its side of the TCP connection, or the server released it
    accepted_at: float = field(default_factory=time.monotonic)  # when the TCP connection was accepted
    answered_at: float = 0.0  # when the answer to the upgrade (101 or a refusal) was written
    refused: int = 0  # the HTTP status it was refused with, 0 when upgraded

    def send(self, opcode: int, payload: bytes) -> None:
        self.writer.write(encode_frame(opcode, payload))

    def text_frames(self) -> list[ClientFrame]:
        return [f for f in self.frames if f.opcode == 0x1]


class WsTestServer:
    """``async with WsTestServer(...) as server:`` then connect the library to ``server.url``."""

    def __init__(
        self,
        *,
        on_open: list[tuple[int, bytes]] | None = None,
        answer_close: bool = True,
        silent: bool = False,
        refusals: list[Refusal] | None = None,
    ) -> None:
        self.on_open = on_open or []
        self.answer_close = answer_close
        self.silent = silent
        self.refusals = list(refusals or [])
        self.connections: list[ServerConnection] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ea"

    async def __aenter__(self) -> WsTestServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.release()  # every connection's reader then sees the end of its stream
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def answer_closes(self) -> None:
        """Answer the close frames received so far and not answered (``answer_close=False``), then shut down the
        sending side: the client ends the closing handshake by closing its socket (``eof``)."""
        for conn in self.connections:
            if conn.close_received and not conn.close_answered:
                conn.close_answered = True
                conn.send(OP_CLOSE, (1000).to_bytes(2, "big"))
                conn.writer.write_eof()

    def release(self) -> None:
        """Close every connection from this side (TCP close, no closing handshake)."""
        for conn in self.connections:
            with contextlib.suppress(OSError, RuntimeError):
                conn.writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = ServerConnection(writer)
        self.connections.append(conn)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                head = await reader.readuntil(b"\r\n\r\n")
                if self.silent:
                    while await reader.read(65536):
                        pass
                    return
                if self.refusals:
                    refusal = self.refusals.pop(0)
                    conn.refused = refusal.status
                    conn.answered_at = time.monotonic()
                    writer.write(refusal.response())
                    await writer.drain()
                    return
                self._upgrade(conn, head)
                for opcode, payload in self.on_open:
                    conn.send(opcode, payload)
                await writer.drain()
                await self._read_frames(conn, reader)
        finally:
            conn.eof = True
            self._tasks.discard(task)
            writer.close()

    def _upgrade(self, conn: ServerConnection, head: bytes) -> None:
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers["sec-websocket-key"]
        conn.handshake_key = base64.b64decode(key)
        accept = base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest()).decode()
        conn.answered_at = time.monotonic()
        conn.writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )

    async def _read_frames(self, conn: ServerConnection, reader: asyncio.StreamReader) -> None:
        parser = FrameParser(masked=True)
        while chunk := await reader.read(65536):
            for frame in parser.feed(chunk):
                conn.frames.append(ClientFrame(frame.opcode, masking_key(frame.raw), frame.payload))
                if frame.opcode == OP_CLOSE:
                    conn.close_received = True
                    if self.answer_close:
                        self.answer_closes()
