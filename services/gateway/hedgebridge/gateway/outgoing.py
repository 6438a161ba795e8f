"""The frames waiting for one client connection, and how they are written (the profiles' queue and batches).

- Priority (latency profile): answers and order/action news (REPLY, ERROR, SUBSCRIBED, pushes of orders,
  trades, actions, terminals…) are written before market data (pushes of prices, positions, balances), so a
  burst of ticks never delays an order's result. Without priority (throughput profile) one FIFO keeps the
  arrival order. Both hold at most ``maxsize`` frames in all (more: the client is a slow consumer).
- High-water mark: the put that makes ``high_water`` frames wait says so (once; again only after the queue
  went down to half of it), so the client can be warned before it is ever closed; the warning goes in front
  of every waiting frame (``put_front``, outside the limit). ``wait_below`` lets a producer that can wait (a
  replay) keep the queue short.
- Batches: the writer takes up to ``batch_max`` frames waiting at once. More than one is written with the
  socket corked (Linux ``TCP_CORK``), so the kernel packs the frames into as few TCP segments as it can;
  one frame at a time (latency profile) goes out at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Iterator

from websockets.asyncio.server import ServerConnection

BULK_TOPICS: frozenset[str] = frozenset({"prices", "positions", "balances"})
_CORK = getattr(socket, "TCP_CORK", None)


class OutgoingQueue:
    def __init__(self, maxsize: int, *, priority: bool, high_water: int | None = None) -> None:
        self.maxsize = maxsize
        self.priority = priority
        self.high_water = max(1, min(high_water or maxsize, maxsize))
        self.above_high_water = False
        self._urgent: collections.deque[str] = collections.deque()
        self._bulk: collections.deque[str] = collections.deque()
        self._ready = asyncio.Event()
        self._taken = asyncio.Event()

    def qsize(self) -> int:
        return len(self._urgent) + len(self._bulk)

    def put_nowait(self, text: str, urgent: bool = True) -> bool:
        """Queue a frame; asyncio.QueueFull when ``maxsize`` frames are waiting already. True when this frame
        brought the queue to its high-water mark (the caller warns the client)."""
        if self.qsize() >= self.maxsize:
            raise asyncio.QueueFull
        (self._urgent if urgent or not self.priority else self._bulk).append(text)
        self._ready.set()
        if not self.above_high_water and self.qsize() >= self.high_water:
            self.above_high_water = True
            return True
        return False

    def put_front(self, text: str) -> None:
        """Queue a frame before every other (a warning about the queue itself; not counted against the limit)."""
        self._urgent.appendleft(text)
        self._ready.set()

    async def wait_below(self, frames: int) -> None:
        """Until at most ``frames`` frames wait."""
        while self.qsize() > frames:
            self._taken.clear()
            await self._taken.wait()

    async def get_batch(self, max_frames: int) -> list[str]:
        """Wait for at least one frame; return up to ``max_frames`` of those waiting, urgent ones first."""
        while not self.qsize():
            self._ready.clear()
            await self._ready.wait()
        batch: list[str] = []
        for source in (self._urgent, self._bulk):
            while source and len(batch) < max_frames:
                batch.append(source.popleft())
        if self.above_high_water and self.qsize() <= self.high_water // 2:
            self.above_high_water = False
        self._taken.set()
        return batch


async def write(connection: ServerConnection, batch: list[str]) -> None:
    if len(batch) == 1:
        await connection.send(batch[0])
        return
    with _corked(connection):
        for text in batch:
            await connection.send(text)


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
