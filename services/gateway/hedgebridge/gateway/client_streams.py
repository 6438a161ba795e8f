"""The start of the topics a client SUBSCRIBEs to in stream mode (``resume`` or ``recent``), after SUBSCRIBED.

Before the topic's feed is joined, the session holds a ``Handover`` for it, so live events wait there; then
each topic starts (concurrently):

- STREAM: the stream's history is read (``replay.history``); a cursor it cannot honour (``check_cursor``,
  ``too_far_behind``) is answered with RESYNC and the topic's last ``RESYNC_RECENT`` events (or ``recent``
  when it asks more); a valid cursor gets every event after it; ``recent`` N without a cursor the last N.
  The events replayed are those stored up to the head read first; the hand-over releases the live events
  after it, then CAUGHT_UP carries the cursor (epoch, the last sequence sent or the head).
- SNAPSHOT: the last event of every account (HB_SNAPSHOTS), then the live events kept, then CAUGHT_UP. The
  stream is in memory: after a restart of NATS it is created again (here, and by the gateway when it
  reconnects) and holds each account's state again from its next report.
- LATEST: CAUGHT_UP at once (latest wins: nothing to replay).

A history that cannot be read (JetStream unavailable) ends the connection with an ERROR and 1013: the client
reconnects and resumes from its last sequence, so nothing is skipped silently.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from hedgebridge.common import logs, streams
from hedgebridge.common.auth import Principal
from hedgebridge.common.obs import metrics
from hedgebridge.protocol import Message, ProtocolError, encode_frame, errors
from hedgebridge.protocol.client import RESYNC_RECENT, TOPIC_DELIVERY, CaughtUp, Push, Resync, Subscribe
from hedgebridge.protocol.errors import CloseCode

from . import outgoing, replay
from .client_rules import Refusal, decode_feed, sees
from .config import GatewayConfig
from .handover import CaughtUpMark, Handover
from .replay import Stored
from .stream_rules import (
    SNAPSHOT_SOURCES,
    STREAM_SOURCES,
    Gap,
    History,
    RecentSearch,
    Source,
    check_cursor,
    replay_subjects,
    subject_account,
    too_far_behind,
)

log = logs.get("gateway")
STREAM_UNAVAILABLE = "stream unavailable"


class StreamClient(Protocol):
    """What a topic's start needs of the client session."""

    principal: Principal
    config: GatewayConfig
    queue: outgoing.OutgoingQueue
    selections: dict[str, frozenset[str] | None]
    handovers: dict[str, Handover[str]]
    session_id: str

    @property
    def nats(self) -> NatsClient: ...

    def enqueue_text(self, text: str, urgent: bool = True) -> None: ...

    def enqueue(self, message: Message, urgent: bool = True) -> None: ...

    def error(self, refusal: Refusal, *, ref_type: str | None = None, ref_id: str | None = None) -> None: ...

    def retire(self, code: int, reason: str) -> None: ...


async def start_topics(client: StreamClient, frame: Subscribe, topics: Iterable[str]) -> None:
    """Start every topic of a stream-mode SUBSCRIBE (the handovers exist, the feeds are joined), each on its
    own: a long replay of one topic does not hold back the live events of another."""
    await asyncio.gather(*(_start_one(client, frame, topic) for topic in topics))


async def _start_one(client: StreamClient, frame: Subscribe, topic: str) -> None:
    handover = client.handovers.get(topic)
    if handover is None:  # unsubscribed meanwhile
        return
    try:
        await _start(client, frame, topic, handover)
    except Exception as exc:
        if client.handovers.get(topic) is not handover:
            return
        log.warning("stream start failed", session=client.session_id, topic=topic, error=repr(exc))
        client.error(
            Refusal(
                errors.NATS_UNREACHABLE,
                f"the history of {topic} could not be read ({type(exc).__name__}); reconnect and resume",
            ),
            ref_type="SUBSCRIBE",
            ref_id=frame.request_id,
        )
        client.retire(CloseCode.TRY_AGAIN_LATER, STREAM_UNAVAILABLE)


