"""The EA's generated Protocol.mqh: checked in fresh (the drift check) and equal to libs/protocol's values.

The expected values are taken from libs/protocol by other routes than the generator's (the JSON schema of
the wire union, the error registry, the close-code enum), so a generator bug cannot hide behind itself.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import msgspec
import pytest

from hedgebridge.protocol import errors, messages, mql5gen, retcodes, version

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / mql5gen.RELATIVE_PATH
DEFINE = re.compile(r'^#define\s+(\w+)\s+("(?:[^"\\]|\\.)*"|-?\d+)', re.MULTILINE)


def defines(text: str) -> dict[str, str | int]:
    found: dict[str, str | int] = {}
    for name, value in DEFINE.findall(text):
        assert name not in found, f"{name} defined twice"
        found[name] = value[1:-1] if value.startswith('"') else int(value)
    return found


@pytest.fixture(scope="module")
def generated() -> str:
    return mql5gen.generate()


@pytest.fixture(scope="module")
def consts(generated: str) -> dict[str, str | int]:
    return defines(generated)


def wire_classes() -> set[type[messages.Message]]:
    return {*typing.get_args(messages.Frame), *messages.FROM_TERMINAL, *messages.TO_TERMINAL}


def test_checked_in_protocol_mqh_is_fresh(generated: str) -> None:
    current = CHECKED_IN.read_text(encoding="utf-8") if CHECKED_IN.exists() else ""
    diff = mql5gen.drift(current, generated, CHECKED_IN)
    assert not diff, f"{CHECKED_IN} is stale: run `{mql5gen.GENERATOR}` and commit the result\n{diff}"


def test_check_mode_passes_on_the_checked_in_file_and_fails_with_a_diff_on_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert mql5gen.main(["--check", "--output", str(CHECKED_IN)]) == 0
    other = ROOT / "mql5" / "README.md"
    assert mql5gen.main(["--check", "--output", str(other)]) == 1
    captured = capsys.readouterr()
    assert "+#define HB_PROTOCOL_VERSION" in captured.out
    assert "out of date" in captured.err
    assert mql5gen.GENERATOR in captured.err


def test_generation_is_deterministic_ascii_and_guarded(generated: str) -> None:
    assert mql5gen.generate() == generated
    assert generated.isascii()
    assert generated.startswith("//")
    assert "#ifndef HEDGEBRIDGE_PROTOCOL_MQH" in generated
    assert generated.rstrip().endswith("#endif // HEDGEBRIDGE_PROTOCOL_MQH")
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", generated), "no dates in a generated file"


def test_version_and_subprotocol(consts: dict[str, str | int]) -> None:
    assert consts["HB_PROTOCOL_VERSION"] == version.PROTOCOL_VERSION
    assert consts["HB_SUBPROTOCOL"] == version.subprotocol()
    assert version.parse_subprotocol(str(consts["HB_SUBPROTOCOL"])) == version.PROTOCOL_VERSION
    assert consts["HB_TYPE_FIELD"] == "type"


def test_every_wire_message_type_and_no_other(consts: dict[str, str | int]) -> None:
    expected = {messages.type_name(c) for c in wire_classes()}
    found = {v for k, v in consts.items() if k.startswith("HB_MSG_")}
    assert found == expected
    for name in expected:
        assert consts["HB_MSG_" + name] == name


def test_direction_predicates_follow_the_protocol(generated: str) -> None:
    def members(function: str) -> set[str]:
        body = re.search(rf"bool {function}\(const string type\)\s*\{{(.*?)\}}", generated, re.DOTALL)
        assert body is not None, function
        return set(re.findall(r"HB_MSG_(\w+)", body.group(1)))

    assert members("HbIsToTerminal") == {messages.type_name(c) for c in messages.TO_TERMINAL}
    assert members("HbIsFromTerminal") == {messages.type_name(c) for c in messages.FROM_TERMINAL}
    assert members("HbIsKnownType") == {messages.type_name(c) for c in wire_classes()}


def _schema_properties() -> tuple[set[str], dict[str, set[str]]]:
    """Every property name of every wire message and nested object, and each property's enum values,
    read from the JSON schema msgspec produces for the wire."""
    _, components = msgspec.json.schema_components(sorted(wire_classes(), key=messages.type_name))
    names: set[str] = set()
    enums: dict[str, set[str]] = {}

    def enum_values(schema: dict[str, typing.Any]) -> set[str]:
        values = {v for v in schema.get("enum", []) if isinstance(v, str)}
        for alternative in schema.get("anyOf", []):
            values |= enum_values(alternative)
        if schema.get("type") == "array":  # a list of enumerated values (fillingModes)
            values |= enum_values(schema.get("items", {}))
        return values

    for component in components.values():
        for name, prop in component.get("properties", {}).items():
            names.add(name)
            values = enum_values(prop)
            if values and name != "type":
                enums.setdefault(name, set()).update(values)
    names.discard("type")
    return names, enums


def test_every_field_name_is_the_wire_name(consts: dict[str, str | int]) -> None:
    names, _ = _schema_properties()
    found = {k: v for k, v in consts.items() if k.startswith("HB_FIELD_")}
    assert set(found.values()) == names
    for macro, wire_name in found.items():
        assert macro == mql5gen.field_macro(str(wire_name))
    assert consts["HB_FIELD_ACCOUNT_ID"] == "accountId"
    assert consts["HB_FIELD_HEARTBEAT_INTERVAL_MS"] == "heartbeatIntervalMs"
    assert consts["HB_FIELD_MT_TICKET"] == "mtTicket"


def test_enumerated_values(consts: dict[str, str | int]) -> None:
    _, enums = _schema_properties()
    expected = {mql5gen.value_macro(name, v): v for name, values in enums.items() for v in values}
    found = {
        k: v
        for k, v in consts.items()
        if k.startswith("HB_")
        and not k.startswith(("HB_MSG_", "HB_FIELD_", "HB_ERR_", "HB_CLOSE_", "HB_MAXLEN_"))
        and k not in {"HB_PROTOCOL_VERSION", "HB_SUBPROTOCOL", "HB_TYPE_FIELD"}
    }
    assert found == expected
    assert consts["HB_SIDE_BUY"] == "BUY"
    assert consts["HB_STATUS_FAILED"] == "FAILED"


def test_string_limits_are_what_the_gateway_accepts(consts: dict[str, str | int]) -> None:
    assert consts["HB_MAXLEN_ERROR_MESSAGE"] == 1024
    limit = consts["HB_MAXLEN_ACCOUNT_ID"]
    assert isinstance(limit, int)
    heartbeat = messages.Heartbeat(timestamp=messages.utcnow(), account_id="a" * limit)
    messages_json = msgspec.json.encode(heartbeat)
    assert msgspec.json.decode(messages_json, type=messages.Heartbeat).account_id == "a" * limit
    too_long = messages_json.replace(b"a" * limit, b"a" * (limit + 1))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(too_long, type=messages.Heartbeat)


def test_error_codes_are_the_registry(consts: dict[str, str | int], generated: str) -> None:
    found = {k: v for k, v in consts.items() if k.startswith("HB_ERR_")}
    assert set(found.values()) == {e.code for e in errors.all_codes()}
    for e in errors.all_codes():
        assert consts["HB_ERR_" + e.code] == e.code
        assert f'if(code == HB_ERR_{e.code}) return("{e.recovery}");' in generated


def test_close_codes_are_the_enum(consts: dict[str, str | int]) -> None:
    found = {k: v for k, v in consts.items() if k.startswith("HB_CLOSE_")}
    assert found == {"HB_CLOSE_" + c.name: c.value for c in errors.CloseCode}


def test_retcodes_are_not_generated_and_named_as_in_mql5(generated: str) -> None:
    assert "#define TRADE_RETCODE" not in generated, "MQL5 defines TRADE_RETCODE_* itself"
    table = mql5gen.MT5_TRADE_RETCODES
    assert len(set(table.values())) == len(table)
    # MetaTrader 5's documented values
    documented = {
        "TRADE_RETCODE_REQUOTE": 10004,
        "TRADE_RETCODE_REJECT": 10006,
        "TRADE_RETCODE_PLACED": 10008,
        "TRADE_RETCODE_DONE": 10009,
        "TRADE_RETCODE_DONE_PARTIAL": 10010,
        "TRADE_RETCODE_INVALID_VOLUME": 10014,
        "TRADE_RETCODE_PRICE_CHANGED": 10020,
        "TRADE_RETCODE_PRICE_OFF": 10021,
        "TRADE_RETCODE_SERVER_DISABLES_AT": 10026,
        "TRADE_RETCODE_CLIENT_DISABLES_AT": 10027,
        "TRADE_RETCODE_POSITION_CLOSED": 10036,
    }
    assert {name: table[name] for name in documented} == documented
    assert all(name == f"TRADE_RETCODE_{retcodes.name(value)}" for name, value in table.items())


def test_macro_names() -> None:
    assert mql5gen.macro_part("heartbeatIntervalMs") == "HEARTBEAT_INTERVAL_MS"
    assert mql5gen.macro_part("POSITION_UPDATE") == "POSITION_UPDATE"
    assert mql5gen.message_macro("PRICE") == "HB_MSG_PRICE"
    assert mql5gen.value_macro("executionType", "ENTRY") == "HB_EXECUTION_TYPE_ENTRY"


def test_a_new_message_type_is_picked_up_from_the_unions() -> None:
    listed = {messages.type_name(c) for c in mql5gen.wire_messages()}
    assert listed == {messages.type_name(c) for c in wire_classes()}
    assert [messages.type_name(c) for c in mql5gen.wire_messages()] == sorted(listed)
