"""The terminal events waiting to be written to the realtime cache (sans-I/O: no asyncio, no server).

The executor's reader adds every cache event here and never waits for the cache; one writer takes what
waits and writes it in one pipeline (``RedisCache.apply_many``). What a key holds is always the latest event
for it (a price per symbol, a balance or a positions snapshot per account), so events for one key may be
coalesced, latest wins, without changing what the cache ends up holding:

- ``coalesce`` (the throughput profile): a new event replaces the one waiting for its key, counted in
  ``coalesced``; under load the cache gets each key's latest event once per write.
- otherwise (the latency profile) every event is written, in order; only when ``limit`` events wait (the
  cache is far slower than the terminals) are the waiting ones coalesced, and counted, the same way.
"""

from __future__ import annotations

from collections.abc import Hashable

from hedgebridge.protocol import AccountUpdate, Event, PositionUpdate, PriceTick

CacheEvent = PriceTick | AccountUpdate | PositionUpdate


def cache_key(event: Event) -> Hashable | None:
    """The cache key an event replaces (None: the event carries nothing for the cache)."""
    if isinstance(event, PriceTick):
        return ("price", event.symbol)
    if isinstance(event, AccountUpdate):
        return ("balance", event.account_id)
    if isinstance(event, PositionUpdate):
        return ("positions", event.account_id)
    return None


class PendingWrites:
    def __init__(self, *, coalesce: bool, limit: int = 10_000) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self.coalesce = coalesce
        self.limit = limit
        self.coalesced = 0  # events replaced by a later one for the same key before they were written
        self._latest: dict[Hashable, CacheEvent] = {}
        self._in_order: list[CacheEvent] = []

    def __len__(self) -> int:
        return len(self._latest) + len(self._in_order)

    def add(self, event: Event) -> bool:
        """Queue ``event`` for the cache; False when it carries nothing for the cache."""
        key = cache_key(event)
        if key is None:
            return False
        assert isinstance(event, CacheEvent)
        if self.coalesce:
            if self._latest.pop(key, None) is not None:
                self.coalesced += 1
            self._latest[key] = event
            return True
        self._in_order.append(event)
        if len(self._in_order) >= self.limit:
            self._compact()
        return True

    def _compact(self) -> None:
        latest: dict[Hashable, CacheEvent] = {}
        for event in self._in_order:
            latest.pop(cache_key(event), None)  # a later event goes after the earlier ones of other keys
            latest[cache_key(event)] = event
        self.coalesced += len(self._in_order) - len(latest)
        self._in_order = list(latest.values())

    def take(self) -> list[CacheEvent]:
        """Everything waiting, in the order it is to be written; the queue is empty afterwards."""
        if self.coalesce:
            taken, self._latest = list(self._latest.values()), {}
        else:
            taken, self._in_order = self._in_order, []
        return taken
