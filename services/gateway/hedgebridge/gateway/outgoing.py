"""The frames waiting for one client connection, and how they are written (the profiles' queue and batches).

- Encoded once: a frame is queued as its WebSocket wire bytes (``wire``: an unmasked, uncompressed TEXT frame),
  so an event a feed offers to every subscriber is encoded once for all of them; the same bytes go to every
  socket. A connection that negotiated compression (throughput profile) gets the payload compressed for it.
- Priority (latency profile): answers and order/action news (REPLY, ERROR, SUBSCRIBED, pushes of orders,
  trades, actions, terminals…) are written before market data (pushes of prices, positions, balances), so a
  burst of ticks never delays an order's result. Without priority (throughput profile) one FIFO keeps the
  arrival order. Both hold at most ``maxsize`` frames in all (more: the client is a slow consumer).
- High-water mark: the put that makes ``high_water`` frames wait says so (once; again only after the queue
  went down to half of it), so the client can be warned before it is ever closed; the warning goes in front
  of every waiting frame (``put_front``, outside the limit). ``wait_below`` lets a producer that can wait (a
  replay) keep the queue short.
- Writing: a put only marks its queue with the ``Flusher``, which writes every marked queue in one callback
  of the loop, right after the code that queued (a feed's event offered to all its subscribers): no task
  switch per client. A socket is written only while its buffer is below the transport's high-water mark
  (``writable``); a client that does not read keeps its frames in its queue, where the limit finds it.
- Batches: a write takes up to ``batch_max`` frames waiting at once and hands them to the socket in one
  ``write`` (one system call); one frame at a time (latency profile) goes out at once. ``send`` writes a
  batch through websockets (corked: Linux ``TCP_CORK``) and waits until the socket takes more.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import struct
from collections.abc import Hashable, Iterator
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from hedgebridge.common import logs

BULK_TOPICS: frozenset[str] = frozenset({"prices", "positions", "balances"})
_CORK = getattr(socket, "TCP_CORK", None)
_TEXT_FIN = 0x81  # FIN + opcode TEXT

log = logs.get("gateway")


def wire(payload: bytes) -> bytes:
    """The WebSocket TEXT frame (unmasked, uncompressed: a server's) carrying the UTF-8 ``payload``."""
    size = len(payload)
    if size < 126:
        head = bytes((_TEXT_FIN, size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", _TEXT_FIN, 126, size)
    else:
        head = struct.pack("!BBQ", _TEXT_FIN, 127, size)
    return head + payload


def payload(frame: bytes) -> memoryview:
    """The UTF-8 payload of a frame made by ``wire``."""
    marker = frame[1]
    return memoryview(frame)[2 if marker < 126 else 4 if marker == 126 else 10 :]


class OutgoingQueue:
    def __init__(self, maxsize: int, *, priority: bool, high_water: int | None = None) -> None:
        self.maxsize = maxsize
        self.priority = priority
        self.high_water = max(1, min(high_water or maxsize, maxsize))
        self.above_high_water = False
        self._urgent: collections.deque[bytes] = collections.deque()
        self._bulk: collections.deque[bytes] = collections.deque()
        self._taken = asyncio.Event()

    def qsize(self) -> int:
        return len(self._urgent) + len(self._bulk)

    def put_nowait(self, frame: bytes, urgent: bool = True) -> bool:
        """Queue a frame; asyncio.QueueFull when ``maxsize`` frames are waiting already. True when this frame
        brought the queue to its high-water mark (the caller warns the client)."""
        if len(self._urgent) + len(self._bulk) >= self.maxsize:
            raise asyncio.QueueFull
        (self._urgent if urgent or not self.priority else self._bulk).append(frame)
        if not self.above_high_water and self.qsize() >= self.high_water:
            self.above_high_water = True
            return True
        return False

    def put_front(self, frame: bytes) -> None:
        """Queue a frame before every other (a warning about the queue itself; not counted against the limit)."""
        self._urgent.appendleft(frame)

    async def wait_below(self, frames: int) -> None:
        """Until at most ``frames`` frames wait."""
        while self.qsize() > frames:
            self._taken.clear()
            await self._taken.wait()

    def take(self, max_frames: int) -> list[bytes]:
        """Up to ``max_frames`` of the frames waiting, urgent ones first (none: an empty list)."""
        batch: list[bytes] = []
        for source in (self._urgent, self._bulk):
            while source and len(batch) < max_frames:
                batch.append(source.popleft())
        if self.above_high_water and self.qsize() <= self.high_water // 2:
            self.above_high_water = False
        self._taken.set()
        return batch


class Flushable(Hashable, Protocol):
    def flush(self) -> None: ...


class Flusher:
    """The queues that got frames since the loop last ran this: all written in one callback."""

    def __init__(self) -> None:
        self._marked: dict[Flushable, None] = {}
        self._scheduled = False

    def mark(self, target: Flushable) -> None:
        self._marked[target] = None
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        marked, self._marked = self._marked, {}
        for target in marked:
            try:
                target.flush()
            except Exception:
                log.exception("client write failed")


def writable(connection: ServerConnection) -> bool:
    """The connection is open and its socket's buffer is below the transport's high-water mark."""
    transport = connection.transport
    if connection.protocol.state is not State.OPEN or transport.is_closing():
        return False
    return transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]


def write_now(connection: ServerConnection, batch: list[bytes]) -> None:
    """Hand a batch of frames to an open connection's socket at once (one ``write`` without compression)."""
    if not connection.protocol.extensions:
        connection.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
        return
    for frame in batch:
        connection.protocol.send_text(payload(frame))
    with _corked(connection):
        connection.send_data()


async def send(connection: ServerConnection, batch: list[bytes]) -> None:
    """Write a batch through websockets' ``send``, which waits until the socket's buffer is low again."""
    if len(batch) == 1:
        await connection.send(payload(batch[0]), text=True)
        return
    with _corked(connection):
        for frame in batch:
            await connection.send(payload(frame), text=True)


@contextlib.contextmanager
def _corked(connection: ServerConnection) -> Iterator[None]:
    sock = connection.transport.get_extra_info("socket") if _CORK is not None else None
    if sock is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)
