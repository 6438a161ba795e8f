"""Reading back the persisted events, pure: what a HISTORY query reads from which stream, which stored events
it keeps, in what order, and where the next page starts. No I/O: the streams' states and the stored events
come as arguments (``reader`` fetches them). The query and the types it reads are ``query``, the cursor
``cursor``; this module gives their names too.

Where the events are: OPENED, CLOSED, ORDER_RESULT, ACTION_STATE and CONFLICT in HB_EVENTS, ALERT in
HB_ALERTS (``KINDS``). One page is read as (the design choice):

- **One filtered read per stream**, only of the streams the asked types live in. The filter is the types'
  subjects, per account when the query (or a system token's scope) names accounts and the subject carries
  the account (``hb.ea.<account>.evt.opened``, ``hb.exec.result.<account>``, ``hb.alert.*.<account>``), so
  JetStream skips the other accounts' events; action states and conflicts name their accounts only in their
  data and are filtered here.
- **The start is JetStream's**: the first page starts at ``since`` (the consumer's start time, which the
  server finds in its index), a later page after the cursor's sequence; nothing before it is read.
- **A bounded read**: a stream is read until the page has ``limit`` entries from it, ``until`` is passed,
  the head (as of the read) is reached, or ``SCAN_MAX`` stored events were read. A page may therefore be
  short (or empty) with ``more`` set; the cursor always moves on, so paging ends.
- **Merged by stored time** (then stream, then sequence): an entry of one stream is only given once no
  unread event of another stream can come before it; what could is left for the next page.

The cursor holds, per stream, its epoch and the last sequence consumed. A cursor of another epoch (the stream
was created anew) is refused: start again without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hedgebridge.protocol import ActionState, ProtocolError, unpack
from hedgebridge.protocol.client import HistoryData, HistoryEntry

from .cursor import CURSOR_PREFIX, Cursor, Position, decode_cursor, encode_cursor
from .query import KINDS, STREAMS, HistoryError, Kind, Query, Visible, everything, kind_of, parse_since, subject_matches

__all__ = [  # the query and the cursor are read through this module too
    "CURSOR_PREFIX",
    "KINDS",
    "MAX_FILTERS",
    "SCAN_MAX",
    "START_MARGIN",
    "STREAMS",
    "Cursor",
    "HistoryError",
    "Keep",
    "Kind",
    "Page",
    "Position",
    "Query",
    "Read",
    "Scan",
    "Stored",
    "StreamState",
    "Visible",
    "decode_cursor",
    "encode_cursor",
    "everything",
    "kind_of",
    "page",
    "parse_since",
    "plan",
    "subject_matches",
]

SCAN_MAX = 2000  # stored events one page reads at most from one stream
MAX_FILTERS = 64  # beyond this many subjects a read takes the types' wildcards and filters here
# JetStream keeps times in nanoseconds, clients see microseconds: a read by time starts this much earlier and
# ``Keep`` applies ``since`` exactly, to the times clients see
START_MARGIN = timedelta(milliseconds=1)

# --- one page: the reads -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamState:
    """A stream as JetStream reports it: its epoch (``streams.epoch``), first and last sequence."""

    epoch: str
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class Read:
    """What to read of one stream for a page: the subjects, from where (after ``start_seq - 1``, or from
    ``start_time``, or from the start), up to ``until``, at most ``budget`` events, stopping once ``wanted``
    of them are kept. ``expired``: the cursor's next event was removed before this read."""

    stream: str
    epoch: str
    subjects: tuple[str, ...]
    start_seq: int | None
    start_time: datetime | None
    until: datetime | None
    wanted: int
    budget: int
    expired: bool = False


def plan(
    query: Query,
    scope: frozenset[str] | None,
    cursor: Mapping[str, Position],
    states: Mapping[str, StreamState],
    budget: int = SCAN_MAX,
) -> list[Read]:
    """The reads of one page. ``scope``: the accounts the reader may see (None: every one); ``states``: the
    streams the query reads (a stream absent there does not exist yet: nothing to read)."""
    narrow = query.accounts if query.accounts is not None else scope
    reads = []
    for stream in query.streams():
        state = states.get(stream)
        if state is None:
            continue
        kinds = [KINDS[t] for t in query.types if KINDS[t].stream == stream]
        filters = _filters(kinds, narrow)
        if not filters:  # no account to read (an empty filter would read every subject)
            continue
        at = cursor.get(stream)
        start_seq: int | None = None
        expired = False
        if at is not None:
            if at.epoch != state.epoch:
                raise HistoryError(
                    f"the cursor is from the history {at.epoch}, now {state.epoch}: ask again without a cursor",
                    "cursor",
                )
            if at.seq > state.last_seq:
                raise HistoryError(f"the cursor is beyond the last event of {stream} ({state.last_seq})", "cursor")
            start_seq = at.seq + 1
            expired = start_seq < state.first_seq
        reads.append(
            Read(
                stream=stream,
                epoch=state.epoch,
                subjects=filters,
                start_seq=start_seq,
                start_time=query.since - START_MARGIN if start_seq is None and query.since is not None else None,
                until=query.until,
                wanted=query.limit,
                budget=budget,
                expired=expired,
            )
        )
    return reads


