"""The history's pure core: ``since`` as the command line takes it, the cursor, what a page reads (subjects,
start), which stored events it keeps, how two streams merge, and that paging through a history gives every
event it should once, in order, whatever the page size and read budget."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from hedgebridge.common.history.core import (
    CURSOR_PREFIX,
    KINDS,
    START_MARGIN,
    HistoryError,
    Keep,
    Position,
    Query,
    Read,
    Scan,
    Stored,
    StreamState,
    decode_cursor,
    encode_cursor,
    everything,
    kind_of,
    page,
    parse_since,
    plan,
    subject_matches,
)
from hedgebridge.protocol import ActionState, Alert, Conflict, OpenedEvent, OrderResult, pack, subjects
from hedgebridge.protocol.client import HistoryData, HistoryRequest

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
EVENTS, ALERTS = subjects.EVENTS_STREAM, subjects.ALERTS_STREAM


def query(**fields: object) -> Query:
    return Query.of(HistoryRequest(request_id="h", **fields))  # type: ignore[arg-type]


# --- since, subjects, cursors ------------------------------------------------------------------------------


def test_since_takes_an_iso_time_or_a_duration_back_from_now() -> None:
    assert parse_since("1h", T0) == T0 - timedelta(hours=1)
    assert parse_since("1h30m", T0) == T0 - timedelta(minutes=90)
    assert parse_since("2d", T0) == T0 - timedelta(days=2)
    assert parse_since("90s", T0) == T0 - timedelta(seconds=90)
    assert parse_since("1w", T0) == T0 - timedelta(weeks=1)
    assert parse_since("2026-11-24T09:00:00Z", T0) == T0 - timedelta(hours=1)
    assert parse_since("2026-11-24T11:00:00+02:00", T0) == T0 - timedelta(hours=1)
    assert parse_since("2026-11-24T09:00:00", T0) == T0 - timedelta(hours=1)  # no zone: UTC
    for bad in ("", "yesterday", "1x", "h1", "-1h", "2026-13-01"):
        with pytest.raises(ValueError, match="neither an ISO 8601 time"):
            parse_since(bad, T0)


def test_subjects_match_as_nats_matches_them_and_name_their_kind() -> None:
    assert subject_matches("hb.ea.*.evt.opened", "hb.ea.A.evt.opened")
    assert not subject_matches("hb.ea.*.evt.opened", "hb.ea.A.evt.closed")
    assert not subject_matches("hb.ea.*.evt.opened", "hb.ea.A.evt.opened.x")
    assert subject_matches("hb.alert.>", "hb.alert.margin_level.A")
    assert not subject_matches("hb.alert.>", "hb.alert")
    assert [
        None if (kind := kind_of(s)) is None else kind.name
        for s in (
            subjects.event("A", "OPENED"),
            subjects.event("A", "CLOSED"),
            subjects.result("A"),
            subjects.action("act-1"),
            subjects.CONFLICTS,
            subjects.alert("margin_level", "A"),
            subjects.event("A", "PRICE"),
        )
    ] == ["OPENED", "CLOSED", "ORDER_RESULT", "ACTION_STATE", "CONFLICT", "ALERT", None]


def test_a_cursor_comes_back_as_it_was_given_and_anything_else_is_refused() -> None:
    cursor = {EVENTS: Position("HB_EVENTS@1", 41), ALERTS: Position("HB_ALERTS@2", 0)}
    text = encode_cursor(cursor)
    assert text.startswith(CURSOR_PREFIX)
    assert "=" not in text
    assert decode_cursor(text) == cursor
    for bad in (
        "x",
        CURSOR_PREFIX + "!!",
        CURSOR_PREFIX + "W10",
        encode_cursor({}) + "x",
        _raw('{"HB_X":["e",1]}'),
        _raw('{"HB_EVENTS":["e",-1]}'),
        _raw('{"HB_EVENTS":["e",1.5]}'),
        _raw('{"HB_EVENTS":"e"}'),
    ):
        with pytest.raises(HistoryError) as refused:
            decode_cursor(bad)
        assert refused.value.field == "cursor"


def _raw(text: str) -> str:
    import base64

    return CURSOR_PREFIX + base64.urlsafe_b64encode(text.encode()).decode()


def test_until_before_since_is_refused() -> None:
    with pytest.raises(HistoryError) as refused:
        query(since=T0, until=T0 - timedelta(seconds=1))
    assert refused.value.field == "until"


# --- plan --------------------------------------------------------------------------------------------------

STATES = {EVENTS: StreamState("HB_EVENTS@1", 1, 100), ALERTS: StreamState("HB_ALERTS@1", 1, 10)}


def test_a_page_reads_only_the_streams_of_its_types_per_account_when_the_subject_names_it() -> None:
    [read] = plan(query(types=["OPENED", "ORDER_RESULT"], accounts=["B", "A"]), None, {}, STATES)
    assert read.stream == EVENTS
    assert read.subjects == (
        subjects.event("A", "OPENED"),
        subjects.event("B", "OPENED"),
        subjects.result("A"),
        subjects.result("B"),
    )
    assert (read.start_seq, read.start_time) == (None, None)
    [read] = plan(query(types=["ALERT"]), frozenset({"A"}), {}, STATES)  # a system token's scope narrows too
    assert (read.stream, read.subjects) == (ALERTS, (subjects.account_alerts("A"),))
    [read] = plan(query(types=["ACTION_STATE", "CONFLICT"], accounts=["A"]), None, {}, STATES)
    assert read.subjects == (subjects.ALL_ACTIONS, subjects.CONFLICTS)  # their accounts are in their data only
    many = [f"ACC-{i}" for i in range(40)]
    [read] = plan(query(types=["OPENED", "CLOSED"], accounts=many), None, {}, STATES)
    assert read.subjects == (KINDS["OPENED"].wildcard, KINDS["CLOSED"].wildcard)  # 80 filters: the wildcards
    reads = plan(query(), None, {}, STATES)
    assert [r.stream for r in reads] == [EVENTS, ALERTS]
    assert plan(query(types=["ALERT"]), None, {}, {EVENTS: STATES[EVENTS]}) == []  # no HB_ALERTS yet
    # no account in scope (a token with users only): nothing read of the per-account types, never everything
    [read] = plan(query(types=["OPENED", "ACTION_STATE"]), frozenset(), {}, STATES)
    assert read.subjects == (subjects.ALL_ACTIONS,)
    assert plan(query(types=["OPENED", "ALERT"]), frozenset(), {}, STATES) == []


def test_the_first_page_starts_at_since_and_the_next_after_the_cursor() -> None:
    [read] = plan(query(types=["OPENED"], since=T0, limit=7), None, {}, STATES)
    assert (read.start_seq, read.start_time, read.wanted) == (None, T0 - START_MARGIN, 7)
    [read] = plan(query(types=["OPENED"], since=T0), None, {EVENTS: Position("HB_EVENTS@1", 41)}, STATES)
    assert (read.start_seq, read.start_time, read.expired) == (42, None, False)
    gone = {EVENTS: StreamState("HB_EVENTS@1", 60, 100)}
    [read] = plan(query(types=["OPENED"]), None, {EVENTS: Position("HB_EVENTS@1", 41)}, gone)
    assert (read.start_seq, read.expired) == (42, True)


def test_a_cursor_of_another_history_or_beyond_the_stream_is_refused() -> None:
    with pytest.raises(HistoryError, match="ask again without a cursor"):
        plan(query(types=["OPENED"]), None, {EVENTS: Position("HB_EVENTS@0", 41)}, STATES)
    with pytest.raises(HistoryError, match="beyond the last event"):
        plan(query(types=["OPENED"]), None, {EVENTS: Position("HB_EVENTS@1", 101)}, STATES)


# --- keep --------------------------------------------------------------------------------------------------


def opened(account: str, n: int) -> OpenedEvent:
    return OpenedEvent(
        timestamp=T0, account_id=account, position_id=f"p{n}", mt_ticket=str(n), price=1.1, status="SUCCESS"
    )


def action(accounts: list[str], user: str = "") -> ActionState:
    return ActionState(
        action_id="a1", kind="HEDGE_ENTRY", state="RUNNING", seq=1, timestamp=T0, account_ids=accounts, user_id=user
    )


def stored(subject: str, data: bytes, seq: int = 1, at: datetime = T0, stream: str = EVENTS) -> Stored:
    return Stored(stream, seq, subject, at, data)


def test_keep_filters_by_type_account_time_and_what_the_reader_may_see() -> None:
    q = query(types=["OPENED", "ACTION_STATE", "CONFLICT", "ALERT"], accounts=["A"], since=T0, until=T0)
    keep = Keep(q, everything)
    entry = keep(stored(subjects.event("A", "OPENED"), pack(opened("A", 1)), seq=5))
    assert entry is not None
    assert (entry.type, entry.accounts, entry.seq, entry.stream, entry.time) == ("OPENED", ["A"], 5, EVENTS, T0)
    assert keep(stored(subjects.event("B", "OPENED"), pack(opened("B", 1)))) is None  # another account
    assert keep(stored(subjects.event("A", "CLOSED"), b"")) is None  # a type not asked
    late = T0 + timedelta(microseconds=1)
    assert keep(stored(subjects.event("A", "OPENED"), pack(opened("A", 1)), at=late)) is None  # after until
    both = keep(stored(subjects.action("a1"), pack(action(["B", "A"]))))
    assert both is not None
    assert both.accounts == ["B", "A"]
    assert keep(stored(subjects.action("a1"), pack(action(["B"])))) is None
    conflict = Conflict(kind="ORPHAN_POSITION", account_id="A", mt_ticket="9", detected_at=T0)
    assert keep(stored(subjects.CONFLICTS, pack(conflict))) is not None
    system = Alert(
        key="k", rule="nats", state="OPEN", severity="CRITICAL", code="X", opened_at=T0, updated_at=T0, seq=1
    )
    assert keep(stored(subjects.alert("nats"), pack(system), stream=ALERTS)) is None  # not of account A
    assert keep(stored(subjects.event("A", "OPENED"), b"\xc1")) is None
    assert keep.undecodable == 1
    seen: list[tuple[str, str | None]] = []

    def only_trades(topic: str, account: str | None, data: HistoryData) -> bool:
        seen.append((topic, account))
        return topic == "trades"

    keep = Keep(query(), only_trades)
    assert keep(stored(subjects.event("A", "OPENED"), pack(opened("A", 1)))) is not None
    assert keep(stored(subjects.action("a1"), pack(action(["A"])))) is None
    result = OrderResult(status="FILLED", account_id="A")
    assert keep(stored(subjects.result("A"), pack(result))) is None
    assert seen == [("trades", "A"), ("actions", None), ("orders", "A")]
    entry = Keep(query(), everything)(stored(subjects.alert("nats"), pack(system), stream=ALERTS))
    assert entry is not None
    assert entry.accounts == []


# --- merging and paging ------------------------------------------------------------------------------------


def read_of(stream: str, wanted: int = 100) -> Read:
    return Read(stream, f"{stream}@1", (), None, None, None, wanted, 1000)


def entry_at(stream: str, seq: int, second: int) -> Stored:
    subject = subjects.event("A", "OPENED") if stream == EVENTS else subjects.alert("margin_level", "A")
    if stream == EVENTS:
        data = pack(opened("A", seq))
    else:
        data = pack(
            Alert(
                key="k",
                rule="margin_level",
                account_id="A",
                state="OPEN",
                severity="CRITICAL",
                code="X",
                opened_at=T0,
                updated_at=T0,
                seq=seq,
            )
        )
    return stored(subject, data, seq=seq, at=T0 + timedelta(seconds=second), stream=stream)


def scan_of(stream: str, items: list[tuple[int, int]], exhausted: bool, last_seq: int | None = None) -> Scan:
    keep = Keep(query(), everything)
    entries = [e for e in (keep(entry_at(stream, seq, second)) for seq, second in items) if e is not None]
    last = items[-1] if items else None
    return Scan(
        read_of(stream),
        entries,
        len(items),
        last_seq if last_seq is not None else (last[0] if last else 0),
        T0 + timedelta(seconds=last[1]) if last else None,
        exhausted,
    )


def test_a_stream_that_stopped_early_holds_back_what_another_has_after_its_last_read_event() -> None:
    events = scan_of(EVENTS, [(1, 1), (2, 3)], exhausted=False)  # more after second 3
    alerts = scan_of(ALERTS, [(1, 2), (2, 3), (3, 9)], exhausted=True, last_seq=3)
    result = page(query(), {}, [events, alerts])
    assert [(e.stream, e.seq) for e in result.entries] == [(EVENTS, 1), (ALERTS, 1), (EVENTS, 2)]
    # the alert at second 3 may follow an unread event at second 3 (events sort first at equal times)
    assert result.cursor == {EVENTS: Position("HB_EVENTS@1", 2), ALERTS: Position("HB_ALERTS@1", 1)}
    assert result.more
    assert result.scanned == 5


def test_a_page_ends_at_its_limit_and_its_cursor_before_the_first_entry_not_given() -> None:
    events = scan_of(EVENTS, [(1, 1), (2, 2), (3, 3)], exhausted=True, last_seq=10)
    result = page(query(limit=2), {ALERTS: Position("HB_ALERTS@1", 4)}, [events])
    assert [e.seq for e in result.entries] == [1, 2]
    assert result.cursor == {EVENTS: Position("HB_EVENTS@1", 2), ALERTS: Position("HB_ALERTS@1", 4)}
    assert result.more
    result = page(query(limit=3), {}, [events])
    assert result.cursor == {EVENTS: Position("HB_EVENTS@1", 10)}
    assert not result.more


class FakeStream:
    """A stream in memory, read as ``reader.scan`` reads JetStream (filter, start, budget, wanted, until)."""

    def __init__(self, name: str, items: list[Stored]) -> None:
        self.name, self.items = name, items
        self.state = StreamState(f"{name}@1", 1, len(items))

    def scan(self, read: Read, keep: Callable[[Stored], object]) -> Scan:
        start = read.start_seq or 1
        candidates = [
            s
            for s in self.items
            if s.seq >= start
            and (read.start_seq is not None or read.start_time is None or s.time >= read.start_time)
            and any(subject_matches(f, s.subject) for f in read.subjects)
        ]
        entries: list[object] = []
        scanned, last, last_time = 0, start - 1, None
        for s in candidates:
            if scanned >= read.budget or len(entries) >= read.wanted:
                return Scan(read, entries, scanned, last, last_time, False)  # type: ignore[arg-type]
            if read.until is not None and s.time > read.until:
                return Scan(read, entries, scanned, last, last_time, True)  # type: ignore[arg-type]
            scanned, last, last_time = scanned + 1, s.seq, s.time
            entry = keep(s)
            if entry is not None:
                entries.append(entry)
        if read.until is None:
            last = max(last, self.state.last_seq)
        return Scan(read, entries, scanned, last, last_time, True)  # type: ignore[arg-type]


def history_of_two_streams() -> dict[str, FakeStream]:
    """60 events and 25 alerts of accounts A and B, at interleaved (sometimes equal) times."""
    events, alerts = [], []
    for seq in range(1, 61):
        account = "A" if seq % 3 else "B"
        if seq % 4 == 0:
            subject, data = subjects.action(f"act-{seq}"), pack(action([account]))
        else:
            subject, data = subjects.event(account, "OPENED"), pack(opened(account, seq))
        events.append(stored(subject, data, seq=seq, at=T0 + timedelta(seconds=seq // 2)))
    for seq in range(1, 26):
        account = "A" if seq % 2 else "B"
        alert = Alert(
            key=f"k{seq}",
            rule="margin_level",
            account_id=account,
            state="OPEN",
            severity="CRITICAL",
            code="X",
            opened_at=T0,
            updated_at=T0,
            seq=seq,
        )
        alerts.append(
            stored(
                subjects.alert("margin_level", account),
                pack(alert),
                seq=seq,
                at=T0 + timedelta(seconds=seq),
                stream=ALERTS,
            )
        )
    return {EVENTS: FakeStream(EVENTS, events), ALERTS: FakeStream(ALERTS, alerts)}


def page_through(
    fakes: dict[str, FakeStream], request: dict[str, object], budget: int
) -> tuple[list[tuple[str, int]], int]:
    q = query(**request)
    cursor: dict[str, Position] = {}
    got: list[tuple[str, int]] = []
    for pages in itertools.count(1):
        assert pages < 500, "paging does not end"
        reads = plan(q, None, decode_cursor(encode_cursor(cursor)), {n: f.state for n, f in fakes.items()}, budget)
        keep = Keep(q, everything)
        result = page(q, cursor, [fakes[r.stream].scan(r, keep) for r in reads])
        assert len(result.entries) <= q.limit
        got.extend((e.stream, e.seq) for e in result.entries)
        cursor = result.cursor
        if not result.more:
            return got, pages
    raise AssertionError("unreachable")


@pytest.mark.parametrize("limit", [1, 2, 7, 500])
@pytest.mark.parametrize("budget", [1, 3, 50])
@pytest.mark.parametrize(
    "request_",
    [
        {},
        {"accounts": ["A"]},
        {"types": ["ACTION_STATE", "ALERT"], "accounts": ["B"]},
        {"since": T0 + timedelta(seconds=10), "until": T0 + timedelta(seconds=20)},
    ],
)
def test_paging_gives_every_matching_event_once_in_order(limit: int, budget: int, request_: dict[str, object]) -> None:
    fakes = history_of_two_streams()
    q = query(**request_)
    keep = Keep(q, everything)
    expected = sorted(
        (e for f in fakes.values() for e in map(keep, f.items) if e is not None),
        key=lambda e: (e.time, [EVENTS, ALERTS].index(e.stream), e.seq),
    )
    got, pages = page_through(fakes, {**request_, "limit": limit}, budget)
    assert got == [(e.stream, e.seq) for e in expected]
    assert pages >= len(expected) / limit


def test_a_page_after_the_last_one_is_empty_until_new_events_are_stored() -> None:
    fakes = history_of_two_streams()
    q = query(types=["OPENED"])
    reads = plan(q, None, {}, {n: f.state for n, f in fakes.items()})
    first = page(q, {}, [fakes[r.stream].scan(r, Keep(q, everything)) for r in reads])
    assert not first.more
    assert first.cursor == {EVENTS: Position("HB_EVENTS@1", 60)}
    fakes[EVENTS].items.append(entry_at(EVENTS, 61, 100))
    fakes[EVENTS].state = StreamState("HB_EVENTS@1", 1, 61)
    reads = plan(q, None, first.cursor, {n: f.state for n, f in fakes.items()})
    second = page(q, first.cursor, [fakes[r.stream].scan(r, Keep(q, everything)) for r in reads])
    assert [e.seq for e in second.entries] == [61]
