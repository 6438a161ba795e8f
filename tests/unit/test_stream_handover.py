"""The pure parts of resumable streams: the replay/live hand-over, gap detection, the recent-window search,
the subjects a replay reads, what a stream-mode SUBSCRIBE may ask, the queue's high-water mark and the
protocol's new frames."""

from __future__ import annotations

import asyncio
import random

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from hedgebridge.common import auth
from hedgebridge.gateway.handover import BufferFull, CaughtUpMark, Handover
from hedgebridge.gateway.outgoing import OutgoingQueue, payload, wire
from hedgebridge.gateway.stream_rules import (
    SNAPSHOT_SOURCES,
    STREAM_SOURCES,
    History,
    RecentSearch,
    check_cursor,
    check_stream_request,
    replay_subjects,
    subject_account,
    too_far_behind,
)
from hedgebridge.protocol import encode_frame, errors, subjects, utcnow
from hedgebridge.protocol.client import (
    TOPIC_DELIVERY,
    CaughtUp,
    Cursor,
    Push,
    Resync,
    SlowConsumerWarning,
    Subscribe,
    decode_client_frame,
    decode_server_frame,
)
from hedgebridge.protocol.messages import PriceTick

# --- the hand-over ---------------------------------------------------------------------------------------------


def test_live_events_wait_for_the_history_then_only_those_after_it_pass() -> None:
    handover: Handover[str] = Handover()
    handover.resume_after(10)
    # the live feed was joined first: it carries 12 (already stored when the history was read) and 15
    assert handover.live(12, "e12") == []
    assert handover.live(15, "e15") == []
    assert handover.replayed(9, "e9") == []  # at or before the cursor: the client has it
    assert handover.replayed(11, "e11") == ["e11"]
    assert handover.replayed(12, "e12") == ["e12"]
    assert handover.finish(head=13) == ["e15", CaughtUpMark(15, 2)]
    assert handover.live(14, "e14") == []  # the history sent everything up to 13 already; 14 < 15 is old
    assert handover.live(15, "e15") == []
    assert handover.live(16, "e16") == ["e16"]


def test_an_empty_history_reports_the_head_as_the_cursor() -> None:
    handover: Handover[str] = Handover()
    assert handover.finish(head=40) == [CaughtUpMark(40, 0)]
    assert handover.live(40, "old") == []
    assert handover.live(41, "new") == ["new"]


def test_events_without_a_sequence_are_released_after_the_history_in_arrival_order() -> None:
    handover: Handover[str] = Handover()
    assert handover.live(None, "status-1") == []
    assert handover.replayed(None, "snapshot-A") == ["snapshot-A"]
    assert handover.replayed(None, "snapshot-B") == ["snapshot-B"]
    assert handover.live(None, "status-2") == []
    assert handover.finish(head=None) == ["status-1", "status-2", CaughtUpMark(None, 2)]
    assert handover.live(None, "status-3") == ["status-3"]
    with pytest.raises(RuntimeError):
        handover.replayed(None, "late")


def test_too_many_live_events_during_the_history_is_a_slow_consumer() -> None:
    handover: Handover[str] = Handover(limit=2)
    handover.live(1, "a")
    handover.live(2, "b")
    with pytest.raises(BufferFull):
        handover.live(3, "c")


def test_random_interleavings_give_every_event_once_in_order() -> None:
    """A stream of 1..N; the client has 1..cursor; the live feed starts somewhere at or before the head the
    history reads to and carries everything after it; the history is read in order up to the head. Whatever
    the interleaving, the client gets cursor+1..N exactly once, in order, then nothing more."""
    rng = random.Random(7)
    for _ in range(500):
        total = rng.randint(0, 40)
        cursor = rng.randint(0, total)
        head = rng.randint(cursor, total)
        live_from = rng.randint(1, head + 1)  # the first event the shared feed still had to deliver
        live = list(range(live_from, total + 1))
        history = list(range(cursor + 1, head + 1))
        handover: Handover[int] = Handover()
        handover.resume_after(cursor)
        out: list[int] = []
        while history or live:  # interleave until the history is done
            if history and (not live or rng.random() < 0.5):
                out += handover.replayed(history[0], history.pop(0))
            else:
                out += handover.live(live[0], live.pop(0))
                if not history:
                    break
        tail = handover.finish(head)
        assert isinstance(tail[-1], CaughtUpMark)
        out += [item for item in tail if isinstance(item, int)]
        for seq in live:
            out += handover.live(seq, seq)
        out += handover.live(total, total)  # a repeat delivery is dropped
        assert out == list(range(cursor + 1, total + 1)), (total, cursor, head, live_from)


