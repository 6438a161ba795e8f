"""Terminals' snapshots (I/O): asking an account's terminal for a fresh one (SYNC on its command subject),
and the complete list of an account's open positions from the cache, for CLOSE_ALL.

An account the cache has no complete picture of (it was emptied since the last snapshot) is asked for a
fresh snapshot; still none by the deadline: the action is refused with CACHE_INCOMPLETE, nothing is closed.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hedgebridge.common import logs
from hedgebridge.common.cache import RealtimeCache
from hedgebridge.protocol import Position, SyncCommand, errors, pack, subjects, utcnow

from .errors import ActionInvalid

log = logs.get("coordinator")


async def sync(nc: NatsClient, account: str, reason: str) -> bool:
    """Ask the account's terminal for a fresh snapshot; False when no gateway holds it."""
    command = SyncCommand(timestamp=utcnow(), account_id=account, sync_id=uuid.uuid4().hex, reason=reason)
    try:
        await nc.request(subjects.command(account), pack(command), timeout=1.0)
    except (NoRespondersError, NatsTimeoutError):
        return False
    except Exception as exc:
        log.warning("sync failed", account=account, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


async def positions(
    nc: NatsClient, cache: RealtimeCache, accounts: list[str], until: float
) -> dict[str, list[Position]]:
    """Every account's complete list of open positions, from the cache (asking for a SYNC, and waiting until
    the epoch time ``until``, for an account the cache has no complete picture of)."""

    async def one(i: int, account: str) -> list[Position]:
        found = await _cached(cache, account)
        if found is not None:
            return found
        await sync(nc, account, "close-all")
        while time.time() < until:
            await asyncio.sleep(0.05)
            found = await _cached(cache, account)
            if found is not None:
                return found
        raise ActionInvalid(
            f"the cache has no complete picture of account {account} (no snapshot since it was last emptied, "
            "and none came in answer to SYNC); nothing was closed",
            code=errors.CACHE_INCOMPLETE,
            field=f"accountIds[{i}]",
        )

    lists = await asyncio.gather(*(one(i, a) for i, a in enumerate(accounts)))
    return dict(zip(accounts, lists, strict=True))


async def _cached(cache: RealtimeCache, account: str) -> list[Position] | None:
    try:
        return await cache.positions(account)
    except Exception as exc:  # an unreachable cache is an incomplete one
        log.warning("cache read failed", account=account, error=f"{type(exc).__name__}: {exc}")
        return None
