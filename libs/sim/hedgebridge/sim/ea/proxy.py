"""A WebSocket-aware TCP proxy between a terminal and the gateway, for tests and the simulator.

It listens on a free loopback port and forwards every byte to the gateway and back unchanged, reading the
traffic as it goes: the HTTP upgrade in each direction, then RFC 6455 frames (client frames unmasked to be read,
permessage-deflate messages inflated when the handshake negotiated it). What it sees:

- ``received``: the actionIds of every ``OPEN``/``CLOSE``/``MODIFY`` command the gateway sent through it, repeats
  included;
- ``reports``: (connection number, type, actionId) of every ``OPENED``/``CLOSED``/``MODIFIED``/``ERROR`` the
  terminal sent through it, the swallowed ones included;
- ``connections`` (accepted), ``cuts`` (connections it cut) and ``dropped`` (the types of reports it swallowed).

Faults it injects, as a network would: ``cut()`` aborts the current connections now; ``drop_next_report()`` arms
the loss of the next report (``OPENED``/``CLOSED``/``MODIFIED`` by default) from the terminal: that frame is not
forwarded and both sides of the connection are cut, as when the network fails right after the terminal executed;
``before_next_welcome(message)`` writes a frame of its own to the terminal on the next connection, ahead of the
gateway's WELCOME (what a terminal reads there belongs to no session).

With ``tls`` it serves wss (TLS ends at the proxy, as at a load balancer in front of the gateway) under the host
name ``name``, the one its certificate is for; with ``upstream_tls`` it reaches a gateway that serves wss itself.

``FrameParser`` is the pure part: bytes in, complete frames out, ``FrameError`` on a malformed stream (the proxy
then stops reading that direction and only forwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from hedgebridge.common import logs

log = logs.get("sim.proxy")

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPS = {OP_CONTINUATION, OP_TEXT, OP_BINARY}
_CONTROL_OPS = {OP_CLOSE, OP_PING, OP_PONG}
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_HEADER = 64 * 1024
COMMANDS = frozenset({"OPEN", "CLOSE", "MODIFY"})
REPORTS = frozenset({"OPENED", "CLOSED", "MODIFIED"})


class FrameError(ValueError):
    """The byte stream is not a valid sequence of RFC 6455 frames."""


@dataclass(frozen=True, slots=True)
class WsFrame:
    fin: bool
    rsv1: bool
    opcode: int
    masked: bool
    payload: bytes  # unmasked
    raw: bytes  # the frame exactly as it was on the wire


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """One frame (for tests and for writing frames of our own): masked when ``mask`` (4 bytes) is given."""
    if mask is not None and len(mask) != 4:
        raise ValueError("a mask is 4 bytes")
    head = bytearray([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _unmask(payload, mask)


def _unmask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


class FrameParser:
    """Splits a byte stream into frames. ``feed`` returns the frames completed by ``data``; a partial frame is
    kept for the next call. ``masked`` is what the direction requires (client frames are masked, server frames
    are not); ``rsv1_allowed`` when permessage-deflate was negotiated. On a malformed frame ``feed`` returns the
    frames before it and sets ``error``; ``rest()`` then hands back the bytes not parsed, and later calls raise
    ``FrameError``."""

    def __init__(self, *, masked: bool, rsv1_allowed: bool = False, max_payload: int = MAX_PAYLOAD) -> None:
        self.masked = masked
        self.rsv1_allowed = rsv1_allowed
        self.max_payload = max_payload
        self._buffer = bytearray()
        self.error: FrameError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)

    def rest(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def feed(self, data: bytes) -> list[WsFrame]:
        if self.error is not None:
            raise self.error
        self._buffer += data
        frames: list[WsFrame] = []
        try:
            while (frame := self._next()) is not None:
                frames.append(frame)
        except FrameError as exc:
            self.error = exc
        return frames

    def _next(self) -> WsFrame | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        fin, rsv1, opcode = bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F
        if b0 & 0x30 or (rsv1 and not self.rsv1_allowed):
            raise FrameError(f"reserved bits set in frame header 0x{b0:02x}")
        if opcode not in _DATA_OPS | _CONTROL_OPS:
            raise FrameError(f"reserved opcode 0x{opcode:x}")
        masked = bool(b1 & 0x80)
        if masked != self.masked:
            raise FrameError("a client frame must be masked" if self.masked else "a server frame must not be masked")
        length, offset = b1 & 0x7F, 2
        if opcode in _CONTROL_OPS and (length > 125 or not fin):
            raise FrameError("a control frame must be final and carry at most 125 bytes")
        if length == 126:
            if len(buf) < 4:
                return None
            length, offset = int.from_bytes(buf[2:4], "big"), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, offset = int.from_bytes(buf[2:10], "big"), 10
            if length >> 63:
                raise FrameError("the most significant bit of a 64-bit length must be 0")
        if length > self.max_payload:
            raise FrameError(f"frame payload of {length} bytes exceeds {self.max_payload}")
        mask = b""
        if masked:
            if len(buf) < offset + 4:
                return None
            mask, offset = bytes(buf[offset : offset + 4]), offset + 4
        end = offset + length
        if len(buf) < end:
            return None
        raw = bytes(buf[:end])
        payload = raw[offset:]
        del buf[:end]
        return WsFrame(fin, rsv1, opcode, masked, _unmask(payload, mask) if masked else payload, raw)


class MessageAssembler:
    """Joins fragments into messages and inflates compressed ones (one per direction: the inflater keeps the
    sliding window across messages, which is right with and without context takeover)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._opcode = 0
        self._compressed = False
        self._inflater = zlib.decompressobj(-15)

    def add(self, frame: WsFrame) -> tuple[int, bytes] | None:
        """The completed (opcode, payload) of a data message, or None (a fragment, or a control frame)."""
        if frame.opcode in _CONTROL_OPS:
            return None
        if frame.opcode == OP_CONTINUATION:
            if not self._parts and not self._opcode:
                raise FrameError("a continuation frame without a message to continue")
        else:
            if self._opcode:
                raise FrameError("a new message began before the previous one was final")
            self._opcode, self._compressed = frame.opcode, frame.rsv1
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        data = b"".join(self._parts)
        opcode, compressed = self._opcode, self._compressed
        self._parts, self._opcode, self._compressed = [], 0, False
        if compressed:
            try:
                data = self._inflater.decompress(data + b"\x00\x00\xff\xff")
            except zlib.error as exc:
                raise FrameError(f"cannot inflate a compressed message: {exc}") from None
        return opcode, data


