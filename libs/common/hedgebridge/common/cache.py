"""The realtime cache: a volatile projection of what terminals report (design seed 002).

Keys (one account's or one symbol's data per key, so every operation touches one hash slot)::

    hb:price:<symbol>        hash  bid, ask, time, account      marketPrices
    hb:positions:<account>   hash  <mtTicket> -> Position JSON  activePositions (replaced per snapshot)
    hb:balance:<account>     hash  balance, equity, margin, freeMargin, marginLevel, currency, lastUpdate
                                                                 accountBalances
    hb:synced:<account>      string  time of the last full positions snapshot applied
    hb:epoch                 string  set when the cache was (re)built; gone after a flush or a restart

Nothing here is the record of truth: after a flush it is rebuilt from the terminals' next reports. An
account's positions are known only once a snapshot was applied since the last flush (``positions`` returns
None before that), so nobody takes a decision from an incomplete cache.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
import redis.asyncio as aioredis

from hedgebridge.protocol import AccountUpdate, Event, Position, PositionUpdate, PriceTick

PRICE = "hb:price:{}"
POSITIONS = "hb:positions:{}"
BALANCE = "hb:balance:{}"
SYNCED = "hb:synced:{}"
EPOCH = "hb:epoch"

_position_json = msgspec.json.Encoder()
_position_decoder = msgspec.json.Decoder(Position)


class RealtimeCache(Protocol):
    async def apply(self, event: Event) -> bool:
        """Project one terminal event; returns False for events that carry nothing to cache."""

    async def price(self, symbol: str) -> dict[str, str] | None: ...

    async def positions(self, account_id: str) -> list[Position] | None:
        """The account's open positions, or None when no snapshot was applied since the cache was last
        emptied (the picture is incomplete)."""

    async def epoch(self) -> str | None:
        """The cache's build mark; None means it was flushed or restarted and must be rebuilt."""

    async def mark_epoch(self, value: str) -> bool:
        """Set the build mark unless one is set; True when this call set it."""

    async def balance(self, account_id: str) -> dict[str, str] | None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class RedisCache:
    """RealtimeCache on Redis or any Redis-compatible server (valkey)."""

    def __init__(self, url: str) -> None:
        self._redis: aioredis.Redis = aioredis.from_url(url, decode_responses=True)

    async def apply(self, event: Event) -> bool:
        if isinstance(event, PriceTick):
            await self._redis.hset(
                PRICE.format(event.symbol),
                mapping={
                    "bid": repr(event.bid),
                    "ask": repr(event.ask),
                    "time": event.time.isoformat(),
                    "account": event.account_id,
                },
            )
        elif isinstance(event, AccountUpdate):
            await self._redis.hset(
                BALANCE.format(event.account_id),
                mapping={
                    "balance": repr(event.balance),
                    "equity": repr(event.equity),
                    "margin": repr(event.margin),
                    "freeMargin": repr(event.free_margin),
                    "marginLevel": "" if event.margin_level is None else repr(event.margin_level),
                    "currency": event.currency or "",
                    "lastUpdate": event.timestamp.isoformat(),
                },
            )
        elif isinstance(event, PositionUpdate):
            key = POSITIONS.format(event.account_id)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if event.positions:
                    pipe.hset(key, mapping={p.mt_ticket: _position_json.encode(p).decode() for p in event.positions})
                pipe.set(SYNCED.format(event.account_id), event.timestamp.isoformat())
                await pipe.execute()
        else:
            return False
        return True

    async def _hash(self, key: str) -> dict[str, str]:
        value = await self._redis.hgetall(key)
        return {str(k): str(v) for k, v in value.items()}

    async def price(self, symbol: str) -> dict[str, str] | None:
        return await self._hash(PRICE.format(symbol)) or None

    async def positions(self, account_id: str) -> list[Position] | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.exists(SYNCED.format(account_id))
            pipe.hgetall(POSITIONS.format(account_id))
            synced, value = await pipe.execute()
        if not synced:
            return None
        return sorted(
            (_position_decoder.decode(v) for v in value.values()), key=lambda p: (len(p.mt_ticket), p.mt_ticket)
        )

    async def epoch(self) -> str | None:
        value = await self._redis.get(EPOCH)
        return None if value is None else str(value)

    async def mark_epoch(self, value: str) -> bool:
        return bool(await self._redis.set(EPOCH, value, nx=True))

    async def balance(self, account_id: str) -> dict[str, str] | None:
        return await self._hash(BALANCE.format(account_id)) or None

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
