"""Reading a topic's history from JetStream (I/O): a stream's state, how many events of some subjects follow
a sequence, and the events themselves, in the stream's order.

Each read is an ephemeral pull consumer in memory, without acknowledgements, deleted when the read ends (and
by JetStream after ``INACTIVE_S`` if this process dies first). A read takes the events that were stored when
it began (the consumer's pending count), in batches, waiting for ``room`` before each batch so that a long
replay never fills the client's queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from hedgebridge.common import streams

from .stream_rules import History

BATCH = 256
INACTIVE_S = 30.0
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Stored:
    """One event read from a stream."""

    seq: int
    subject: str
    data: bytes


async def history(js: JetStreamContext, stream: str) -> History:
    info = await js.stream_info(stream)
    return History(streams.epoch(info), info.state.first_seq, info.state.last_seq)


def _config(subjects: tuple[str, ...], start_seq: int | None) -> ConsumerConfig:
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        inactive_threshold=INACTIVE_S,
        mem_storage=True,
        num_replicas=1,
        deliver_policy=DeliverPolicy.ALL if start_seq is None else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start_seq,
    )
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = list(subjects)
    return config


async def count(js: JetStreamContext, stream: str, subjects: tuple[str, ...], start_seq: int) -> int:
    """How many events of ``subjects`` the stream holds from ``start_seq`` on."""
    info = await js.add_consumer(stream, _config(subjects, max(start_seq, 1)))
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, info.name)
    return int(info.num_pending or 0)


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
    info = await js.add_consumer(stream, _config(subjects, None if start_seq is None else max(start_seq, 1)))
    pending = int(info.num_pending or 0)
    sub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
    try:
        got = 0
        while got < pending:
            if room is not None:
                await room()
            try:
                batch = await sub.fetch(min(BATCH, pending - got), timeout=FETCH_TIMEOUT_S)
            except NatsTimeoutError:
                return  # what was pending is gone (expired while read): the reader's check saw the rest
            for msg in batch:
                got += 1
                seq = msg.metadata.sequence.stream
                if upto is not None and seq > upto:
                    return
                yield Stored(seq, msg.subject, msg.data)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, info.name)
