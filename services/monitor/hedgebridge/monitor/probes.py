"""The health checks' probes (I/O): each asks one part of the system and returns an ``Outcome``
(``health.py`` decides what it means for the check).

- ``nats``: a flush round trip; ``cache``: a PING; ``integrity``: every ``hb_book`` entry decodes;
- ``websocket``: a WebSocket handshake with the configured gateway's ``/client`` endpoint;
- ``coordinator``: an empty action request (a health probe every coordinator answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.client import JetStreamContext
from websockets.asyncio.client import connect as ws_connect

from hedgebridge.protocol import BookEntry, ProtocolError, errors, subjects, subprotocol, unpack

from .health import Outcome

PROBE_TIMEOUT_S = 2.0
BOOK_KEYS_CHECKED = 1000


async def nats_rtt(nc: NatsClient | None) -> Outcome:
    if nc is None or not nc.is_connected:
        return False, "not connected to NATS", errors.NATS_UNREACHABLE, None
    started = time.perf_counter()
    try:
        await nc.flush(timeout=int(PROBE_TIMEOUT_S))
    except Exception as exc:
        return False, f"no answer from NATS: {type(exc).__name__}", errors.NATS_UNREACHABLE, None
    return True, "", None, (time.perf_counter() - started) * 1000


async def cache_ping(redis: aioredis.Redis) -> Outcome:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await redis.ping()
    except (aioredis.RedisError, OSError, TimeoutError) as exc:
        return False, f"no answer from the cache: {type(exc).__name__}", errors.CACHE_UNREACHABLE, None
    return True, "", None, (time.perf_counter() - started) * 1000


async def undecodable_book_keys(js: JetStreamContext) -> list[str]:
    """The ``hb_book`` keys (of the first thousand) whose entry does not decode."""
    try:
        book = await js.key_value(subjects.BOOK_BUCKET)
        keys = await book.keys()
    except Exception:  # no bucket or no keys yet: nothing to decode
        return []
    bad = []
    for key in keys[:BOOK_KEYS_CHECKED]:
        with contextlib.suppress(Exception):
            entry = await book.get(key)
            try:
                unpack(entry.value or b"", BookEntry)
            except ProtocolError:
                bad.append(key)
    return bad


async def gateway_handshake(gateway_url: str) -> tuple[float | None, str | None]:
    """The handshake's time (ms), or why it failed."""
    url = gateway_url.rstrip("/") + "/client"
    started = time.perf_counter()
    try:
        async with ws_connect(
            url,
            subprotocols=[subprotocol()],  # type: ignore[list-item]
            open_timeout=PROBE_TIMEOUT_S,
            ping_interval=None,
            close_timeout=0.5,
        ):
            latency_ms = (time.perf_counter() - started) * 1000
    except Exception as exc:
        return None, f"{url}: {type(exc).__name__}: {exc}"[:200]
    return latency_ms, None


async def coordinator(nc: NatsClient) -> Outcome:
    started = time.perf_counter()
    try:
        await nc.request(subjects.ACTION_REQUEST, b"", timeout=PROBE_TIMEOUT_S)
    except NoRespondersError:
        return False, "no coordinator answers", errors.COORDINATOR_UNAVAILABLE, None
    except NatsTimeoutError:
        return False, f"no coordinator answer within {PROBE_TIMEOUT_S:g}s", errors.COORDINATOR_UNAVAILABLE, None
    return True, "", None, (time.perf_counter() - started) * 1000
