"""Generate the Expert Advisor's ``Protocol.mqh`` from this package.

``python -m hedgebridge.protocol.mql5gen`` writes ``mql5/Include/HedgeBridge/Protocol.mqh``: the protocol
version and subprotocol, every EA-wire message type, every field name (the camelCase wire names msgspec
encodes), the values of enumerated fields, string length limits of what the terminal sends, the error-code
registry and the WebSocket close codes. ``--check`` compares the checked-in file with a fresh generation and
exits 1 with a diff when they differ.

MT5 trade server return codes are not generated: MQL5 has them built in (``TRADE_RETCODE_DONE`` …) and the
EA uses those names. ``MT5_TRADE_RETCODES`` maps those names to the values of ``retcodes`` so that tests can
check the names the EA uses.

The output is deterministic (sorted, no timestamps) and ASCII only, so that MetaEditor reads it in any
encoding setting.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from msgspec import inspect

from . import errors, messages, retcodes, version

RELATIVE_PATH = Path("mql5") / "Include" / "HedgeBridge" / "Protocol.mqh"
GENERATOR = "python -m hedgebridge.protocol.mql5gen"

# MetaTrader 5's trade server return codes (MqlTradeResult.retcode) by their MQL5 names, from retcodes.py.
# MQL5 defines every one of these names itself; they are listed here for checks, never written to Protocol.mqh.
MT5_TRADE_RETCODES: dict[str, int] = {f"TRADE_RETCODE_{name}": value for value, name in sorted(retcodes.NAMES.items())}

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_IDENT = re.compile(r"[^A-Za-z0-9]+")


def macro_part(text: str) -> str:
    """``heartbeatIntervalMs`` -> ``HEARTBEAT_INTERVAL_MS``; ``POSITION_UPDATE`` stays as it is."""
    return _NOT_IDENT.sub("_", _CAMEL_BOUNDARY.sub("_", text)).strip("_").upper()


def message_macro(type_name: str) -> str:
    return f"HB_MSG_{macro_part(type_name)}"


def field_macro(encode_name: str) -> str:
    return f"HB_FIELD_{macro_part(encode_name)}"


def value_macro(encode_name: str, value: str) -> str:
    return f"HB_{macro_part(encode_name)}_{macro_part(value)}"


def maxlen_macro(encode_name: str) -> str:
    return f"HB_MAXLEN_{macro_part(encode_name)}"


def error_macro(code: str) -> str:
    return f"HB_ERR_{macro_part(code)}"


def close_macro(name: str) -> str:
    return f"HB_CLOSE_{macro_part(name)}"


def _tag(cls: type[messages.Message]) -> str:
    return messages.type_name(cls)


def wire_messages() -> list[type[messages.Message]]:
    """Every message of the EA wire: the ``Frame`` union and both direction lists, sorted by type name."""
    found: dict[str, type[messages.Message]] = {}
    for cls in (*typing.get_args(messages.Frame), *messages.FROM_TERMINAL, *messages.TO_TERMINAL):
        found[_tag(cls)] = cls
    return [found[name] for name in sorted(found)]


@dataclass(frozen=True, slots=True)
class WireField:
    encode_name: str
    required: bool
    type: inspect.Type
    nested: tuple[WireField, ...] = ()


def _structs_in(t: inspect.Type) -> Iterator[inspect.StructType]:
    if isinstance(t, inspect.StructType):
        yield t
    elif isinstance(t, inspect.UnionType):
        for member in t.types:
            yield from _structs_in(member)
    elif isinstance(t, inspect.ListType | inspect.SetType | inspect.FrozenSetType | inspect.VarTupleType):
        yield from _structs_in(t.item_type)


def struct_fields(cls: type[msgspec.Struct]) -> tuple[WireField, ...]:
    """A Struct's fields by wire name (``msgspec.structs.fields``), with the fields of nested Structs."""
    info = inspect.type_info(cls)
    assert isinstance(info, inspect.StructType)
    types = {f.name: f for f in info.fields}
    result = []
    for f in msgspec.structs.fields(cls):
        described = types[f.name]
        nested = tuple(w for s in _structs_in(described.type) for w in struct_fields(s.cls))
        result.append(WireField(f.encode_name, described.required, described.type, nested))
    return tuple(result)


