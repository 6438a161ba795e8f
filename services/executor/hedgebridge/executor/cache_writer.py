"""The executor's writes to the realtime cache: the event reader queues (``PendingWrites``, never waiting for
the cache), one task writes what waits in one pipeline per round trip (``RealtimeCache.apply_many``).

While a write is on its way, new events wait; the next write takes all of them, so the batch grows with the
load and one event alone goes out at once. The throughput profile coalesces the waiting events per key,
latest wins (``hedgebridge_cache_coalesced_total``). A failed write is logged (at most every 5 s) and its
events dropped: the cache is a projection, rebuilt from the terminals' next reports.
"""

from __future__ import annotations

import asyncio
import time

from hedgebridge.common import logs
from hedgebridge.common.cache import RealtimeCache
from hedgebridge.common.cache_batch import PendingWrites
from hedgebridge.common.obs import metrics
from hedgebridge.common.tasks import cancel_and_wait
from hedgebridge.protocol import Event

log = logs.get("executor")


class CacheWriter:
    def __init__(self, cache: RealtimeCache, *, coalesce: bool, limit: int = 10_000) -> None:
        self.cache = cache
        self.pending = PendingWrites(coalesce=coalesce, limit=limit)
        self.written = 0
        self.batches = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reported = 0  # coalesced events already counted in the metric
        self._warned = 0.0
        self._closed = False

    def add(self, event: Event) -> bool:
        """Queue ``event`` for the cache (False: nothing in it for the cache); starts the writer when needed."""
        if not self.pending.add(event):
            return False
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    async def close(self) -> None:
        # the flag ends the loop too when a cancellation is swallowed inside the cache client's write
        self._closed = True
        self._wake.set()
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            if self._closed:
                return
            batch = self.pending.take()
            self._count_coalesced()
            try:
                self.written += await self.cache.apply_many(batch)
                self.batches += 1
            except Exception as exc:  # the cache is rebuildable: a failed write must not stop the executor
                self._warn(exc)
            if not len(self.pending):
                self._wake.clear()

    def _count_coalesced(self) -> None:
        fresh = self.pending.coalesced - self._reported
        if fresh:
            metrics.CACHE_COALESCED.inc(fresh)
            self._reported = self.pending.coalesced

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned > 5:
            self._warned = now
            log.warning("cache write failed", error=f"{type(exc).__name__}: {exc}")
