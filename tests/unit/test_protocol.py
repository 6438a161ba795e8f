"""The protocol codec: every message round-trips, every bad input is one typed ProtocolError naming the field."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import msgspec
import pytest

from hedgebridge.protocol import (
    AccountUpdate,
    CloseCommand,
    ClosedEvent,
    CloseMetadata,
    CloseOrder,
    DeliveryAck,
    ErrorMessage,
    Heartbeat,
    Message,
    MonitorSnapshot,
    OpenCommand,
    OpenedEvent,
    OpenMetadata,
    OpenOrder,
    OrderResult,
    Position,
    PositionUpdate,
    PriceTick,
    ProtocolError,
    SymbolSpec,
    SymbolSpecs,
    TerminalStatus,
    TerminalView,
    Welcome,
    decode_frame,
    encode_frame,
    errors,
    pack,
    parse_subprotocol,
    subjects,
    unpack,
    unpack_command,
    unpack_event,
    unpack_order_request,
)
from hedgebridge.protocol.errors import CloseCode

T = datetime(2026, 11, 24, 10, 0, 0, 123000, tzinfo=UTC)
POSITION = Position(
    mt_ticket="50000001",
    position_id="p-1",
    action_id="a-1",
    symbol="EURUSD",
    side="BUY",
    volume=0.1,
    open_price=1.085,
    current_price=1.086,
    profit=10.0,
    open_time=T,
)
WIRE_MESSAGES: list[Message] = [
    OpenCommand(
        timestamp=T,
        account_id="A1",
        position_id="p-1",
        action_id="a-1",
        symbol="EURUSD",
        side="BUY",
        volume=0.1,
        metadata=OpenMetadata(execution_type="ENTRY", user_id="u-1"),
    ),
    CloseCommand(
        timestamp=T,
        account_id="A1",
        position_id="p-1",
        mt_ticket="50000001",
        metadata=CloseMetadata(exit_reason="tp", user_id="u-1"),
    ),
    OpenedEvent(
        timestamp=T, account_id="A1", position_id="p-1", action_id="a-1", mt_ticket="1", price=1.1, status="SUCCESS"
    ),
    OpenedEvent(
        timestamp=T,
        account_id="A1",
        position_id="p-1",
        status="FAILED",
        error_message="Request rejected",
        error_code=10006,
    ),
    ClosedEvent(
        timestamp=T, account_id="A1", position_id="p-1", mt_ticket="1", price=1.2, profit=-3.5, status="SUCCESS"
    ),
    AccountUpdate(
        timestamp=T, account_id="A1", balance=1e4, equity=9e3, margin=100, free_margin=8900, margin_level=9000
    ),
    PositionUpdate(timestamp=T, account_id="A1", positions=[POSITION]),
    PriceTick(account_id="A1", symbol="XAUUSD", bid=2350.1, ask=2350.35, time=T),
    Heartbeat(timestamp=T, seq=7, reply=True, account_id="A1"),
    ErrorMessage(code=errors.MISSING_FIELD, message="missing", field="symbol", ref_type="OPEN", ref_id="a-1"),
    Welcome(
        protocol_version=1,
        account_id="A1",
        session_id="s",
        heartbeat_interval_ms=1000,
        heartbeat_timeout_ms=3500,
        max_frame_bytes=1 << 20,
        server_time=T,
    ),
    SymbolSpecs(
        timestamp=T,
        account_id="A1",
        symbols=[
            SymbolSpec(
                symbol="EURUSD",
                volume_min=0.01,
                volume_max=100,
                volume_step=0.01,
                contract_size=100_000,
                digits=5,
                trade_mode="FULL",
                filling_modes=["FOK", "IOC"],
            ),
            SymbolSpec(
                symbol="XAUUSD.m",
                volume_min=0.1,
                volume_max=50,
                volume_step=0.1,
                contract_size=100,
                digits=2,
                trade_mode="CLOSE_ONLY",
            ),
        ],
    ),
]


@pytest.mark.parametrize("message", WIRE_MESSAGES, ids=lambda m: type(m).__name__)
def test_wire_round_trip_json_and_msgpack(message: Message) -> None:
    frame = encode_frame(message)
    assert decode_frame(frame) == message
    assert unpack(pack(message), type(message)) == message


def test_wire_names_are_the_seeds() -> None:
    opened = json.loads(encode_frame(WIRE_MESSAGES[2]))
    assert opened == {
        "type": "OPENED",
        "timestamp": "2026-11-24T10:00:00.123000Z",
        "accountId": "A1",
        "positionId": "p-1",
        "actionId": "a-1",
        "mtTicket": "1",
        "price": 1.1,
        "status": "SUCCESS",
    }
    open_ = json.loads(encode_frame(WIRE_MESSAGES[0]))
    assert open_["metadata"] == {"executionType": "ENTRY", "userId": "u-1"}
    assert set(json.loads(encode_frame(WIRE_MESSAGES[5]))) == {
        "type", "timestamp", "accountId", "balance", "equity", "margin", "freeMargin", "marginLevel",
    }  # fmt: skip
    assert json.loads(encode_frame(WIRE_MESSAGES[6]))["positions"][0]["openPrice"] == 1.085


def test_backbone_messages_round_trip() -> None:
    status = TerminalStatus(timestamp=T, account_id="A1", status="CONNECTED", session_id="s", gateway_id="gw")
    assert unpack(pack(status), TerminalStatus) == status
    assert unpack(pack(DeliveryAck(delivered=True, session_id="s")), DeliveryAck).delivered
    order = OpenOrder(account_id="A1", symbol="EURUSD", side="SELL", volume=2, timeout_ms=500)
    assert unpack_order_request(pack(order)) == order
    close = CloseOrder(account_id="A1", mt_ticket="5")
    assert unpack_order_request(pack(close)) == close
    assert unpack_command(pack(WIRE_MESSAGES[0])) == WIRE_MESSAGES[0]
    assert unpack_event(pack(WIRE_MESSAGES[7])) == WIRE_MESSAGES[7]
    result = OrderResult(status="FILLED", account_id="A1", event=WIRE_MESSAGES[2])  # type: ignore[arg-type]
    assert unpack(pack(result), OrderResult) == result
    view = TerminalView(account_id="A1", connected=True, session_id="s", gateway_id="g", since=T)
    snapshot = MonitorSnapshot(started_at=T, terminals=[view])
    assert unpack(pack(snapshot), MonitorSnapshot) == snapshot


def test_unknown_fields_are_ignored() -> None:
    raw = json.loads(encode_frame(WIRE_MESSAGES[2]))
    raw["comment"] = "from a newer EA"
    raw["extra"] = {"nested": [1, 2]}
    assert decode_frame(json.dumps(raw)) == WIRE_MESSAGES[2]
    specs = json.loads(encode_frame(WIRE_MESSAGES[-1]))
    specs["symbols"][0]["volumeLimit"] = 500  # a rule a newer terminal reports
    specs["symbols"][1]["swapLong"] = -1.5
    assert decode_frame(json.dumps(specs)) == WIRE_MESSAGES[-1]


def test_symbol_specs_on_the_wire() -> None:
    frame = json.loads(encode_frame(WIRE_MESSAGES[-1]))
    assert frame["type"] == "SYMBOL_SPECS"
    assert frame["symbols"][0] == {
        "symbol": "EURUSD", "volumeMin": 0.01, "volumeMax": 100.0, "volumeStep": 0.01, "contractSize": 100000.0,
        "digits": 5, "tradeMode": "FULL", "fillingModes": ["FOK", "IOC"],
    }  # fmt: skip
    assert "fillingModes" not in frame["symbols"][1]  # none reported: omitted
    assert unpack_event(pack(WIRE_MESSAGES[-1])) == WIRE_MESSAGES[-1]
    assert subjects.event("A1", "SYMBOL_SPECS") == "hb.ea.A1.evt.symbol_specs"
    empty = json.dumps({"type": "SYMBOL_SPECS", "timestamp": "2026-11-24T10:00:00Z", "accountId": "A1", "symbols": []})
    assert _error(empty).field == "symbols"


def test_order_requests_may_ask_for_rounding() -> None:
    order = OpenOrder(account_id="A1", symbol="EURUSD", side="BUY", volume=0.123, round_volume=True)
    assert msgspec.msgpack.decode(pack(order))["roundVolume"] is True
    assert unpack_order_request(pack(order)) == order
    assert "roundVolume" not in msgspec.msgpack.decode(pack(CloseOrder(account_id="A1", mt_ticket="5")))
    result = OrderResult(status="FILLED", requested_volume=0.12, rounded_from=0.123)
    assert msgspec.json.decode(msgspec.json.encode(result))["roundedFrom"] == 0.123


def _error(frame: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_frame(frame)
    return info.value


OPEN = {
    "type": "OPEN",
    "timestamp": "2026-11-24T10:00:00Z",
    "accountId": "A1",
    "positionId": "p-1",
    "actionId": "a-9",
    "symbol": "EURUSD",
    "side": "BUY",
    "volume": 0.1,
    "metadata": {"executionType": "ENTRY", "userId": "u"},
}


def _with(**changes: object) -> str:
    frame = dict(OPEN)
    for key, value in changes.items():
        if value is None:
            del frame[key]
        else:
            frame[key] = value
    return json.dumps(frame)


def _specs(**changes: object) -> str:
    spec: dict[str, object] = {
        "symbol": "EURUSD",
        "volumeMin": 0.01,
        "volumeMax": 100,
        "volumeStep": 0.01,
        "contractSize": 100000,
        "digits": 5,
        "tradeMode": "FULL",
    }
    for key, value in changes.items():
        if value is None:
            del spec[key]
        else:
            spec[key] = value
    frame = {"type": "SYMBOL_SPECS", "timestamp": "2026-11-24T10:00:00Z", "accountId": "A1", "symbols": [spec]}
    return json.dumps(frame)


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("{", errors.MALFORMED_FRAME, None),
        (b"\xff\xfe{}", errors.MALFORMED_FRAME, None),
        ("[1]", errors.MALFORMED_FRAME, None),
        ("42", errors.MALFORMED_FRAME, None),
        ('{"accountId": "A1"}', errors.MISSING_FIELD, "type"),
        ('{"type": "TELEPORT"}', errors.UNKNOWN_TYPE, "type"),
        ('{"type": 5}', errors.UNKNOWN_TYPE, "type"),
        (_with(symbol=None), errors.MISSING_FIELD, "symbol"),
        (_with(metadata={"executionType": "ENTRY"}), errors.MISSING_FIELD, "metadata.userId"),
        (_with(side="HOLD"), errors.INVALID_FIELD, "side"),
        (_with(volume=0), errors.INVALID_FIELD, "volume"),
        (_with(volume="1"), errors.INVALID_FIELD, "volume"),
        (_with(accountId="a.b"), errors.INVALID_FIELD, "accountId"),
        (_with(accountId="a b"), errors.INVALID_FIELD, "accountId"),
        (_with(timestamp="yesterday"), errors.INVALID_FIELD, "timestamp"),
        (_with(metadata={"executionType": "LATER", "userId": "u"}), errors.INVALID_FIELD, "metadata.executionType"),
        (
            '{"type":"OPENED","timestamp":"2026-11-24T10:00:00Z","accountId":"A1","positionId":"p","status":"SUCCESS"}',
            errors.MISSING_FIELD,
            "mtTicket",
        ),
        (
            '{"type":"CLOSED","timestamp":"2026-11-24T10:00:00Z","accountId":"A1","positionId":"p","status":"SUCCESS",'
            '"mtTicket":"1","price":1.0}',
            errors.MISSING_FIELD,
            "profit",
        ),
        (
            '{"type":"POSITION_UPDATE","timestamp":"2026-11-24T10:00:00Z","accountId":"A1","positions":[{"mtTicket":"1"}]}',
            errors.MISSING_FIELD,
            "positions[0].symbol",
        ),
        (_specs(volumeStep=0), errors.INVALID_FIELD, "symbols[0].volumeStep"),
        (_specs(tradeMode="SOMETIMES"), errors.INVALID_FIELD, "symbols[0].tradeMode"),
        (_specs(fillingModes=["FOK", "LATER"]), errors.INVALID_FIELD, "symbols[0].fillingModes[1]"),
        (_specs(volumeMin=5, volumeMax=1), errors.INVALID_FIELD, "symbols[0]"),  # the message names both
        (_specs(digits=None), errors.MISSING_FIELD, "symbols[0].digits"),
    ],
)
def test_bad_frames_raise_one_typed_error_naming_the_field(frame: str | bytes, code: str, field: str | None) -> None:
    error = _error(frame)
    assert (error.code, error.field) == (code, field)
    assert error.message
    errors.lookup(error.code)  # every code comes from the registry


def test_error_names_the_offending_message() -> None:
    error = _error(_with(volume=-1))
    assert (error.ref_type, error.ref_id) == ("OPEN", "a-9")
    error = _error(_with(volume=-1, actionId=None))
    assert error.ref_id == "p-1"
    assert _error('{"type": "TELEPORT"}').message == "unknown message type 'TELEPORT'"


def test_close_order_needs_a_position_or_ticket() -> None:
    with pytest.raises(ProtocolError) as info:
        unpack_order_request(msgspec.msgpack.encode({"type": "CLOSE_ORDER", "accountId": "A1"}))
    assert info.value.field == "positionId"
    with pytest.raises(ProtocolError) as info:
        unpack_order_request(b"\xc1")
    assert info.value.code == errors.MALFORMED_FRAME


def test_random_and_mutated_input_never_raises_anything_else() -> None:
    rng = random.Random(20261124)
    valid = [encode_frame(m) for m in WIRE_MESSAGES]
    inputs: list[bytes] = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))) for _ in range(1500)]
    for _ in range(3000):
        frame = bytearray(rng.choice(valid))
        operation = rng.randint(0, 2)
        if operation == 0:
            frame = frame[: rng.randint(0, len(frame))]
        elif operation == 1:
            for _ in range(rng.randint(1, 4)):
                frame[rng.randrange(len(frame))] = rng.getrandbits(8)
        else:
            position = rng.randrange(len(frame))
            frame[position:position] = rng.choice([b'"', b"{", b"}", b",", b"null", b"-1e999", b'"type":"X",'])
        inputs.append(bytes(frame))
    decoded = 0
    codes: set[str] = set()
    for data in inputs:
        try:
            decode_frame(data)
            decoded += 1
        except ProtocolError as exc:
            codes.add(exc.code)
    assert codes == {errors.MALFORMED_FRAME, errors.UNKNOWN_TYPE, errors.MISSING_FIELD, errors.INVALID_FIELD}
    assert decoded < len(inputs)


def test_subjects() -> None:
    assert subjects.command("A-1_x") == "hb.ea.A-1_x.cmd"
    assert subjects.event("A1", "ACCOUNT_UPDATE") == "hb.ea.A1.evt.account_update"
    assert subjects.status("A1") == "hb.ea.A1.status"
    assert subjects.account_of("hb.ea.A1.evt.price") == "A1"
    for bad in ("a.b", "a b", "*", ">", "", "x" * 65):
        with pytest.raises(ValueError, match="subject token"):
            subjects.command(bad)
    with pytest.raises(ValueError, match="not an account subject"):
        subjects.account_of("hb.exec.order")


def test_error_registry_and_close_codes() -> None:
    codes = [c.code for c in errors.all_codes()]
    assert len(codes) == len(set(codes))
    assert errors.lookup(errors.OUTCOME_UNKNOWN).recovery == errors.Recovery.RECONCILE
    assert errors.lookup(errors.ACCOUNT_OFFLINE).recovery == errors.Recovery.RETRY
    with pytest.raises(KeyError):
        errors.lookup("NO_SUCH_CODE")
    listed = [code for codes in errors._CATEGORIES.values() for code in codes]
    assert sorted(listed) == sorted(codes)  # every code in exactly one category
    assert errors.lookup(errors.ORDER_REJECTED).category == errors.Category.MT5
    assert errors.lookup(errors.NATS_UNREACHABLE).category == errors.Category.NETWORK
    assert (CloseCode.HEARTBEAT_TIMEOUT, CloseCode.SESSION_REPLACED, CloseCode.MESSAGE_TOO_BIG) == (4001, 4002, 1009)


def test_subprotocol_versions() -> None:
    assert parse_subprotocol("hedgebridge.v1") == 1
    assert parse_subprotocol("hedgebridge.v12") == 12
    for bad in ("hedgebridge.vx", "hedgebridge.v", "other", "hedgebridge.v-1", "hedgebridge.v99999"):
        assert parse_subprotocol(bad) is None
