"""NATS connections with the options every service uses.

A NATS URL may carry credentials (``nats://user:password@host``, ``nats://token@host``): wherever a URL or an
error text goes to a log or an exception message, ``redact`` replaces them with ``***``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import nats
from nats.aio.client import Client

from . import logs
from .faults import Fatal
from .obs import metrics

_log = logs.get("bus")
ERROR_LOG_INTERVAL_S = 5.0
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced: ``nats://user:***@host``, ``nats://***@host``."""

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"

    return _USERINFO.sub(hide, text)


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
        metrics.RECONNECTS.labels("nats").inc()
        _log.info("nats reconnected", client=name)

    async def on_error(exc: Exception) -> None:
        nonlocal last_logged
        now = time.monotonic()
        if now - last_logged >= ERROR_LOG_INTERVAL_S:
            last_logged = now
            _log.warning("nats error", client=name, error=redact(f"{type(exc).__name__}: {exc}"))

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
        raise NatsUnreachable(f"cannot reach NATS at {redact(url)} within {startup_timeout_s:g}s") from None
