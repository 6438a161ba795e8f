"""Reading back the persisted events, pure: what a HISTORY query reads from which stream, which stored events
it keeps, in what order, and where the next page starts. No I/O: the streams' states and the stored events
come as arguments (``reader`` fetches them).

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

The cursor (``h1.`` + base64url JSON) holds, per stream, its epoch and the last sequence consumed. A cursor
of another epoch (the stream was created anew) is refused: start again without it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hedgebridge.protocol import (
    ActionState,
    Alert,
    ClosedEvent,
    Conflict,
    ModifiedEvent,
    OpenedEvent,
    OrderResult,
    ProtocolError,
    subjects,
    unpack,
)
from hedgebridge.protocol.client import HISTORY_TYPES, HistoryData, HistoryEntry, HistoryRequest, HistoryType

SCAN_MAX = 2000  # stored events one page reads at most from one stream
MAX_FILTERS = 64  # beyond this many subjects a read takes the types' wildcards and filters here
STREAMS = (subjects.EVENTS_STREAM, subjects.ALERTS_STREAM)  # the order of equal times
CURSOR_PREFIX = "h1."
# JetStream keeps times in nanoseconds, clients see microseconds: a read by time starts this much earlier and
# ``Keep`` applies ``since`` exactly, to the times clients see
START_MARGIN = timedelta(milliseconds=1)

# Whether a client may see an event: (its client topic, the account its subject names or None, the event).
Visible = Callable[[str, str | None, HistoryData], bool]


def everything(topic: str, account: str | None, data: HistoryData) -> bool:
    """The visibility of a reader with every right (the command line, on NATS)."""
    return True


class HistoryError(Exception):
    """A query that cannot be answered as asked; ``field`` names what to change."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Kind:
    """A type of persisted event: its stream, the client topic whose rules say who sees it, the subject of
    every account's events, and where an account is in its subject (``of_account`` builds one account's,
    ``account_token`` is the account's token; None when the subject names no account)."""

    name: HistoryType
    stream: str
    topic: str
    wildcard: str
    message: type[HistoryData]
    of_account: Callable[[str], str] | None = None
    account_token: int | None = None


KINDS: dict[str, Kind] = {
    "OPENED": Kind(
        "OPENED",
        subjects.EVENTS_STREAM,
        "trades",
        subjects.event_any_account("OPENED"),
        OpenedEvent,
        lambda a: subjects.event(a, "OPENED"),
        2,
    ),
    "CLOSED": Kind(
        "CLOSED",
        subjects.EVENTS_STREAM,
        "trades",
        subjects.event_any_account("CLOSED"),
        ClosedEvent,
        lambda a: subjects.event(a, "CLOSED"),
        2,
    ),
    "MODIFIED": Kind(
        "MODIFIED",
        subjects.EVENTS_STREAM,
        "trades",
        subjects.event_any_account("MODIFIED"),
        ModifiedEvent,
        lambda a: subjects.event(a, "MODIFIED"),
        2,
    ),
    "ORDER_RESULT": Kind(
        "ORDER_RESULT", subjects.EVENTS_STREAM, "orders", subjects.ALL_RESULTS, OrderResult, subjects.result, 3
    ),
    "ACTION_STATE": Kind("ACTION_STATE", subjects.EVENTS_STREAM, "actions", subjects.ALL_ACTIONS, ActionState),
    "CONFLICT": Kind("CONFLICT", subjects.EVENTS_STREAM, "consistency", subjects.CONFLICTS, Conflict),
    "ALERT": Kind("ALERT", subjects.ALERTS_STREAM, "alerts", subjects.ALL_ALERTS, Alert, subjects.account_alerts),
}
assert tuple(KINDS) == HISTORY_TYPES


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    wanted, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(wanted):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(wanted) == len(got)


def kind_of(subject: str) -> Kind | None:
    return next((k for k in KINDS.values() if subject_matches(k.wildcard, subject)), None)


# --- the query -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """A HISTORY request checked: the types (every one when the request names none), the accounts asked
    (None: all the reader may see), the time bounds, the page's size."""

    types: tuple[str, ...]
    accounts: frozenset[str] | None
    since: datetime | None
    until: datetime | None
    limit: int

    @classmethod
    def of(cls, request: HistoryRequest) -> Query:
        if request.since is not None and request.until is not None and request.until < request.since:
            raise HistoryError("until is before since", "until")
        types = HISTORY_TYPES if request.types is None else tuple(t for t in HISTORY_TYPES if t in request.types)
        accounts = None if request.accounts is None else frozenset(request.accounts)
        return cls(types, accounts, request.since, request.until, request.limit)

    def streams(self) -> list[str]:
        return [s for s in STREAMS if any(KINDS[t].stream == s for t in self.types)]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_UNIT_S = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


def parse_since(text: str, now: datetime) -> datetime:
    """``since`` as the command line takes it: an ISO 8601 time (UTC when it names no zone) or a duration
    back from ``now`` (``90s``, ``15m``, ``1h``, ``2d``, ``1w``, ``1h30m``). Raises ValueError."""
    text = text.strip()
    if text and _DURATION.sub("", text) == "" and text[0].isdigit():
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(text))
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-11-24T10:00:00Z) nor a duration (90s, 15m, 1h, 2d, 1w)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# --- the cursor ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """Where a stream's next page starts: after ``seq`` in the history ``epoch``."""

    epoch: str
    seq: int


Cursor = dict[str, Position]


def encode_cursor(cursor: Mapping[str, Position]) -> str:
    raw = json.dumps({s: [p.epoch, p.seq] for s, p in sorted(cursor.items())}, separators=(",", ":"))
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """A cursor a page gave (``HistoryError`` on field ``cursor`` when it is not one)."""
    bad = HistoryError("not a cursor a HISTORY_PAGE gave (nextCursor)", "cursor")
    if not text.startswith(CURSOR_PREFIX):
        raise bad
    body = text[len(CURSOR_PREFIX) :]
    try:
        raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(raw, dict):
        raise bad
    cursor: Cursor = {}
    for stream, value in raw.items():
        ok = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and type(value[1]) is int
        if stream not in STREAMS or not ok or value[1] < 0:
            raise bad
        cursor[stream] = Position(value[0], value[1])
    return cursor


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
