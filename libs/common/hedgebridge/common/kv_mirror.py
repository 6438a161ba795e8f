"""A JetStream KV bucket followed in memory: every key it holds is read before ``start`` returns, then each
change is handed over as it comes, so that the services that read a bucket on every request (the revoked
tokens, the symbols' rules) pay no round trip for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.js.kv import KeyValue

from .tasks import cancel_and_wait

# (key, value or None when the key was deleted or purged, whether it is one of the values read at start)
OnEntry = Callable[[str, bytes | None, bool], None]


class KvMirror:
    def __init__(self, on_entry: OnEntry) -> None:
        self._on_entry = on_entry
        self._task: asyncio.Task[None] | None = None

    async def start(self, bucket: KeyValue, timeout_s: float) -> None:
        """Hand over every value the bucket holds, then follow it in the background; TimeoutError when the
        initial values did not all arrive within ``timeout_s`` (nothing is followed then)."""
        watcher = await bucket.watchall()
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._follow(watcher, ready))
        try:
            async with asyncio.timeout(timeout_s):
                await ready.wait()
        except TimeoutError:
            await self.stop()
            raise

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _follow(self, watcher: KeyValue.KeyWatcher, ready: asyncio.Event) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # the initial values have all been delivered
                    ready.set()
                    continue
                deleted = entry.operation in ("DEL", "PURGE")
                self._on_entry(entry.key, None if deleted else (entry.value or b""), not ready.is_set())
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