async def _start(client: StreamClient, frame: Subscribe, topic: str, handover: Handover[str]) -> None:
    delivery = TOPIC_DELIVERY[topic]
    if delivery == "LATEST":
        _release(client, frame, topic, handover, handover.finish(None), epoch=None)
        return
    selection = client.selections.get(topic)
    accounts = selection if selection is not None or client.principal.is_admin else client.principal.accounts
    js = client.nats.jetstream()
    if delivery == "SNAPSHOT":
        source = SNAPSHOT_SOURCES[topic]
        events = replay.read(js, source.stream, replay_subjects(topic, source, accounts), start_seq=None)
        try:
            async for stored in _room(client, events):
                text = _render(client, topic, stored, None)
                if text is not None:
                    _send(client, topic, handover.replayed(None, text))
        except NotFoundError:  # in memory: a restarted NATS lost it; no snapshot is known until it is back
            log.warning("no snapshots stream", session=client.session_id, topic=topic)
            await streams.ensure_present(js, streams.snapshots_stream(client.config.stream_replicas))
        marks = handover.finish(None)
        _release(client, frame, topic, handover, marks, epoch=None, snapshot=handover.replayed_count)
        return
    source = STREAM_SOURCES[topic]
    history = await replay.history(js, source.stream)
    filters = replay_subjects(topic, source, accounts)
    cursor = {str(t): c for t, c in (frame.resume or {}).items()}.get(topic)
    gap: Gap | None = None
    if cursor is not None:
        gap = check_cursor(cursor, history)
        if gap is None:
            pending = await replay.count(js, source.stream, filters, cursor.seq + 1)
            gap = too_far_behind(pending, client.config.client_replay_max)
    if cursor is not None and gap is None:
        handover.resume_after(cursor.seq)
        events = replay.read(js, source.stream, filters, start_seq=cursor.seq + 1, upto=history.last_seq)
        async for stored in _room(client, events):
            text = _render(client, topic, stored, history.epoch)
            if text is not None:
                _send(client, topic, handover.replayed(stored.seq, text))
    else:
        if gap is not None:
            metrics.CLIENT_RESYNCS.labels(gap.reason).inc()
            log.info("client resync", session=client.session_id, topic=topic, reason=gap.reason)
            client.enqueue(
                Resync(
                    request_id=frame.request_id,
                    topic=topic,
                    reason=gap.reason,
                    message=gap.message,
                    epoch=history.epoch,
                    first_seq=history.first_seq,
                ),
                topic not in outgoing.BULK_TOPICS,
            )
        wanted = frame.recent or 0
        if gap is not None:  # the fresh start of a topic whose history is gone: its most recent events
            wanted = max(wanted, RESYNC_RECENT)
        for seq, text in await _recent(client, topic, source, filters, history, wanted):
            _send(client, topic, handover.replayed(seq, text))
    metrics.CLIENT_REPLAYED.inc(handover.replayed_count)
    _release(client, frame, topic, handover, handover.finish(history.last_seq), epoch=history.epoch)


async def _recent(
    client: StreamClient, topic: str, source: Source, filters: tuple[str, ...], history: History, wanted: int
) -> list[tuple[int, str]]:
    """The last ``wanted`` events of the topic the client may see (at most: events it may not see count in the
    search but are left out), oldest first."""
    search = RecentSearch(history, wanted, client.config.client_replay_max)
    if search.done:
        return []
    js = client.nats.jetstream()
    while not search.done:
        search.counted(await replay.count(js, source.stream, filters, search.start))
    last: collections.deque[tuple[int, str]] = collections.deque(maxlen=wanted)
    events = replay.read(js, source.stream, filters, start_seq=search.start, upto=history.last_seq)
    async for stored in events:
        text = _render(client, topic, stored, history.epoch)
        if text is not None:
            last.append((stored.seq, text))
    return list(last)


async def _room(client: StreamClient, events: AsyncIterator[Stored]) -> AsyncIterator[Stored]:
    """The events, each once the client's queue is at most half its high-water mark."""
    async for stored in events:
        await client.queue.wait_below(client.queue.high_water // 2)
        yield stored


def _render(client: StreamClient, topic: str, stored: Stored, epoch: str | None) -> str | None:
    """An event read from a stream as the EVENT frame the client gets (None: not for this client)."""
    try:
        data = decode_feed(topic, stored.subject, stored.data)
    except ProtocolError as exc:
        log.warning("undecodable stored event", subject=stored.subject, seq=stored.seq, error=exc.message)
        return None
    if not sees(client.principal, client.selections.get(topic), topic, subject_account(topic, stored.subject), data):
        return None
    seq = stored.seq if epoch is not None else None
    return encode_frame(Push(topic=topic, data=data, epoch=epoch, seq=seq)).decode()


def _send(client: StreamClient, topic: str, texts: list[str]) -> None:
    urgent = topic not in outgoing.BULK_TOPICS
    for text in texts:
        client.enqueue_text(text, urgent)


def _release(
    client: StreamClient,
    frame: Subscribe,
    topic: str,
    handover: Handover[str],
    items: list[str | CaughtUpMark],
    *,
    epoch: str | None,
    snapshot: int = 0,
) -> None:
    """The live events the hand-over kept, then CAUGHT_UP."""
    if client.handovers.get(topic) is not handover:
        return
    for item in items:
        if isinstance(item, CaughtUpMark):
            caught_up = CaughtUp(
                request_id=frame.request_id,
                topic=topic,
                epoch=epoch,
                seq=item.seq if epoch is not None else None,
                replayed=item.replayed if epoch is not None else 0,
                snapshot=snapshot,
            )
            client.enqueue(caught_up, topic not in outgoing.BULK_TOPICS)  # after the topic's own events
        else:
            _send(client, topic, [item])
