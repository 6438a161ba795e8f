"""The feed registry: live events fanned out to the client sessions that subscribed to them.

A feed (a topic for one account, or for every account) is shared by every member of this gateway and
reference-counted: its subscriptions open with the first member and close with the last. Each event is
decoded and encoded once, to the WebSocket frame's bytes (``outgoing.wire``), then offered to every member (a
member keeps what its client may see, by queueing those bytes).

- Latest-wins and snapshot topics (prices, positions, balances, terminals, monitor, the CONSISTENCY status)
  are core NATS subscriptions, one per subject of the feed.
- STREAM topics (trades, orders, actions, conflicts, alerts) are read from their JetStream stream by one
  ordered consumer per topic for every account (``stream_rules.STREAM_SOURCES``), so every event carries its
  stream sequence and the stream's epoch, and none is lost to a reconnect (the consumer is recreated after
  the last sequence it delivered); a sequence at or below the last one delivered is never delivered again.
Which subjects serve a feed and who sees what are the pure rules of ``client_rules`` and ``stream_rules``.
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
from nats.js.api import ConsumerConfig, DeliverPolicy

from hedgebridge.common import logs, streams
from hedgebridge.protocol import ProtocolError, encode_frame
from hedgebridge.protocol.client import EventData, Push

from . import outgoing, telemetry
from .client_rules import ANY, FeedKey, decode_feed, feed_subjects
from .stream_rules import STREAM_SOURCES, Source, subject_account

log = logs.get("gateway")
TAP_HEARTBEAT_S = 1.0  # a stream feed that hears nothing for two of these is recreated after its last event


class FeedMember(Hashable, Protocol):
    """What a feed needs of a subscriber: to be offered each event (it keeps what its client may see)."""

    def offer(
        self, topic: str, account: str | None, data: EventData, seq: int | None, frame: bytes, urgent: bool
    ) -> None: ...


@dataclass(eq=False)
class Feed:
    """The subscriptions of one feed (core subjects and/or one stream consumer), shared by every member."""

    key: FeedKey
    subscriptions: list[Subscription] = field(default_factory=list)
    members: set[FeedMember] = field(default_factory=set)
    delivered: int = 0
    epoch: str | None = None  # a stream feed's: the stream's history
    last_seq: int = 0  # a stream feed's: the last sequence delivered (or the stream's head when it opened)


class FeedRegistry:
    """Reference-counted shared feeds: the subscriptions exist while at least one client needs them."""

    def __init__(self, nats: Callable[[], NatsClient]) -> None:
        self._nats = nats
        self.feeds: dict[FeedKey, Feed] = {}
        self._lock = asyncio.Lock()

    async def attach(self, key: FeedKey, member: FeedMember) -> Feed:
        """Join ``member`` to the feed (opened first when it is the first member). Once this returns, every
        event of the feed stored or published from then on is offered to it."""
        async with self._lock:
            feed = self.feeds.get(key)
            if feed is None:
                feed = Feed(key)
                try:
                    await self._open(feed)
                except BaseException:
                    await _close(feed)
                    raise
                self.feeds[key] = feed
                log.debug("feed opened", topic=key[0], account=key[1])
            feed.members.add(member)
            return feed

    async def _open(self, feed: Feed) -> None:
        nc = self._nats()
        for subject in feed_subjects(feed.key):
            feed.subscriptions.append(await nc.subscribe(subject, cb=self._deliverer(feed, numbered=False)))
        topic, account = feed.key
        source = STREAM_SOURCES.get(topic)
        if source is not None and account == ANY:
            await self._tap(feed, source)

    async def _tap(self, feed: Feed, source: Source) -> None:
        """The stream consumer of a STREAM topic: ordered, in memory, from the stream's head on."""
        js = self._nats().jetstream()
        info = await js.stream_info(source.stream)
        feed.epoch, feed.last_seq = streams.epoch(info), info.state.last_seq
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=feed.last_seq + 1)
        if len(source.subjects) > 1:
            config.filter_subjects = list(source.subjects)
        sub = await js.subscribe(
            source.subjects[0],
            stream=source.stream,
            config=config,
            cb=self._deliverer(feed, numbered=True),
            ordered_consumer=True,
            idle_heartbeat=TAP_HEARTBEAT_S,
        )
        # nats-py recreates an ordered consumer after the last stream sequence it delivered (0 before the first
        # event: it would start again at 1, and the events up to the head would be read only to be dropped)
        jsi = getattr(getattr(sub, "_sub", None), "_jsi", None)
        if jsi is not None and hasattr(jsi, "_sseq"):
            jsi._sseq = feed.last_seq
        feed.subscriptions.append(sub)

    async def detach(self, key: FeedKey, member: FeedMember) -> None:
        async with self._lock:
            feed = self.feeds.get(key)
            if feed is None:
                return
            feed.members.discard(member)
            if not feed.members:
                del self.feeds[key]
                await _close(feed)
                log.debug("feed closed", topic=key[0], account=key[1])

    async def close(self) -> None:
        async with self._lock:
            feeds, self.feeds = list(self.feeds.values()), {}
            for feed in feeds:
                await _close(feed)

    def _deliverer(self, feed: Feed, *, numbered: bool) -> Callable[[Msg], Any]:
        topic, key_account = feed.key
        urgent = topic not in outgoing.BULK_TOPICS  # market data waits behind results (latency profile)

        async def deliver(msg: Msg) -> None:
            seq: int | None = None
            if numbered:  # a stream consumer's event: its stream sequence numbers it
                seq = msg.metadata.sequence.stream
                if seq <= feed.last_seq:
                    return
                feed.last_seq = seq
            if not feed.members:
                return
            try:
                data = decode_feed(topic, msg.subject, msg.data)
            except ProtocolError as exc:
                log.warning("undecodable event", subject=msg.subject, error=exc.message)
                return
            epoch = feed.epoch if seq is not None else None
            frame = outgoing.wire(encode_frame(Push(topic=topic, data=data, epoch=epoch, seq=seq)))  # once for all
            account = key_account if key_account != ANY else subject_account(topic, msg.subject)
            feed.delivered += 1
            telemetry.frame_out("client", "PUSH", len(feed.members))
            for member in list(feed.members):
                member.offer(topic, account, data, seq, frame, urgent)

        return deliver


async def _close(feed: Feed) -> None:
    for sub in feed.subscriptions:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