# --- gaps ----------------------------------------------------------------------------------------------------


HISTORY = History(epoch="HB_EVENTS@1", first_seq=100, last_seq=200)


def test_a_cursor_within_the_history_is_honoured() -> None:
    assert check_cursor(Cursor(epoch="HB_EVENTS@1", seq=150), HISTORY) is None
    assert check_cursor(Cursor(epoch="HB_EVENTS@1", seq=99), HISTORY) is None  # the next one is the first kept
    assert check_cursor(Cursor(epoch="HB_EVENTS@1", seq=200), HISTORY) is None  # nothing happened since
    assert check_cursor(Cursor(epoch="E", seq=0), History("E", 0, 0)) is None  # a stream never written to


def test_gaps_are_named() -> None:
    gap = check_cursor(Cursor(epoch="HB_EVENTS@0", seq=150), HISTORY)
    assert gap is not None
    assert gap.reason == "EPOCH_CHANGED"
    gap = check_cursor(Cursor(epoch="HB_EVENTS@1", seq=201), HISTORY)
    assert gap is not None
    assert gap.reason == "UNKNOWN_SEQUENCE"
    gap = check_cursor(Cursor(epoch="HB_EVENTS@1", seq=98), HISTORY)
    assert gap is not None
    assert gap.reason == "HISTORY_EXPIRED"
    assert "starts at 100" in gap.message
    purged = History(epoch="HB_EVENTS@1", first_seq=201, last_seq=200)  # every event removed
    gap = check_cursor(Cursor(epoch="HB_EVENTS@1", seq=150), purged)
    assert gap is not None
    assert gap.reason == "HISTORY_EXPIRED"
    assert check_cursor(Cursor(epoch="HB_EVENTS@1", seq=200), purged) is None
    assert too_far_behind(10, 10) is None
    far = too_far_behind(11, 10)
    assert far is not None
    assert far.reason == "TOO_FAR_BEHIND"


# --- the last N events -----------------------------------------------------------------------------------------


def _search(history: History, wanted: int, density: float, scan_max: int = 10_000) -> int:
    """Run the search against a stream where a fraction ``density`` of the events belong to the topic."""
    search = RecentSearch(history, wanted, scan_max)
    probes = 0
    while not search.done:
        span = history.last_seq - search.start + 1
        search.counted(int(span * density))
        probes += 1
        assert probes < 20
    return search.start


def test_the_window_grows_until_it_holds_the_events_wanted() -> None:
    history = History("E", 1, 10_000)
    start = _search(history, 50, density=0.01)
    assert int((history.last_seq - start + 1) * 0.01) >= 50
    assert _search(history, 50, density=1.0) >= history.last_seq - 100
    assert _search(history, 50, density=0.0) == 1  # never found: the whole stream was searched
    assert _search(History("E", 1, 1_000_000), 50, density=0.0, scan_max=5000) == 1_000_000 - 5000 + 1
    assert RecentSearch(history, 0, 100).done  # nothing wanted
    assert RecentSearch(History("E", 0, 0), 10, 100).done  # nothing stored


# --- subjects and requests ---------------------------------------------------------------------------------


def test_replays_read_exact_subjects_for_a_few_accounts_and_wildcards_otherwise() -> None:
    trades = STREAM_SOURCES["trades"]
    assert replay_subjects("trades", trades, frozenset({"B", "A"})) == (
        "hb.ea.A.evt.opened",
        "hb.ea.A.evt.closed",
        "hb.ea.A.evt.modified",
        "hb.ea.B.evt.opened",
        "hb.ea.B.evt.closed",
        "hb.ea.B.evt.modified",
    )
    assert replay_subjects("trades", trades, None) == trades.subjects
    many = frozenset(f"A{i}" for i in range(100))
    assert replay_subjects("orders", STREAM_SOURCES["orders"], many) == (subjects.ALL_RESULTS,)
    assert replay_subjects("orders", STREAM_SOURCES["orders"], frozenset({"A"})) == (subjects.result("A"),)
    assert replay_subjects("terminals", SNAPSHOT_SOURCES["terminals"], frozenset({"A"})) == (subjects.status("A"),)
    assert replay_subjects("actions", STREAM_SOURCES["actions"], frozenset({"A"})) == (subjects.ALL_ACTIONS,)
    assert {TOPIC_DELIVERY[t] for t in STREAM_SOURCES} == {"STREAM"}


def test_the_account_of_an_event_comes_from_its_subject() -> None:
    assert subject_account("trades", "hb.ea.A-1.evt.opened") == "A-1"
    assert subject_account("orders", subjects.result("B")) == "B"
    assert subject_account("terminals", subjects.status("C")) == "C"
    assert subject_account("prices", "hb.ea.D.evt.price") == "D"
    assert subject_account("actions", "hb.action.x") is None  # filtered by the action's accounts