def _walk(fields: Iterable[WireField]) -> Iterator[WireField]:
    for f in fields:
        yield f
        yield from _walk(f.nested)


def _literals(t: inspect.Type) -> tuple[str, ...]:
    if isinstance(t, inspect.LiteralType):
        return tuple(v for v in t.values if isinstance(v, str))
    if isinstance(t, inspect.UnionType):
        return tuple(v for member in t.types for v in _literals(member))
    if isinstance(t, inspect.ListType):  # a list of enumerated values (fillingModes)
        return _literals(t.item_type)
    return ()


def _max_length(t: inspect.Type) -> int | None:
    if isinstance(t, inspect.StrType):
        limits = [t.max_length] if t.max_length is not None else []
        if t.pattern is not None:
            bounded = re.search(r"\{\d+,(\d+)\}(?:\$|\\Z)$", t.pattern)
            if bounded:
                limits.append(int(bounded.group(1)))
        return min(limits) if limits else None
    if isinstance(t, inspect.UnionType):
        found = [m for m in (_max_length(member) for member in t.types) if m is not None]
        return min(found) if found else None
    return None


def _describe(fields: Sequence[WireField]) -> str:
    parts = []
    for f in fields:
        name = f.encode_name + ("" if f.required else "?")
        if f.nested:
            name += "{" + ", ".join(_describe([n]) for n in f.nested) + "}"
        parts.append(name)
    return ", ".join(parts)


@dataclass(slots=True)
class _Defines:
    """``#define`` lines, refusing two values for one name."""

    values: dict[str, str] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, value: str, comment: str = "") -> None:
        previous = self.values.get(name)
        if previous is not None and previous != value:
            raise ValueError(f"{name} would stand for both {previous} and {value}")
        self.values[name] = value
        if comment:
            self.comments[name] = comment

    def lines(self) -> list[str]:
        width = max((len(n) for n in self.values), default=0)
        out = []
        for name in sorted(self.values):
            line = f"#define {name.ljust(width)} {self.values[name]}"
            if name in self.comments:
                line += f"  // {self.comments[name]}"
            out.append(line.rstrip())
        return out


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ASCII = str.maketrans({"\u2026": "...", "\u2014": "-", "\u2013": "-", "\u2192": "->", "\u2018": "'", "\u2019": "'"})


def _ascii(text: str) -> str:
    return text.translate(_ASCII).encode("ascii", "replace").decode("ascii")


def _direction(cls: type[messages.Message]) -> str:
    to_t = cls in messages.TO_TERMINAL
    from_t = cls in messages.FROM_TERMINAL
    if to_t and from_t:
        return "both ways"
    if to_t:
        return "gateway -> terminal"
    if from_t:
        return "terminal -> gateway"
    return "wire"


def _predicate(name: str, doc: str, classes: Iterable[type[messages.Message]]) -> list[str]:
    tests = [f"type == {message_macro(_tag(c))}" for c in sorted(classes, key=_tag)]
    body = "\n      || ".join(tests) if tests else "false"
    return [f"// {doc}", f"bool {name}(const string type)", "  {", f"   return({body});", "  }"]


