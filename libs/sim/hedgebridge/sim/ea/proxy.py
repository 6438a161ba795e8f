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

The frames are read by ``frames`` (pure); on a malformed stream the proxy stops reading that direction and only
forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

from hedgebridge.common import logs

from .frames import (
    COMMANDS,
    OP_TEXT,
    REPORTS,
    FrameError,
    FrameParser,
    MessageAssembler,
    encode_frame,
    message_fields,
    response_terms,
)

log = logs.get("sim.proxy")

MAX_HEADER = 64 * 1024  # the longest HTTP head of a handshake read


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
                upgraded, conn.deflate = response_terms(head)
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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(65536):
        writer.write(chunk)
        await writer.drain()
