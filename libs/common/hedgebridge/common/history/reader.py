"""Reading one page of the history from JetStream (I/O around ``core``).

Each stream a page needs is read once (``common.stream_reads``: an ephemeral pull consumer), filtered by the
subjects ``core.plan`` chose, starting by sequence (a cursor) or by time (``since``, turned into the sequence
stored first at that time: ``stream_reads.first_seq_at``): JetStream finds the start and skips the other
subjects itself. The read takes what was stored when it began (the consumer's pending count), in batches no
larger than the page still needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

from nats.js.api import ConsumerConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from hedgebridge.common import stream_reads, streams
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

MIN_BATCH = 32


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


async def _config(js: JetStreamContext, read: Read) -> ConsumerConfig:
    start_seq = read.start_seq
    if start_seq is None and read.start_time is not None:
        start_seq = await stream_reads.first_seq_at(js, read.stream, read.start_time)
    return stream_reads.ephemeral(read.subjects, start_seq=start_seq)


async def scan(js: JetStreamContext, read: Read, head: int, keep: Callable[[Stored], HistoryEntry | None]) -> Scan:
    """Read one stream for a page (``head``: its last sequence when the page was planned)."""
    entries: list[HistoryEntry] = []
    scanned = 0
    last, last_time = (read.start_seq or 1) - 1, None

    def result(exhausted: bool) -> Scan:
        return Scan(read, entries, scanned, last, last_time, exhausted)

    def want(got: int) -> int:
        return min(read.budget - got, max(read.wanted - len(entries), MIN_BATCH))

    config = await _config(js, read)
    async with contextlib.aclosing(stream_reads.messages(js, read.stream, config, batch=want)) as found:
        async for msg in found:
            if scanned >= read.budget or len(entries) >= read.wanted:
                return result(exhausted=False)
            meta = msg.metadata
            item = Stored(read.stream, meta.sequence.stream, msg.subject, meta.timestamp, msg.data)
            if read.until is not None and item.time > read.until:
                return result(exhausted=True)
            scanned += 1
            last, last_time = item.seq, item.time
            entry = keep(item)
            if entry is not None:
                entries.append(entry)
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