def generate() -> str:
    """The text of Protocol.mqh for the protocol as this package defines it."""
    wire = wire_messages()
    out: list[str] = [
        "//+------------------------------------------------------------------+",
        "//| Protocol.mqh - hedgebridge EA wire protocol constants             |",
        "//+------------------------------------------------------------------+",
        f"// Generated by `{GENERATOR}` from libs/protocol. Do not edit:",
        "// change libs/protocol and run the generator again (tests fail while this file is stale).",
        "// MT5 trade server return codes are MQL5's own TRADE_RETCODE_* constants.",
        "#ifndef HEDGEBRIDGE_PROTOCOL_MQH",
        "#define HEDGEBRIDGE_PROTOCOL_MQH",
        "",
        "// --- version: offered as Sec-WebSocket-Protocol at the handshake",
    ]
    head = _Defines()
    head.add("HB_PROTOCOL_VERSION", str(version.PROTOCOL_VERSION))
    head.add("HB_SUBPROTOCOL", _quote(version.subprotocol()))
    head.add("HB_TYPE_FIELD", _quote(str(messages.Message.__struct_config__.tag_field)), "the tag naming a message")
    out += head.lines()

    out += ["", "// --- message types (the value of the `type` field)"]
    types = _Defines()
    for cls in wire:
        types.add(message_macro(_tag(cls)), _quote(_tag(cls)), _direction(cls))
    out += types.lines()

    out += ["", "// --- fields of each message (? = optional, {..} = nested object or list of objects)"]
    for cls in wire:
        out.append(_ascii(f"// {_tag(cls)}: {_describe(struct_fields(cls))}"))

    names = _Defines()
    values = _Defines()
    limits: dict[str, int] = {}
    for cls in wire:
        for f in _walk(struct_fields(cls)):
            names.add(field_macro(f.encode_name), _quote(f.encode_name))
            for v in _literals(f.type):
                values.add(value_macro(f.encode_name, v), _quote(v))
            limit = _max_length(f.type)
            if limit is not None and cls in messages.FROM_TERMINAL:
                limits[f.encode_name] = min(limit, limits.get(f.encode_name, limit))
    out += ["", "// --- field names (camelCase, as on the wire)"]
    out += names.lines()
    out += ["", "// --- values of enumerated fields"]
    out += values.lines()
    out += ["", "// --- longest string the gateway accepts in a field the terminal sends (characters)"]
    maxlen = _Defines()
    for name, limit in limits.items():
        maxlen.add(maxlen_macro(name), str(limit))
    out += maxlen.lines()

    out += ["", "// --- direction of each message type"]
    out += _predicate("HbIsToTerminal", "a type the gateway sends to a terminal", messages.TO_TERMINAL)
    out += _predicate("HbIsFromTerminal", "a type a terminal sends to the gateway", messages.FROM_TERMINAL)
    out += _predicate("HbIsKnownType", "a type of the EA wire", wire)

    out += ["", "// --- error codes (ERROR frames' `code`): severity, recovery, meaning"]
    codes = _Defines()
    registry = sorted(errors.all_codes(), key=lambda e: e.code)
    for e in registry:
        codes.add(error_macro(e.code), _quote(e.code), _ascii(f"{e.severity}, {e.recovery}: {e.description}"))
    out += codes.lines()
    out += [
        "",
        "// the recovery an error code declares (FIX_INPUT, RETRY, RECONNECT, RECONCILE, ESCALATE), '' when unknown",
        "string HbErrorRecovery(const string code)",
        "  {",
    ]
    for e in registry:
        out.append(f"   if(code == {error_macro(e.code)}) return({_quote(str(e.recovery))});")
    out += ['   return("");', "  }"]

    out += ["", "// --- WebSocket close codes"]
    closes = _Defines()
    for member in sorted(errors.CloseCode, key=lambda c: c.value):
        closes.add(close_macro(member.name), str(member.value))
    out += closes.lines()

    out += ["", "#endif // HEDGEBRIDGE_PROTOCOL_MQH", ""]
    return "\n".join(out)


def default_output() -> Path:
    """``mql5/Include/HedgeBridge/Protocol.mqh`` in the current directory when it has ``mql5/``, else in the
    source tree this module belongs to."""
    here = Path.cwd()
    if (here / "mql5").is_dir():
        return here / RELATIVE_PATH
    return Path(__file__).resolve().parents[4] / RELATIVE_PATH


def drift(current: str, fresh: str, path: Path) -> str:
    """A unified diff from the checked-in text to the fresh one ('' when they are equal)."""
    if current == fresh:
        return ""
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        fresh.splitlines(keepends=True),
        fromfile=f"{path} (checked in)",
        tofile=f"{path} (generated)",
    )
    return "".join(diff)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=GENERATOR, description="Write mql5/Include/HedgeBridge/Protocol.mqh")
    parser.add_argument("--output", type=Path, default=None, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs from a fresh generation")
    args = parser.parse_args(argv)
    path: Path = args.output or default_output()
    fresh = generate()
    if args.check:
        current = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        diff = drift(current, fresh, path)
        if diff:
            sys.stdout.write(diff)
            sys.stderr.write(f"{path} is out of date with libs/protocol: run `{GENERATOR}`\n")
            return 1
        sys.stderr.write(f"{path} is up to date\n")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fresh, encoding="ascii", newline="\n")
    sys.stderr.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
