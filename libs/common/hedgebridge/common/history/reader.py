"""Reading one page of the history from JetStream (I/O around ``core``).

Each stream a page needs is read by one ephemeral pull consumer (in memory, no acknowledgements, deleted when
the read ends and by JetStream after ``INACTIVE_S`` if this process dies first), filtered by the subjects
``core.plan`` chose, starting by sequence (a cursor) or by time (``since``): JetStream finds the start and
skips the other subjects itself. The read takes what was stored when it began (the consumer's pending count),
in batches no larger than the page still needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from hedgebridge.common import streams
from hedgebridge.protocol.client import HistoryEntry

from .core import (
    SCAN_MAX,
    Keep,
    Page,
    Position,
    Query,
    Read,
    Scan,
    Stored,
    StreamState,
    Visible,
    everything,
    page,
    plan,
)

BATCH = 256
MIN_BATCH = 32
INACTIVE_S = 30.0
FETCH_TIMEOUT_S = 5.0


async def states(js: JetStreamContext, names: Iterable[str]) -> dict[str, StreamState]:
    """The streams of ``names`` that exist, as JetStream reports them."""
    found: dict[str, StreamState] = {}
    for name in names:
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            continue
        found[name] = StreamState(streams.epoch(info), info.state.first_seq, info.state.last_seq)
    return found


def _config(read: Read) -> ConsumerConfig:
    if read.start_seq is not None:
        policy = DeliverPolicy.BY_START_SEQUENCE
    elif read.start_time is not None:
        policy = DeliverPolicy.BY_START_TIME
    else:
        policy = DeliverPolicy.ALL
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        inactive_threshold=INACTIVE_S,
        mem_storage=True,
        num_replicas=1,
        deliver_policy=policy,
        opt_start_seq=read.start_seq,
        opt_start_time=read.start_time if read.start_seq is None else None,
    )
    if len(read.subjects) == 1:
        config.filter_subject = read.subjects[0]
    else:
        config.filter_subjects = list(read.subjects)
    return config


async def scan(js: JetStreamContext, read: Read, head: int, keep: Callable[[Stored], HistoryEntry | None]) -> Scan:
    """Read one stream for a page (``head``: its last sequence when the page was planned)."""
    info = await js.add_consumer(read.stream, _config(read))
    pending = int(info.num_pending or 0)
    entries: list[HistoryEntry] = []
    scanned = 0
    last, last_time = (read.start_seq or 1) - 1, None

    def result(exhausted: bool) -> Scan:
        return Scan(read, entries, scanned, last, last_time, exhausted)

    sub = await js.pull_subscribe_bind(consumer=info.name, stream=read.stream)
    try:
        while scanned < pending:
            if scanned >= read.budget or len(entries) >= read.wanted:
                return result(exhausted=False)
            want = min(BATCH, pending - scanned, read.budget - scanned, max(read.wanted - len(entries), MIN_BATCH))
            try:
                batch = await sub.fetch(want, timeout=FETCH_TIMEOUT_S)
            except NatsTimeoutError:  # what was pending is gone (expired while read)
                break
            for msg in batch:
                meta = msg.metadata
                item = Stored(read.stream, meta.sequence.stream, msg.subject, meta.timestamp, msg.data)
                if read.until is not None and item.time > read.until:
                    return result(exhausted=True)
                scanned += 1
                last, last_time = item.seq, item.time
                entry = keep(item)
                if entry is not None:
                    entries.append(entry)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(read.stream, info.name)
    # every event stored when the read began was read: the page has seen the stream up to its head
    if read.until is None:
        last = max(last, head)
    return result(exhausted=True)


async def read_page(
    js: JetStreamContext,
    query: Query,
    cursor: Mapping[str, Position],
    *,
    scope: frozenset[str] | None = None,
    visible: Visible | None = None,
    budget: int = SCAN_MAX,
) -> Page:
    """One page of ``query`` after ``cursor``, for a reader who sees ``scope`` (None: every account) and what
    ``visible`` allows (everything when None). Raises ``core.HistoryError`` for a cursor it cannot follow."""
    found = await states(js, query.streams())
    reads = plan(query, scope, cursor, found, budget)
    keep = Keep(query, visible or everything)
    scans = [await scan(js, read, found[read.stream].last_seq, keep) for read in reads]
    return page(query, cursor, scans)
