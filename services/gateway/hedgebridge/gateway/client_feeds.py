"""The feed registry: live events fanned out to the client sessions that subscribed to them.

One NATS subscription per subject of a feed (a topic for one account, or for every account) is shared by
every member of this gateway and reference-counted: it opens with the first member and closes with the
last. Each event is decoded and encoded once, then queued for every member that may see it (``wants``).
Which subjects serve a feed and who sees what are the pure rules of ``client_rules``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hedgebridge.common import logs
from hedgebridge.protocol import ProtocolError, encode_frame
from hedgebridge.protocol.client import EventData, Push

from . import outgoing, telemetry
from .client_rules import FeedKey, decode_feed, feed_subjects

log = logs.get("gateway")


class FeedMember(Hashable, Protocol):
    """What a feed needs of a subscriber: whether it wants an event, and its outgoing queue."""

    def wants(self, topic: str, data: EventData) -> bool: ...

    def enqueue_text(self, text: str, urgent: bool = True) -> None: ...


@dataclass(eq=False)
class Feed:
    """One set of NATS subscriptions (one per subject of the topic) shared by every member."""

    key: FeedKey
    subscriptions: list[Subscription] = field(default_factory=list)
    members: set[FeedMember] = field(default_factory=set)
    delivered: int = 0


class FeedRegistry:
    """Reference-counted shared feeds: a NATS subscription exists while at least one client needs it."""

    def __init__(self, nats: Callable[[], NatsClient]) -> None:
        self._nats = nats
        self.feeds: dict[FeedKey, Feed] = {}
        self._lock = asyncio.Lock()

    async def attach(self, key: FeedKey, member: FeedMember) -> None:
        async with self._lock:
            feed = self.feeds.get(key)
            if feed is None:
                feed = Feed(key)
                nc = self._nats()
                for subject in feed_subjects(key):
                    feed.subscriptions.append(await nc.subscribe(subject, cb=self._deliverer(feed)))
                self.feeds[key] = feed
                log.debug("feed opened", topic=key[0], account=key[1])
            feed.members.add(member)

    async def detach(self, key: FeedKey, member: FeedMember) -> None:
        async with self._lock:
            feed = self.feeds.get(key)
            if feed is None:
                return
            feed.members.discard(member)
            if not feed.members:
                del self.feeds[key]
                for sub in feed.subscriptions:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                log.debug("feed closed", topic=key[0], account=key[1])

    async def close(self) -> None:
        async with self._lock:
            feeds, self.feeds = list(self.feeds.values()), {}
            for feed in feeds:
                for sub in feed.subscriptions:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()

    def _deliverer(self, feed: Feed) -> Callable[[Msg], Any]:
        topic = feed.key[0]
        urgent = topic not in outgoing.BULK_TOPICS  # market data waits behind results (latency profile)

        async def deliver(msg: Msg) -> None:
            if not feed.members:
                return
            try:
                data = decode_feed(topic, msg.subject, msg.data)
            except ProtocolError as exc:
                log.warning("undecodable event", subject=msg.subject, error=exc.message)
                return
            text = encode_frame(Push(topic=topic, data=data)).decode()  # encoded once for every member
            feed.delivered += 1
            telemetry.frame_out("client", "PUSH", len(feed.members))
            for member in list(feed.members):
                if member.wants(topic, data):
                    member.enqueue_text(text, urgent)

        return deliver
