"""Parser-level checks of the Expert Advisor's MQL5 sources (no MQL5 compiler runs here).

- brackets, braces and parentheses balance outside strings and comments, in every .mq5/.mqh;
- every #include resolves to a file in mql5/ (or to the terminal's standard library for the few listed);
- every function of a `#import "hedgebridge_ws.dll"` block is exported by the DLL: the export table of the
  built DLL (hedgebridge_ws.dll via objdump -p, libhedgebridge_ws.so via nm -D, under dll/build/), else the
  declarations of dll/include/hedgebridge_ws.h; only the UTF-16 (W) variants take MQL5 strings;
- the EA handles every message type the gateway sends a terminal (TO_TERMINAL) and sends every type a
  terminal sends (FROM_TERMINAL), and no other; every message it builds writes the message's required fields
  (nested ones included); every HB_* constant it uses is defined;
- every TRADE_RETCODE_* it names is one of MQL5's built-in trade server return codes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from hedgebridge.protocol import messages, mql5gen
from hedgebridge.sim.ea.transform import blank

ROOT = Path(__file__).resolve().parents[2]
MQL5 = ROOT / "mql5"
DLL = ROOT / "dll"
DLL_NAME = "hedgebridge_ws.dll"
# Headers of the MetaTrader 5 standard library (MQL5/Include of every terminal) the EA may include.
MQL5_STANDARD_LIBRARY = {"Trade/Trade.mqh"}

SOURCES = sorted(p for p in [*MQL5.rglob("*.mq5"), *MQL5.rglob("*.mqh")] if "testing" not in p.relative_to(MQL5).parts)
# mql5/testing holds the MQL5 runtime for tests (C++), not EA sources
EA_SOURCES = [p for p in SOURCES if p.name != "Protocol.mqh"]


def strip(text: str, *, keep_strings: bool = False) -> str:
    return blank(text, keep_strings=keep_strings)


def unbalanced(text: str) -> str | None:
    """None when (), [] and {} balance in code; else what is wrong and where."""
    code = strip(text)
    code = re.sub(r"^\s*#include\s*<[^>]*>", "", code, flags=re.MULTILINE)
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[tuple[str, int]] = []
    for index, ch in enumerate(code):
        line = code.count("\n", 0, index) + 1
        if ch in "([{":
            stack.append((ch, line))
        elif ch in pairs:
            if not stack or stack[-1][0] != pairs[ch]:
                return f"unexpected {ch!r} on line {line}"
            stack.pop()
    if stack:
        ch, line = stack[-1]
        return f"{ch!r} opened on line {line} is never closed"
    return None


def test_there_are_sources() -> None:
    names = {p.relative_to(MQL5).as_posix() for p in SOURCES}
    assert "Experts/HedgeSystemConnector.mq5" in names
    for include in ("Protocol", "Json", "WebSocketManager", "OrderManager", "PositionMonitor", "AccountMonitor"):
        assert f"Include/HedgeBridge/{include}.mqh" in names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(MQL5).as_posix())
def test_brackets_balance(path: Path) -> None:
    assert unbalanced(path.read_text(encoding="utf-8")) is None, path


def test_the_bracket_check_catches_what_it_must() -> None:
    assert unbalanced('void f() { string s = "}"; /* { */ // (\n }') is None
    assert unbalanced("void f() { if(a) { }") is not None
    assert unbalanced("int a[2) ;") is not None
    assert unbalanced("char c = '{'; void g() {}") is None


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(MQL5).as_posix())
def test_sources_are_ascii(path: Path) -> None:
    text = path.read_bytes()
    assert text.isascii(), f"{path}: non-ASCII bytes (MetaEditor may read the file in another code page)"


INCLUDE = re.compile(r'^\s*#include\s*([<"])([^>"]+)[>"]', re.MULTILINE)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(MQL5).as_posix())
def test_includes_resolve(path: Path) -> None:
    for kind, target in INCLUDE.findall(strip(path.read_text(encoding="utf-8"), keep_strings=True)):
        name = target.replace("\\", "/")
        candidates = [MQL5 / "Include" / name]
        if kind == '"':
            candidates.insert(0, path.parent / name)
        if any(c.is_file() for c in candidates):
            continue
        assert kind == "<", f"{path.name}: #include {target} resolves to nothing in mql5/"
        assert name in MQL5_STANDARD_LIBRARY, f"{path.name}: #include <{target}> is neither in mql5/ nor listed"


IMPORT_BLOCK = re.compile(r'#import\s+"([^"]+)"(.*?)#import', re.DOTALL)
DECLARATION = re.compile(r"^\s*([\w\s]+?)\b(\w+)\s*\(([^)]*)\)\s*;", re.MULTILINE)


def dll_imports() -> dict[str, str]:
    """Every function the EA imports from the DLL, with its parameter list."""
    found: dict[str, str] = {}
    for path in SOURCES:
        code = strip(path.read_text(encoding="utf-8"), keep_strings=True)
        for library, body in IMPORT_BLOCK.findall(code):
            if library.lower() != DLL_NAME:
                continue
            for _, name, params in DECLARATION.findall(body):
                found[name] = params
    return found


def parse_pe_exports(objdump_p: str) -> set[str] | None:
    """The names of the export table in `objdump -p` output (None when it has no export table)."""
    if "[Ordinal/Name Pointer] Table" not in objdump_p:
        return None
    table = objdump_p.split("[Ordinal/Name Pointer] Table", 1)[1]
    names: set[str] = set()
    for line in table.splitlines()[1:]:
        match = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s*$", line)
        if match:
            names.add(match.group(1))
        elif names:
            break
    return names


def parse_nm_exports(nm_output: str) -> set[str]:
    """Defined code symbols (type T) of `nm -D --defined-only` output."""
    rows = (line.split() for line in nm_output.splitlines())
    return {row[2] for row in rows if len(row) == 3 and row[1] == "T"}


def parse_header_exports(header: str) -> set[str]:
    """Functions declared with the header's dllexport macro."""
    text = strip(header)
    macros = set(re.findall(r"#define\s+(\w+)\s+__declspec\s*\(\s*dllexport\s*\)", text))
    names: set[str] = set()
    for macro in macros:
        names |= set(re.findall(rf"^\s*{macro}\b[^;()]*?\b(\w+)\s*\([^;]*\)\s*;", text, flags=re.MULTILINE))
    return names


