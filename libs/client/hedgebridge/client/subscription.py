"""A subscription to live events: the events it takes (``wanted``, pure) and the queue its reader drains.

Besides events, a subscription is told how its stream goes (``Notice``): CAUGHT_UP when a topic's start
(history, snapshot) is complete, RESYNC when the history did not reach back to the client's cursor (events
may be missing; a fresh start follows), and ``Reconnected`` when the client connected again and resumed.
``async for push in subscription`` yields the events only (the notices are kept in ``notices``);
``subscription.items()`` yields both, in the order they came.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from hedgebridge.protocol.client import CaughtUp, Push, Resync

from .errors import ClientError, SlowSubscriber


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The connection ended (``close_code``, ``close_reason``) and the client connected again after
    ``attempts`` attempts; every topic resumes from its cursor (CAUGHT_UP or RESYNC follow)."""

    close_code: int | None
    close_reason: str
    attempts: int


Notice = CaughtUp | Resync | Reconnected


def wanted(push: Push, topics: list[str], accounts: frozenset[str] | None) -> bool:
    """Whether a subscription of ``topics`` for ``accounts`` (None: every account) takes ``push``; an event
    that names no account goes to every subscription of its topic."""
    if push.topic not in topics:
        return False
    account = getattr(push.data, "account_id", None)
    named = account if isinstance(account, str) and account else None
    return accounts is None or named is None or named in accounts


class Subscription:
    """Live events of some topics: ``async for push in subscription``. Ends (StopAsyncIteration) after
    ``close()``; raises ``ConnectionLost`` when the connection ends for good and ``SlowSubscriber`` when more
    than ``queue_max`` events waited unread."""

    def __init__(
        self,
        forget: Callable[[Subscription], Awaitable[None]],
        topics: list[str],
        accounts: list[str] | None,
        queue_max: int,
    ) -> None:
        self._forget = forget  # the client stops the topics no other subscription uses
        self.topics = topics
        self.accounts = accounts  # as the gateway resolved them (None: every account the token may see)
        self.notices: list[Notice] = []  # every notice, also when only events are read
        self._wanted = None if accounts is None else frozenset(accounts)
        self._queue_max = queue_max
        self._queue: asyncio.Queue[Push | Notice | ClientError | None] = asyncio.Queue()
        self._ended = False

    def _offer(self, push: Push) -> None:
        if self._ended or not wanted(push, self.topics, self._wanted):
            return
        if self._queue.qsize() >= self._queue_max:
            self._end(SlowSubscriber(self._queue_max))
            return
        self._queue.put_nowait(push)

    def _notice(self, notice: Notice) -> None:
        if self._ended or (not isinstance(notice, Reconnected) and notice.topic not in self.topics):
            return
        self.notices.append(notice)
        self._queue.put_nowait(notice)

    def _end(self, reason: ClientError | None) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(reason)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Push:
        while True:
            item = await self._item()
            if isinstance(item, Push):
                return item

    async def _item(self) -> Push | Notice:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            raise StopAsyncIteration
        if isinstance(item, ClientError):
            self._queue.put_nowait(item)
            raise item
        return item

    async def items(self) -> AsyncIterator[Push | Notice]:
        """Events and notices, in the order they came."""
        while True:
            try:
                yield await self._item()
            except StopAsyncIteration:
                return

    async def next(self, timeout_s: float | None = None) -> Push:
        """The next event, waiting at most ``timeout_s`` (TimeoutError)."""
        async with asyncio.timeout(timeout_s):
            return await self.__anext__()

    async def next_item(self, timeout_s: float | None = None) -> Push | Notice:
        """The next event or notice, waiting at most ``timeout_s`` (TimeoutError)."""
        async with asyncio.timeout(timeout_s):
            return await self._item()

    async def close(self) -> None:
        """Stop this subscription (the gateway is told to stop topics no other subscription uses)."""
        if self._ended:
            return
        self._end(None)
        await self._forget(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
