"""NATS connections with the options every service uses."""

from __future__ import annotations

from typing import Any

import nats
from nats.aio.client import Client

from . import logs

_log = logs.get("bus")


async def connect(url: str, name: str, **options: Any) -> Client:
    """Connect to NATS (``url`` may be a comma-separated list of servers), reconnecting forever."""

    async def on_disconnect() -> None:
        _log.warning("nats disconnected", client=name)

    async def on_reconnect() -> None:
        _log.info("nats reconnected", client=name)

    async def on_error(exc: Exception) -> None:
        _log.warning("nats error", client=name, error=str(exc))

    servers = [u.strip() for u in url.split(",") if u.strip()]
    defaults: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 2,
        "allow_reconnect": True,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
    }
    defaults.update(options)
    return await nats.connect(servers=servers, **defaults)
