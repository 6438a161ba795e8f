"""NATS connections with the options every service uses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
from nats.aio.client import Client

from . import logs
from .faults import Fatal

_log = logs.get("bus")
ERROR_LOG_INTERVAL_S = 5.0


class NatsUnreachable(Fatal):
    """NATS could not be reached within the start-up deadline."""

    code = "NATS_UNREACHABLE"


async def connect(url: str, name: str, *, startup_timeout_s: float = 30.0, **options: Any) -> Client:
    """Connect to NATS (``url`` may be a comma-separated list of servers).

    The first connection must succeed within ``startup_timeout_s`` (else NatsUnreachable, so that a
    supervisor restarts the service with a clear message); once connected, the client reconnects forever.
    Connection errors are logged at most once every few seconds."""
    last_logged = 0.0

    async def on_disconnect() -> None:
        _log.warning("nats disconnected", client=name)

    async def on_reconnect() -> None:
        _log.info("nats reconnected", client=name)

    async def on_error(exc: Exception) -> None:
        nonlocal last_logged
        now = time.monotonic()
        if now - last_logged >= ERROR_LOG_INTERVAL_S:
            last_logged = now
            _log.warning("nats error", client=name, error=f"{type(exc).__name__}: {exc}")

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
    try:
        async with asyncio.timeout(startup_timeout_s):
            return await nats.connect(servers=servers, **defaults)
    except TimeoutError:
        raise NatsUnreachable(f"cannot reach NATS at {url} within {startup_timeout_s:g}s") from None