def _filters(kinds: Sequence[Kind], accounts: frozenset[str] | None) -> tuple[str, ...]:
    exact: list[str] = []
    for kind in kinds:
        if accounts is None or kind.of_account is None:
            exact.append(kind.wildcard)
        else:
            exact.extend(kind.of_account(a) for a in sorted(accounts))
    if len(exact) > MAX_FILTERS:
        exact = [k.wildcard for k in kinds]
    return tuple(dict.fromkeys(exact))


# --- one page: what was read ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stored:
    """One event read from a stream."""

    stream: str
    seq: int
    subject: str
    time: datetime
    data: bytes


@dataclass(frozen=True, slots=True)
class Scan:
    """What a read found: the entries kept (``Keep``) of the ``scanned`` events read, the last sequence and
    time read (``start - 1`` and None when none), and whether it reached the stream's head or ``until`` (else
    it stopped at its budget or at ``wanted``, after at least one event)."""

    read: Read
    entries: list[HistoryEntry]
    scanned: int
    last_seq: int
    last_time: datetime | None
    exhausted: bool


class Keep:
    """Which stored events a query keeps: of its types and accounts, within its times, visible to the
    reader. ``undecodable`` counts what could not be read (left out)."""

    def __init__(self, query: Query, visible: Visible) -> None:
        self.query = query
        self.visible = visible
        self.undecodable = 0

    def __call__(self, stored: Stored) -> HistoryEntry | None:
        kind = kind_of(stored.subject)
        if kind is None or kind.name not in self.query.types:
            return None
        if self.query.since is not None and stored.time < self.query.since:
            return None
        if self.query.until is not None and stored.time > self.query.until:
            return None
        try:
            data = unpack(stored.data, kind.message)
        except ProtocolError:
            self.undecodable += 1
            return None
        subject_account = None if kind.account_token is None else stored.subject.split(".")[kind.account_token]
        accounts = _accounts(subject_account, data)
        if self.query.accounts is not None and self.query.accounts.isdisjoint(accounts):
            return None
        if not self.visible(kind.topic, subject_account, data):
            return None
        return HistoryEntry(
            time=stored.time, stream=stored.stream, seq=stored.seq, type=kind.name, accounts=accounts, data=data
        )


def _accounts(subject_account: str | None, data: HistoryData) -> list[str]:
    if subject_account is not None:
        return [subject_account]
    if isinstance(data, ActionState):
        return list(data.account_ids)
    return [data.account_id] if data.account_id else []


@dataclass(frozen=True, slots=True)
class Page:
    entries: list[HistoryEntry]
    cursor: Cursor
    more: bool
    scanned: int
    expired: bool


def _order(entry: HistoryEntry) -> tuple[datetime, int, int]:
    return entry.time, STREAMS.index(entry.stream), entry.seq


def page(query: Query, cursor: Mapping[str, Position], scans: Iterable[Scan]) -> Page:
    """The page the scans make: their entries merged in order, at most ``query.limit``, and the cursor after
    them."""
    scans = list(scans)
    # an unread event of a stream that stopped early comes after its last read one: nothing of another
    # stream at or after that point may be given yet
    bounds = {
        scan.read.stream: (scan.last_time, STREAMS.index(scan.read.stream))
        for scan in scans
        if not scan.exhausted and scan.last_time is not None
    }
    eligible = [
        e
        for scan in scans
        for e in scan.entries
        if all((e.time, STREAMS.index(e.stream)) < bound for s, bound in bounds.items() if s != e.stream)
    ]
    given = sorted(eligible, key=_order)[: query.limit]
    given_ids = {(e.stream, e.seq) for e in given}
    next_cursor: Cursor = dict(cursor)
    more = False
    for scan in scans:
        left = [e for e in scan.entries if (e.stream, e.seq) not in given_ids]
        last = left[0].seq - 1 if left else scan.last_seq
        next_cursor[scan.read.stream] = Position(scan.read.epoch, last)
        more = more or bool(left) or not scan.exhausted
    return Page(
        entries=given,
        cursor=next_cursor,
        more=more,
        scanned=sum(scan.scanned for scan in scans),
        expired=any(scan.read.expired for scan in scans),
    )
