"""Reading a stretch of a JetStream stream once (I/O): the history pages, a topic's replay, the executor's
search for orders nobody owns.

Each read is an ephemeral pull consumer in memory, without acknowledgements, filtered by subjects, starting by
sequence, by time or at the start; it is deleted when the read ends (and by JetStream after ``INACTIVE_S`` if
the reading process dies first). A read takes what was stored when it began (the consumer's pending count), in
batches whose size the reader may choose before each one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import datetime

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

BATCH = 256
INACTIVE_S = 30.0
FETCH_TIMEOUT_S = 5.0


def ephemeral(
    subjects: Sequence[str], *, start_seq: int | None = None, start_time: datetime | None = None
) -> ConsumerConfig:
    """The consumer of one read of ``subjects``: from ``start_seq`` (it wins over ``start_time``), else from
    ``start_time``, else from the start."""
    if start_seq is not None:
        policy = DeliverPolicy.BY_START_SEQUENCE
    elif start_time is not None:
        policy = DeliverPolicy.BY_START_TIME
    else:
        policy = DeliverPolicy.ALL
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        inactive_threshold=INACTIVE_S,
        mem_storage=True,
        num_replicas=1,
        deliver_policy=policy,
        opt_start_seq=start_seq,
        opt_start_time=start_time if start_seq is None else None,
    )
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = list(subjects)
    return config


async def first_seq_at(js: JetStreamContext, stream: str, when: datetime) -> int:
    """The sequence of the stream's first message stored at ``when`` or later (the last sequence plus one when
    none is), found by an unfiltered consumer: a consumer with several subject filters that starts by time may
    skip its first messages (nats-server 2.15), so filtered reads by time start by this sequence instead.

    JetStream places a consumer started by time on that message, and its info reports the sequence before it as
    delivered. Counting back from the last sequence by the consumer's pending count would not do: messages
    removed after ``when`` (a key's older revision in a bucket that keeps one, a subject's in a stream that
    keeps its last) leave gaps that count in the sequences but not in the pending messages, so that count
    would start past the first message by as many gaps (and an order's first record, followed by other
    orders' final ones, would never be read)."""
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        inactive_threshold=INACTIVE_S,
        mem_storage=True,
        num_replicas=1,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=when,
    )
    info = await js.add_consumer(stream, config)
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, info.name)
    delivered = info.delivered.stream_seq if info.delivered is not None else None
    return int(delivered or 0) + 1


async def pending(js: JetStreamContext, stream: str, config: ConsumerConfig) -> int:
    """How many stored messages a read with ``config`` would take (the consumer is deleted at once)."""
    info = await js.add_consumer(stream, config)
    with contextlib.suppress(Exception):
        await js.delete_consumer(stream, info.name)
    return int(info.num_pending or 0)


async def messages(
    js: JetStreamContext,
    stream: str,
    config: ConsumerConfig,
    *,
    batch: Callable[[int], int] | None = None,
    room: Callable[[], Awaitable[None]] | None = None,
) -> AsyncGenerator[Msg, None]:
    """The messages stored when the read began, in the stream's order. ``batch(read so far)`` sizes each
    fetch (at most what is left; ``BATCH`` when None); ``room`` is awaited before each fetch. A reader that
    stops early closes the iterator (``contextlib.aclosing``) so that the consumer is deleted at once."""
    info = await js.add_consumer(stream, config)
    left = int(info.num_pending or 0)
    sub = await js.pull_subscribe_bind(consumer=info.name, stream=stream)
    try:
        got = 0
        while got < left:
            if room is not None:
                await room()
            want = min(left - got, BATCH if batch is None else max(1, batch(got)))
            try:
                fetched = await sub.fetch(want, timeout=FETCH_TIMEOUT_S)
            except NatsTimeoutError:
                return  # what was pending is gone (removed while read)
            for msg in fetched:
                got += 1
                yield msg
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, info.name)
