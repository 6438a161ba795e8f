"""``python -m hedgebridge.monitor``: run the monitor until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys

from hedgebridge.common import logs, service

from .config import from_env
from .service import Monitor


async def main(stop: asyncio.Event) -> None:
    config = from_env()
    logs.setup("monitor", config.log_level, config.log_format)
    monitor = Monitor(config)
    await monitor.start()
    try:
        await stop.wait()
    finally:
        await monitor.stop()


if __name__ == "__main__":
    sys.exit(service.run("monitor", main))
