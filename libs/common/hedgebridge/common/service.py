"""Running a service process: logs, configuration errors, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from . import logs, loop
from .config import ConfigError
from .faults import Fatal
from .obs import gcpause

EXIT_CONFIG = 78  # EX_CONFIG: the configuration is invalid
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: something the service needs (NATS, its port) is not available


def run(name: str, main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``main(stop)`` until it returns, on the chosen event loop (``loop.py``: asyncio, or uvloop when asked);
    ``stop`` is set on SIGTERM or SIGINT. Returns the exit code."""

    async def runner() -> None:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        loop.run(runner())
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Fatal as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130
    logs.get(name).info("stopped")
    return 0


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LoggingConfig(Protocol):
    @property
    def log_level(self) -> str: ...

    @property
    def log_format(self) -> str: ...


C = TypeVar("C", bound=LoggingConfig)


def main(name: str, load: Callable[[], C], build: Callable[[C], Service]) -> int:
    """Load the configuration, start the service, and stop it cleanly on SIGTERM/SIGINT. Once started, the
    start-up heap is frozen out of the garbage collector's scans and every collection is timed (``gcpause``)."""

    async def body(stop: asyncio.Event) -> None:
        config = load()
        logs.setup(name, config.log_level, config.log_format)
        instance = build(config)
        gcpause.watch()
        await instance.start()
        gcpause.settle()
        try:
            await stop.wait()
        finally:
            await instance.stop()

    return run(name, body)
