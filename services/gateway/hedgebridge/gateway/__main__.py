"""``python -m hedgebridge.gateway``: run the gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import sys

from hedgebridge.common import logs, service

from .config import from_env
from .server import Gateway


async def main(stop: asyncio.Event) -> None:
    config = from_env()
    logs.setup("gateway", config.log_level, config.log_format)
    gateway = Gateway(config)
    await gateway.start()
    try:
        await stop.wait()
    finally:
        await gateway.stop()


if __name__ == "__main__":
    sys.exit(service.run("gateway", main))