def exports_from_pe(path: Path) -> set[str] | None:
    for tool in ("x86_64-w64-mingw32-objdump", "objdump"):
        exe = shutil.which(tool)
        if exe is None:
            continue
        result = subprocess.run([exe, "-p", str(path)], capture_output=True, text=True, timeout=60, check=False)
        names = parse_pe_exports(result.stdout) if result.returncode == 0 else None
        if names is not None:
            return names
    return None


def exports_from_elf(path: Path) -> set[str] | None:
    exe = shutil.which("nm")
    if exe is None:
        return None
    result = subprocess.run(
        [exe, "-D", "--defined-only", str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    return parse_nm_exports(result.stdout)


# Where dll/Makefile puts its builds (build/windows, build/linux), and the flat build/ layout.
PE_BUILDS = [DLL / "build" / "windows" / DLL_NAME, DLL / "build" / DLL_NAME]
ELF_BUILDS = [DLL / "build" / "linux" / "libhedgebridge_ws.so", DLL / "build" / "libhedgebridge_ws.so"]


def dll_exports() -> tuple[set[str], str]:
    """The DLL's exported names and where they were read: the Windows build first (what users install),
    then the Linux build, then the header."""
    for pe in PE_BUILDS:
        if pe.is_file():
            names = exports_from_pe(pe)
            if names is not None:
                return names, f"{pe} (PE export table)"
    for elf in ELF_BUILDS:
        if elf.is_file():
            found = exports_from_elf(elf)
            if found is not None:
                return found, f"{elf} (dynamic symbols)"
    header = DLL / "include" / "hedgebridge_ws.h"
    if header.is_file():
        return parse_header_exports(header.read_text(encoding="utf-8")), f"{header} (declarations)"
    pytest.skip("no built DLL (dll/build/) and no dll/include/hedgebridge_ws.h to read the export list from")


def test_every_import_is_a_dll_export() -> None:
    imports = dll_imports()
    assert imports, f'no #import "{DLL_NAME}" block in the EA'
    exports, source = dll_exports()
    assert exports, f"no exports read from {source}"
    missing = sorted(set(imports) - exports)
    assert not missing, f"imported but not exported by {source}: {missing}"


def test_only_utf16_variants_take_strings() -> None:
    imports = dll_imports()
    for name, params in imports.items():
        if re.search(r"\bstring\b", params):
            assert name.endswith("W"), f"{name} takes an MQL5 string (UTF-16) but is not a W function"
        if f"{name}W" in imports or name in {"ConnectWebSocket", "WsSend", "ReceiveMessage", "WsGetLastErrorMessage"}:
            raise AssertionError(f"{name} is a UTF-8 function with a UTF-16 twin: import {name}W instead")
        if re.search(r"\buchar\b", params):
            assert not name.endswith("W"), f"{name} is a W function but gets bytes"


def test_the_export_readers_read_real_formats() -> None:
    header = (
        "#ifdef _WIN32\n#define API __declspec(dllexport)\n#endif\n"
        "/* API int Old(void); */\nAPI int __stdcall Foo(const char* a);\nAPI void Bar(void);\nint Baz(void);\n"
    )
    assert parse_header_exports(header) == {"Foo", "Bar"}
    objdump = (
        "The Export Tables (interpreted .edata section contents)\n\n[Ordinal/Name Pointer] Table\n"
        "\t[   0] ConnectWebSocket\n\t[   1] WsSend\n\nThe Function Table\n"
    )
    assert parse_pe_exports(objdump) == {"ConnectWebSocket", "WsSend"}
    assert parse_pe_exports("no exports here") is None
    nm = "0000000000012340 T ConnectWebSocketW\n                 U malloc\n0000000000012350 T WsSendW\n0000 B data\n"
    assert parse_nm_exports(nm) == {"ConnectWebSocketW", "WsSendW"}


def ea_code() -> str:
    return "\n".join(strip(p.read_text(encoding="utf-8")) for p in EA_SOURCES)


def protocol_defines() -> dict[str, str]:
    text = (MQL5 / "Include" / "HedgeBridge" / "Protocol.mqh").read_text(encoding="utf-8")
    return dict(re.findall(r'^#define\s+(\w+)\s+"([^"]*)"', text, flags=re.MULTILINE))


def function_body(code: str, name: str) -> str:
    """The body of the one function or method called name (between its braces)."""
    starts = [m.end() for m in re.finditer(rf"\b{name}\s*\([^;{{]*\)\s*\{{", code)]
    assert len(starts) == 1, f"expected one definition of {name}, found {len(starts)}"
    depth, i = 1, starts[0]
    while depth:
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        i += 1
    return code[starts[0] : i - 1]


def test_every_message_type_the_gateway_sends_is_handled() -> None:
    dispatch = function_body(ea_code(), "Dispatch")
    handled = set(re.findall(r"\btype\s*==\s*(HB_MSG_\w+)", dispatch))
    defines = protocol_defines()
    undefined = sorted(h for h in handled if h not in defines)
    assert not undefined, f"handled types not in Protocol.mqh: {undefined}"
    assert {defines[h] for h in handled} == {messages.type_name(c) for c in messages.TO_TERMINAL}


def test_every_message_type_a_terminal_sends_is_sent() -> None:
    code = ea_code()
    sent = set(re.findall(r"Str\(\s*HB_TYPE_FIELD\s*,\s*(HB_MSG_\w+)\s*\)", code))
    sent |= set(re.findall(r"SendOrderEvent\(\s*(HB_MSG_\w+)", code))
    defines = protocol_defines()
    undefined = sorted(s for s in sent if s not in defines)
    assert not undefined, f"sent types not in Protocol.mqh: {undefined}"
    assert {defines[s] for s in sent} == {messages.type_name(c) for c in messages.FROM_TERMINAL}


def test_every_hb_constant_used_is_defined() -> None:
    everything = "\n".join(strip(p.read_text(encoding="utf-8")) for p in SOURCES)
    defined = set(re.findall(r"#define\s+(HB_\w+)", everything))
    for body in re.findall(r"\benum\s+\w+\s*\{([^}]*)\}", everything):
        defined |= set(re.findall(r"\b(HB_\w+)\b", body))
    used = set(re.findall(r"\b(HB_[A-Z0-9_]+)\b", ea_code()))
    assert not sorted(used - defined), f"used but never defined: {sorted(used - defined)}"


def test_retcodes_are_mql5_builtins() -> None:
    used = set(re.findall(r"\b(TRADE_RETCODE_\w+)\b", ea_code()))
    assert used, "the EA reports MT5 retcodes by their MQL5 names"
    unknown = sorted(used - set(mql5gen.MT5_TRADE_RETCODES))
    assert not unknown, f"not MQL5 trade server return codes: {unknown}"


FUNCTION_HEADER = re.compile(r"\b(\w+)\s*\([^(){};]*\)\s*(?:const\s*)?$")


def function_bodies(code: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of every function or method body in code."""
    bodies: list[tuple[str, int, int]] = []
    stack: list[int] = []
    for index, ch in enumerate(code):
        if ch == "{":
            stack.append(index)
        elif ch == "}" and stack:
            start = stack.pop()
            header = FUNCTION_HEADER.search(code[max(0, start - 300) : start])
            if header and header.group(1) not in {"if", "for", "while", "switch", "return"}:
                bodies.append((header.group(1), start, index))
    return bodies


def required_fields(cls: type[messages.Message]) -> set[str]:
    """Wire names of the required fields of a message and of the objects nested in it."""
    names: set[str] = set()

    def walk(t: msgspec.inspect.Type) -> None:
        if isinstance(t, msgspec.inspect.StructType):
            for f in t.fields:
                if f.required:
                    names.add(f.encode_name)
                    walk(f.type)
        elif isinstance(t, msgspec.inspect.ListType):
            walk(t.item_type)
        elif isinstance(t, msgspec.inspect.UnionType):
            for member in t.types:
                walk(member)

    walk(msgspec.inspect.type_info(cls))
    return names


def test_every_message_the_ea_builds_has_its_required_fields() -> None:
    code = ea_code()
    defines = protocol_defines()
    bodies = function_bodies(code)
    by_type: dict[str, list[str]] = {}
    for match in re.finditer(r"Str\(\s*HB_TYPE_FIELD\s*,\s*(HB_MSG_\w+)\s*\)", code):
        enclosing = [b for b in bodies if b[1] < match.start() < b[2]]
        assert enclosing, f"{match.group(1)} written outside a function"
        _, start, end = min(enclosing, key=lambda b: b[2] - b[1])
        by_type.setdefault(defines[match.group(1)], []).append(code[start:end])
    order_event = [code[s:e] for name, s, e in bodies if name == "SendOrderEvent"]
    for constant in set(re.findall(r"SendOrderEvent\(\s*(HB_MSG_\w+)", code)):
        by_type.setdefault(defines[constant], []).extend(order_event)
    field_values = {k: v for k, v in defines.items() if k.startswith("HB_FIELD_")}
    classes = {messages.type_name(c): c for c in messages.FROM_TERMINAL}
    assert set(by_type) == set(classes)
    for type_name, builders in by_type.items():
        for body in builders:
            written = {field_values[f] for f in re.findall(r"\b(HB_FIELD_\w+)\b", body) if f in field_values}
            missing = sorted(required_fields(classes[type_name]) - written)
            assert not missing, f"a {type_name} the EA builds lacks the required fields {missing}"


def test_the_required_field_check_sees_nested_fields() -> None:
    assert {"mtTicket", "openPrice", "positions", "accountId"} <= required_fields(messages.PositionUpdate)
    assert "actionId" not in required_fields(messages.OpenedEvent)
    bodies = function_bodies("class C { void F(int a) { if(a) { x(); } } };\nint G(void)\n  {\n   return(1);\n  }\n")
    assert sorted(name for name, _, _ in bodies) == ["F", "G"]


def test_the_native_transport_takes_keys_from_the_hashed_generator_not_mathrand() -> None:
    code = strip((MQL5 / "Include" / "HedgeBridge" / "WebSocketManager.mqh").read_text(encoding="utf-8"))
    start = code.index("class CNativeTransport")
    native = code[start : code.index("\nclass ", start + 1)]
    assert "MathRand" not in native
    assert "m_random.Fill(mask" in native
    assert "m_random.Fill(nonce" in native