def test_what_a_stream_mode_subscribe_may_ask() -> None:
    def check(raw: str, followed: frozenset[str] = frozenset()) -> tuple[str, str | None] | None:
        frame = decode_client_frame(raw)
        assert isinstance(frame, Subscribe)
        refusal = check_stream_request(frame, followed)
        return None if refusal is None else (refusal.code, refusal.field)

    ok = '{"type":"SUBSCRIBE","requestId":"s","topics":["orders","prices"],"resume":{"orders":{"epoch":"E","seq":3}}}'
    assert check(ok) is None
    assert check(ok, frozenset({"prices"})) == (errors.INVALID_FIELD, "topics[1]")  # followed already
    assert (
        check('{"type":"SUBSCRIBE","requestId":"s","topics":["prices"]}', frozenset({"prices"})) is None
    )  # plain: adds
    other = '{"type":"SUBSCRIBE","requestId":"s","topics":["prices"],"resume":{"orders":{"epoch":"E","seq":3}}}'
    assert check(other) == (errors.INVALID_FIELD, "resume.orders")
    snapshot = (
        '{"type":"SUBSCRIBE","requestId":"s","topics":["positions"],"resume":{"positions":{"epoch":"E","seq":3}}}'
    )
    assert check(snapshot) == (errors.INVALID_FIELD, "resume.positions")


def test_principals_scope_is_still_checked_on_every_event() -> None:
    from hedgebridge.gateway.client_rules import sees

    secret = auth.new_secret()
    system = auth.verify_token(auth.mint_token(secret, role="system", subject="s", accounts=["A"]), secret)
    tick = PriceTick(account_id="A", symbol="EURUSD", bid=1.0, ask=1.1, time=utcnow())
    assert sees(system, None, "orders", "A", tick)
    assert not sees(system, None, "orders", "B", tick)  # the shared stream feed carries every account's
    assert not sees(system, frozenset({"C"}), "orders", "A", tick)


# --- the queue's high-water mark -------------------------------------------------------------------------


async def test_the_high_water_mark_is_reported_once_per_crossing() -> None:
    queue = OutgoingQueue(10, priority=True, high_water=4)
    assert [queue.put_nowait(b"%d" % i) for i in range(6)] == [False, False, False, True, False, False]
    queue.put_front(b"warning")
    assert queue.take(1) == [b"warning"]
    assert len(queue.take(4)) == 4  # 2 left: half the mark, so the next crossing warns again
    assert [queue.put_nowait(b"x") for _ in range(3)] == [False, True, False]
    waiting = asyncio.ensure_future(queue.wait_below(1))
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.take(4)
    await asyncio.wait_for(waiting, 1)
    for _ in range(9):
        queue.put_nowait(b"y")
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(b"z")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 200_000])
def test_a_frame_encoded_once_is_the_text_frame_websockets_reads(size: int) -> None:
    text = ("é" * (size // 2)).encode() + b"a" * (size % 2)  # ``size`` bytes of UTF-8
    frame = wire(text)
    reader = StreamReader()
    reader.feed_data(frame)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        parsed = done.value
    assert (parsed.opcode, parsed.fin, bytes(parsed.data)) == (Opcode.TEXT, True, text)
    assert bytes(payload(frame)) == text


# --- the protocol's frames ------------------------------------------------------------------------------------


def test_new_frames_round_trip_and_plain_frames_stay_as_they_were() -> None:
    now = utcnow()
    for frame in (
        CaughtUp(request_id="s", topic="orders", epoch="E", seq=5, replayed=2),
        Resync(request_id="s", topic="orders", reason="HISTORY_EXPIRED", message="m", epoch="E", first_seq=9),
        SlowConsumerWarning(timestamp=now, queued=80, high_water=80, limit=100),
        Push(topic="orders", data=PriceTick(account_id="A", symbol="X", bid=1, ask=1, time=now), epoch="E", seq=3),
    ):
        assert decode_server_frame(encode_frame(frame)) == frame
    plain = Push(topic="prices", data=PriceTick(account_id="A", symbol="X", bid=1, ask=1, time=now))
    text = encode_frame(plain).decode()
    assert '"seq"' not in text  # absent when the topic is not numbered
    assert '"epoch"' not in text
    subscribe = decode_client_frame('{"type":"SUBSCRIBE","requestId":"s","topics":["orders"],"futureField":1}')
    assert isinstance(subscribe, Subscribe)
    assert not subscribe.stream_mode  # no resume, no recent: answered as before