def message_fields(payload: bytes) -> tuple[str, str | None] | None:
    """(type, actionId) of a JSON text message of the EA wire, or None when it is not one."""
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    action = value.get("actionId")
    return value["type"], action if isinstance(action, str) else None


@dataclass(eq=False)
class _Connection:
    terminal: asyncio.StreamWriter
    gateway: asyncio.StreamWriter
    number: int = 0
    deflate: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.terminal, self.gateway):
            writer.transport.abort()


class WsProxy:
    """``async with WsProxy(host, port) as proxy:`` then point the terminal at ``proxy.url("/ea")``."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
        upstream_tls: ssl.SSLContext | None = None,
        name: str | None = None,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.host = host
        self.name = name or host  # the host name in its URL
        self.tls = tls
        self.upstream_tls = upstream_tls
        self.received: list[str] = []
        self.dropped: list[str] = []
        self.reports: list[tuple[int, str, str | None]] = []
        self.connections = 0
        self.cuts = 0
        self._armed: frozenset[str] | None = None
        self._early: bytes | None = None
        self._live: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def active(self) -> int:
        """Connections open now."""
        return len(self._live)

    def url(self, path: str = "/ea") -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.name}:{self.port}{path}"

    async def start(self) -> None:  # with tls, a connection whose handshake fails is never accepted
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.tls)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._live):
            conn.abort()
        tasks = [t for conn in list(self._live) for t in conn.tasks]
        for task in tasks:  # a pump still waiting for the upstream's handshake response does not see the abort
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> WsProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def drop_next_report(self, types: Iterable[str] = REPORTS) -> None:
        """The next frame from the terminal whose ``type`` is one of ``types`` is lost, with the connection."""
        armed = frozenset(types)
        if not armed:
            raise ValueError("drop_next_report needs at least one message type")
        self._armed = armed

    def before_next_welcome(self, message: dict[str, object]) -> None:
        """On the next connection, ``message`` (JSON) reaches the terminal before the gateway's WELCOME."""
        self._early = encode_frame(OP_TEXT, json.dumps(message).encode())

    def cut(self) -> int:
        """Abort every open connection now (no closing handshake, as a network failure); how many were cut."""
        live = list(self._live)
        for conn in live:
            self._cut(conn)
        return len(live)

    def _cut(self, conn: _Connection) -> None:
        if conn in self._live:
            self.cuts += 1
            self._live.discard(conn)
        conn.abort()

    async def _accept(self, t_reader: asyncio.StreamReader, t_writer: asyncio.StreamWriter) -> None:
        try:
            g_reader, g_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port, ssl=self.upstream_tls
            )
        except OSError as exc:  # ssl.SSLError included
            log.warning("cannot reach the gateway", error=str(exc))
            t_writer.transport.abort()
            return
        self.connections += 1
        conn = _Connection(t_writer, g_writer, number=self.connections)
        self._live.add(conn)
        handshake = asyncio.Event()
        conn.tasks = [
            asyncio.create_task(self._pump(conn, t_reader, g_writer, from_terminal=True, handshake=handshake)),
            asyncio.create_task(self._pump(conn, g_reader, t_writer, from_terminal=False, handshake=handshake)),
        ]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._live.discard(conn)
            conn.abort()
            await asyncio.gather(*conn.tasks, return_exceptions=True)

    async def _pump(
        self,
        conn: _Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_terminal: bool,
        handshake: asyncio.Event,
    ) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head, rest = await self._read_head(reader)
            writer.write(head)
            if from_terminal:
                await handshake.wait()  # frames are read once the response says what was negotiated
            else:
                upgraded, conn.deflate = _response_terms(head)
                handshake.set()
                if not upgraded:
                    writer.write(rest)
                    await _pipe(reader, writer)
                    return
                if self._early is not None:
                    writer.write(self._early)
                    self._early = None
            await self._frames(conn, reader, writer, rest, from_terminal=from_terminal)

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        """The HTTP head (through the blank line) and the bytes read after it (the first frames)."""
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            data += chunk
            if len(data) > MAX_HEADER:
                raise ConnectionError("handshake too long")
        return data[: end + 4], data[end + 4 :]

    async def _frames(
        self,
        conn: _Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        first: bytes,
        *,
        from_terminal: bool,
    ) -> None:
        parser = FrameParser(masked=from_terminal, rsv1_allowed=conn.deflate)
        messages = MessageAssembler()
        chunk = first
        while chunk or (chunk := await reader.read(65536)):
            for frame in parser.feed(chunk):
                try:
                    message = messages.add(frame)
                except FrameError as exc:
                    log.warning("unreadable message", terminal=from_terminal, error=str(exc))
                    message = None
                if message is not None and message[0] == OP_TEXT and not self._inspect(conn, message[1], from_terminal):
                    self._cut(conn)
                    return
                writer.write(frame.raw)
            if parser.error is not None:
                log.warning("unreadable frames, forwarding unread", terminal=from_terminal, error=str(parser.error))
                writer.write(parser.rest())
                await writer.drain()
                await _pipe(reader, writer)
                return
            await writer.drain()
            chunk = b""

    def _inspect(self, conn: _Connection, payload: bytes, from_terminal: bool) -> bool:
        """Record what the message says; False when it is to be lost."""
        fields = message_fields(payload)
        if fields is None:
            return True
        kind, action_id = fields
        if from_terminal and (kind in REPORTS or kind == "ERROR"):
            self.reports.append((conn.number, kind, action_id))
        if not from_terminal and kind in COMMANDS:
            self.received.append(action_id or "")
        elif from_terminal and self._armed is not None and kind in self._armed:
            self._armed = None
            self.dropped.append(kind)
            log.info("dropping a report and cutting the connection", type=kind, action_id=action_id)
            return False
        return True


def _response_terms(head: bytes) -> tuple[bool, bool]:
    """(switched to WebSocket, permessage-deflate negotiated) from the gateway's handshake response."""
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    upgraded = len(parts) >= 2 and parts[1] == "101"
    deflate = any(
        name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value.lower()
        for name, _, value in (line.partition(":") for line in lines[1:])
    )
    return upgraded, deflate


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
