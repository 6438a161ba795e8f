"""Stopping a service's background tasks; a periodic one; taking a lock by a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from . import logs


async def cancel_all(tasks: Iterable[asyncio.Task[Any]], log: logs.Logger, grace_s: float = 2.0) -> None:
    """Cancel ``tasks`` and wait for them, at most ``grace_s``: a task stuck in a library call must not hold
    a shutdown."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=grace_s)
        if stuck:
            log.warning("tasks did not stop when cancelled", count=len(stuck))


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing when None) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def acquire_by(lock: asyncio.Lock, deadline: float) -> bool:
    """Take ``lock`` unless ``deadline`` (``time.perf_counter()`` seconds) passes first; True when taken."""
    try:
        async with asyncio.timeout(max(deadline - time.perf_counter(), 0.0)):
            await lock.acquire()
    except TimeoutError:
        return False
    return True


async def every(interval_s: float, work: Callable[[], Awaitable[object]], log: logs.Logger, failed: str) -> None:
    """Run ``work`` now and then every ``interval_s`` until cancelled; a failed run is logged as ``failed``
    (with its error) and the next one runs on time."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(failed, error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval_s)
