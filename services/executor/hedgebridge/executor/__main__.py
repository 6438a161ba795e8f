"""``python -m hedgebridge.executor``: run the executor until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys

from hedgebridge.common import logs, service

from .config import from_env
from .service import Executor


async def main(stop: asyncio.Event) -> None:
    config = from_env()
    logs.setup("executor", config.log_level, config.log_format)
    executor = Executor(config)
    await executor.start()
    try:
        await stop.wait()
    finally:
        await executor.stop()


if __name__ == "__main__":
    sys.exit(service.run("executor", main))
