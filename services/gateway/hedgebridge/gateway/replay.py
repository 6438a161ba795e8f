"""Reading a topic's history from JetStream (I/O): a stream's state, how many events of some subjects follow
a sequence, and the events themselves, in the stream's order (one read of ``common.stream_reads`` each),
waiting for ``room`` before each batch so that a long replay never fills the client's queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from nats.js.client import JetStreamContext

from hedgebridge.common import stream_reads, streams

from .stream_rules import History


@dataclass(frozen=True, slots=True)
class Stored:
    """One event read from a stream."""

    seq: int
    subject: str
    data: bytes


async def history(js: JetStreamContext, stream: str) -> History:
    info = await js.stream_info(stream)
    return History(streams.epoch(info), info.state.first_seq, info.state.last_seq)


async def count(js: JetStreamContext, stream: str, subjects: tuple[str, ...], start_seq: int) -> int:
    """How many events of ``subjects`` the stream holds from ``start_seq`` on."""
    return await stream_reads.pending(js, stream, stream_reads.ephemeral(subjects, start_seq=max(start_seq, 1)))


async def read(
    js: JetStreamContext,
    stream: str,
    subjects: tuple[str, ...],
    *,
    start_seq: int | None,
    upto: int | None = None,
    room: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[Stored]:
    """The events of ``subjects`` from ``start_seq`` (every one when None) up to ``upto`` (included; None:
    all that were stored when the read began)."""
    if start_seq is not None and upto is not None and start_seq > upto:
        return
    config = stream_reads.ephemeral(subjects, start_seq=None if start_seq is None else max(start_seq, 1))
    async with contextlib.aclosing(stream_reads.messages(js, stream, config, room=room)) as found:
        async for msg in found:
            seq = msg.metadata.sequence.stream
            if upto is not None and seq > upto:
                return
            yield Stored(seq, msg.subject, msg.data)
