"""Bad input found by fuzzing the wire, with no server: names that are not names, nesting that is too deep,
numbers outside the protocol's range. Each is one typed ProtocolError (an ERROR frame on the wire)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from msgspec import inspect as inspect_types
from nats.aio.client import Client as NatsClient

from hedgebridge.gateway import reports
from hedgebridge.protocol import (
    ClosedEvent,
    Frame,
    GatewayLiveness,
    Heartbeat,
    MonitorSnapshot,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    OrderRecord,
    ProtocolError,
    codec,
    decode_frame,
    errors,
    names,
    pack,
    subjects,
    unpack_event,
)
from hedgebridge.protocol.client import ClientFrame, ServerFrame, decode_client_frame

PRICE = '{"type":"PRICE","accountId":%s,"symbol":"EURUSD","bid":1.0,"ask":1.1,"time":"2026-01-01T00:00:00Z"}'


@pytest.mark.parametrize("account", ["A1\n", "*", ">", "A.B", "A B", "", "x" * 65])
def test_a_name_is_refused_the_same_way_on_the_wire_in_a_subject_and_by_the_rules(account: str) -> None:
    assert not names.is_account_id(account)
    with pytest.raises(ProtocolError) as info:
        decode_frame(PRICE % f'"{account}"'.replace("\n", "\\n"))
    assert (info.value.code, info.value.field) == (errors.INVALID_FIELD, "accountId")
    with pytest.raises(ValueError, match="not a valid subject token"):
        subjects.command(account)


def test_names_end_at_the_end_of_the_string() -> None:
    # ``$`` would also match before a final newline
    assert names.is_account_id("A1")
    assert not names.is_account_id("A1\n")
    assert names.is_action_id("a-1")
    assert not names.is_action_id("a-1\n")
    assert names.is_symbol("EURUSD.m")
    assert not names.is_symbol("EURUSD\n")
    assert names.is_token_id("a.b")
    assert not names.is_token_id("a.b\n")
    with pytest.raises(ValueError, match="not a valid subject token"):
        subjects.action("a-1\n")


# --- nesting -------------------------------------------------------------------------------------------------


def _nested(levels: int, inner: str = "1") -> str:
    """``levels`` arrays and objects, alternating, around ``inner``; brackets in a key and an escaped quote
    must not count."""
    opens = ["[" if i % 2 else '{"k\\"[":' for i in range(levels)]
    closes = ["]" if i % 2 else "}" for i in range(levels)]
    return "".join(opens) + inner + "".join(reversed(closes))


HEARTBEAT = '{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":1,"extra":%s}'


@pytest.mark.parametrize("levels", [1, 2, 31, 32, 33, 1000, 50_000])
def test_the_depth_limit_is_exact(levels: int) -> None:
    text = _nested(levels)
    assert codec.nesting_depth_over(text) is (levels > codec.MAX_DEPTH)
    assert codec.nesting_depth_over(text.encode()) is (levels > codec.MAX_DEPTH)


def test_unbalanced_and_string_brackets() -> None:
    assert codec.nesting_depth_over("[" * 5000)  # never closed: still too deep for a parser
    assert not codec.nesting_depth_over('["' + "[" * 1000 + '"]')  # inside a string
    assert not codec.nesting_depth_over('["\\\\",' + '"[",' * 40 + '""]')
    assert not codec.nesting_depth_over("[{]}" * 100)  # malformed, not deep: the parser says so


@pytest.mark.parametrize(
    ("decode", "frame"),
    [
        (decode_frame, _nested(1000)),
        (decode_frame, HEARTBEAT % _nested(1000)),  # in a field no message has
        (decode_client_frame, _nested(1000)),
        (decode_client_frame, '{"type":"REQUEST","requestId":"r1","body":' + _nested(1000) + "}"),
    ],
)
def test_a_frame_nested_a_thousand_levels_is_a_malformed_frame(decode: Callable[[str], object], frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(frame)
    assert (info.value.code, info.value.message) == (errors.MALFORMED_FRAME, codec.TOO_DEEP)
    assert codec.read_loosely(frame) is None


def test_nesting_within_the_limit_in_an_unknown_field_is_ignored_as_before() -> None:
    beat = decode_frame(HEARTBEAT % _nested(codec.MAX_DEPTH - 1))
    assert isinstance(beat, Heartbeat)
    assert beat.seq == 1


def test_a_stack_that_runs_out_below_the_limit_is_the_same_error() -> None:
    frame = HEARTBEAT % _nested(codec.MAX_DEPTH - 1)
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(len(inspect.stack()) + 20)  # the parser runs out of stack before the limit
        with pytest.raises(ProtocolError) as info:
            decode_frame(frame)
    finally:
        sys.setrecursionlimit(limit)
    assert (info.value.code, info.value.message) == (errors.MALFORMED_FRAME, codec.TOO_DEEP)


# --- integers ------------------------------------------------------------------------------------------------


def _unbounded_ints(t: inspect_types.Type, path: str, seen: set[type]) -> Iterator[str]:
    if isinstance(t, inspect_types.IntType):
        if (t.ge is None and t.gt is None) or (t.le is None and t.lt is None):
            yield path
    elif isinstance(t, inspect_types.UnionType):
        for member in t.types:
            yield from _unbounded_ints(member, path, seen)
    elif isinstance(t, inspect_types.StructType):
        if t.cls in seen:
            return
        seen.add(t.cls)
        for f in t.fields:
            yield from _unbounded_ints(f.type, f"{t.cls.__name__}.{f.encode_name}", seen)
    elif isinstance(t, inspect_types.ListType | inspect_types.DictType):
        yield from _unbounded_ints(t.item_type if isinstance(t, inspect_types.ListType) else t.value_type, path, seen)


def test_every_integer_of_every_message_has_a_range() -> None:
    found: list[str] = []
    for union in (Frame, ClientFrame, ServerFrame, OrderRecord, MonitorSnapshot, GatewayLiveness):
        found += _unbounded_ints(inspect_types.type_info(union), "", set())
    assert found == []


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ('{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":9007199254740992}', "seq"),
        ('{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":99999999999999999999999}', "seq"),
        (
            '{"type":"OPENED","timestamp":"2026-01-01T00:00:00Z","accountId":"A1","positionId":"p","status":"FAILED",'
            '"errorCode":18446744073709551616}',
            "errorCode",
        ),
        (
            '{"type":"CLOSED","timestamp":"2026-01-01T00:00:00Z","accountId":"A1","positionId":"p","status":"FAILED",'
            '"errorCode":2147483648}',
            "errorCode",
        ),
    ],
)
def test_integers_outside_the_protocols_range_are_invalid_fields(frame: str, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(frame)
    assert (info.value.code, info.value.field) == (errors.INVALID_FIELD, field)
    if field == "seq":  # the client wire has the same heartbeat
        with pytest.raises(ProtocolError) as info:
            decode_client_frame(frame)
        assert (info.value.code, info.value.field) == (errors.INVALID_FIELD, field)


def test_the_largest_integers_in_range_still_decode_and_pack() -> None:
    beat = decode_frame('{"type":"HEARTBEAT","timestamp":"2026-01-01T00:00:00Z","seq":9007199254740991}')
    assert isinstance(beat, Heartbeat)
    assert beat.seq == 2**53 - 1
    failed = decode_frame(
        '{"type":"OPENED","timestamp":"2026-01-01T00:00:00Z","accountId":"A1","positionId":"p","status":"FAILED",'
        '"errorCode":-10004}'  # the MetaTrader5 package's own codes are negative
    )
    assert isinstance(failed, OpenedEvent)
    assert unpack_event(pack(failed)) == failed


# --- reports no command explains -----------------------------------------------------------------------------

T = datetime(2026, 1, 1, tzinfo=UTC)


def _report(kind: str, action_id: str | None = "a-1", **fields: object) -> OpenedEvent | ClosedEvent:
    common: dict[str, object] = {
        "timestamp": T,
        "account_id": "A1",
        "position_id": "p-1",
        "action_id": action_id,
        "mt_ticket": "7",
        "price": 1.1,
        "status": "SUCCESS",
        **fields,
    }
    if kind == "OPENED":
        return OpenedEvent(**common)  # type: ignore[arg-type]
    return ClosedEvent(profit=1.0, **common)  # type: ignore[arg-type]


def test_a_report_is_explained_by_its_command_of_the_same_account_and_kind_or_by_its_reason() -> None:
    opened, closed = _report("OPENED"), _report("CLOSED")
    assert reports.explains(opened, ("A1", "OPEN")) is reports.Verdict.COMMAND
    assert reports.explains(closed, ("A1", "CLOSE")) is reports.Verdict.COMMAND
    for report, command in ((opened, None), (opened, ("A1", "CLOSE")), (opened, ("B2", "OPEN")), (closed, None)):
        assert reports.explains(report, command) is reports.Verdict.UNSOLICITED
    outside = _report("CLOSED", action_id=None, reason="stop_loss")
    assert reports.explains(outside, None) is reports.Verdict.OUTSIDE
    failed_outside = _report("CLOSED", reason="manual", status="FAILED", mt_ticket=None, price=None)
    assert reports.explains(failed_outside, None) is reports.Verdict.UNSOLICITED
    assert "no OPEN command with actionId a-1 was sent to account A1" in reports.refusal(
        opened, reports.Verdict.UNSOLICITED
    )


async def test_the_commands_a_gateway_wrote_explain_their_reports_and_memory_stays_bounded() -> None:
    def no_nats() -> NatsClient:
        raise AssertionError("a remembered command needs no lookup")

    check = reports.ReportCheck(no_nats, remembered=2)
    for action_id in ("a-1", "a-2"):
        check.sent(OpenCommand(**{**_OPEN, "action_id": action_id}))  # type: ignore[arg-type]
    assert await check.check(_report("OPENED", "a-1")) is reports.Verdict.COMMAND
    check.sent(OpenCommand(**{**_OPEN, "action_id": "a-3"}))  # type: ignore[arg-type]
    assert len(check._sent) == 2
    assert await check.check(_report("OPENED", "a-3")) is reports.Verdict.COMMAND
    assert await check.check(_report("OPENED", None)) is reports.Verdict.UNSOLICITED  # nothing to look up


_OPEN: dict[str, object] = {
    "timestamp": T,
    "account_id": "A1",
    "position_id": "p-1",
    "symbol": "EURUSD",
    "side": "BUY",
    "volume": 0.1,
    "metadata": OpenMetadata(execution_type="ENTRY", user_id="u"),
}
