"""MQL5 sources to C++ for the MQL5 runtime for tests (``mql5/testing/runtime``).

The Expert Advisor is compiled unchanged: this module rewrites only what C++ does not accept, each rule small
and listed in ``mql5/testing/README.md``:

- ``#property`` lines are dropped; ``#include <Dir\\File.mqh>`` takes forward slashes;
- ``input T name = value;`` becomes a global registered in the harness's table of inputs;
- dynamic arrays ``T name[]`` (declarations and ``T &name[]`` parameters) become ``MqlArray<T>``;
- ``#import "lib.dll" … #import`` becomes wrappers that call the library's functions, bound when the EA loads;
- member access through an object pointer (MQL5 writes ``p.Member``) becomes ``p->Member``, for names the
  sources declare as pointers (variables, members, parameters, arrays of pointers, functions returning one);
- ``new`` and ``delete`` go through the runtime's registry so that ``CheckPointer`` answers as MQL5's does.

What it cannot translate it refuses with the file, the line and the reason (``TransformError``), instead of
guessing: a name declared as a pointer in one place and as an object in another, a static array, an
``#import`` signature with a type it cannot marshal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

IDENT = r"[A-Za-z_]\w*"


class TransformError(ValueError):
    """The sources use something this transform cannot translate; names the file and line."""


@dataclass(frozen=True, slots=True)
class Input:
    type: str
    name: str


@dataclass(frozen=True, slots=True)
class Import:
    library: str
    ret: str
    name: str
    params: tuple[tuple[str, str], ...]  # (MQL5 parameter type as written, name)


@dataclass(slots=True)
class Program:
    """The translated sources: one C++ text per file, plus what the harness needs to know."""

    files: dict[str, str] = field(default_factory=dict)  # relative path -> C++ text
    inputs: list[Input] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    handlers: set[str] = field(default_factory=set)  # OnInit, OnTimer, ...


def blank(text: str, *, keep_strings: bool = False) -> str:
    """The text with comments (and, unless ``keep_strings``, the insides of string and character literals)
    replaced by spaces: same length, same lines, so positions still name the right line. A literal ends at its
    line's end at the latest."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in text[i:j]]
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j, n)
            if not keep_strings:
                out[i + 1 : j] = " " * (j - i - 1)
            i = j + 1
        else:
            i += 1
    return "".join(out)


HANDLERS = ("OnInit", "OnDeinit", "OnTimer", "OnTick", "OnTradeTransaction", "OnTrade", "OnChartEvent")
_C_TYPES = {"int": "int", "void": "void", "long": "long", "uint": "unsigned int", "double": "double"}
_POINTER_DECL = re.compile(rf"\b({IDENT})\s*\*\s*({IDENT})\s*(\[\s*\]|\(|[;,=)])")
_OBJECT_DECL = re.compile(rf"\b(C[A-Z]\w*)\s+&?\s*({IDENT})\s*[;,=)(]")
_KEYWORDS = {"return", "delete", "new", "const", "static", "virtual", "else", "case"}


class _Pointers:
    """Names the sources declare as object pointers, and the ones declared as objects (a clash is refused)."""

    def __init__(self) -> None:
        self.variables: dict[str, str] = {}  # name -> where first declared
        self.arrays: set[str] = set()
        self.functions: set[str] = set()
        self.objects: dict[str, str] = {}

    def scan(self, path: str, blank: str) -> None:
        for m in _POINTER_DECL.finditer(blank):
            type_, name, tail = m.group(1), m.group(2), m.group(3)
            if type_ in _KEYWORDS or type_[0].islower():
                continue
            where = f"{path}:{blank.count(chr(10), 0, m.start()) + 1}"
            if tail == "(":
                self.functions.add(name)
            elif tail.startswith("["):
                self.arrays.add(name)
            else:
                self.variables.setdefault(name, where)
        for m in _OBJECT_DECL.finditer(blank):
            if m.group(1) in _KEYWORDS:
                continue
            self.objects.setdefault(m.group(2), f"{path}:{blank.count(chr(10), 0, m.start()) + 1}")

    def check(self) -> None:
        for name, where in self.variables.items():
            if name in self.objects and name not in self.functions:
                raise TransformError(
                    f"{where}: '{name}' is declared as an object pointer here and as an object at "
                    f"{self.objects[name]}; rename one (the transform cannot tell which '.' is which)"
                )


def _matching(text: str, i: int, open_: str = "(", close: str = ")") -> int:
    """Index just past the bracket closing the one at ``i``."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                return j + 1
    raise TransformError(f"unbalanced '{open_}' at offset {i}")


def _arrows(text: str, blank: str, ptrs: _Pointers) -> str:
    """``p.Member`` → ``p->Member`` where ``p`` is a pointer (a variable, ``a[i]`` of a pointer array, ``F(..)``)."""
    edits: list[tuple[int, int]] = []  # (index of '.', 1)
    for m in re.finditer(rf"(?<!\w)({IDENT})\b", blank):
        name, end = m.group(1), m.end()
        j = end
        if name == "this" or (name in ptrs.variables and name not in ptrs.functions):
            pass
        elif name in ptrs.arrays and j < len(blank) and blank[j] == "[":
            j = _matching(blank, j, "[", "]")
        elif name in ptrs.functions and j < len(blank) and blank[j] == "(":
            j = _matching(blank, j)
        else:
            continue
        k = j
        while k < len(blank) and blank[k] in " \t":
            k += 1
        member = k + 1 < len(blank) and (blank[k + 1].isalpha() or blank[k + 1] == "_")
        if k < len(blank) and blank[k] == "." and member:
            edits.append((k, 1))
    for k, _ in reversed(edits):
        text = text[:k] + "->" + text[k + 1 :]
    return text


def _arrays(text: str) -> str:
    """``T name[]`` → ``MqlArray<T> name``, ``T &name[]`` → ``MqlArray<T> &name`` (pointers kept in T), and
    static ``T name[N];`` → ``MqlArray<T> name{mqlrt::fixed, N};``."""
    text = re.sub(
        rf"\b(?!return\b)({IDENT})(\s*\*)?\s+({IDENT})\s*\[\s*(\w+)\s*\]\s*;",
        lambda m: f"MqlArray<{m.group(1)}{'*' if m.group(2) else ''}> {m.group(3)}{{mqlrt::fixed, {m.group(4)}}};",
        text,
    )
    return re.sub(
        rf"\b({IDENT})(\s*\*)?\s*(&)?\s*({IDENT})\s*\[\s*\]",
        lambda m: f"MqlArray<{m.group(1)}{'*' if m.group(2) else ''}> {m.group(3) or ''}{m.group(4)}",
        text,
    )


def _new_delete(text: str, blank: str) -> str:
    out: list[str] = []
    last = 0
    for m in re.finditer(rf"\bnew\s+({IDENT})\s*", blank):
        j = m.end()
        if j < len(blank) and blank[j] == "(":
            j = _matching(blank, j)
        out.append(text[last : m.start()])
        out.append(f"mqlrt::dynamic({text[m.start() : j]})")
        last = j
    out.append(text[last:])
    text = "".join(out)
    return re.sub(r"\bdelete\s+([^;]+);", r"mqlrt::destroy(\1);", text)


_INPUT = re.compile(rf"^(\s*)(?:sinput|input)\s+({IDENT})\s+({IDENT})\s*(=[^;]*)?;", re.M)
_INCLUDE = re.compile(r'^\s*#include\s+([<"])([^>"]+)[>"]', re.M)


def _line(path: str, text: str, offset: int) -> str:
    return f"{path}:{text.count(chr(10), 0, offset) + 1}"


def _imports(path: str, text: str, program: Program) -> str:
    """``#import "lib.dll"`` blocks → wrappers in their place (so ``#ifdef`` around a block still decides)."""

    def block(m: re.Match[str]) -> str:
        library = m.group(1)
        found: list[Import] = []
        for raw in m.group(2).splitlines():
            decl = raw.split("//")[0].strip()
            if not decl:
                continue
            d = re.fullmatch(rf"({IDENT})\s+({IDENT})\s*\((.*)\)\s*;", decl)
            if d is None:
                raise TransformError(f"{_line(path, text, m.start())}: cannot read the imported declaration {decl!r}")
            params: list[tuple[str, str]] = []
            for p in [s.strip() for s in d.group(3).split(",") if s.strip() and s.strip() != "void"]:
                pm = re.fullmatch(rf"(const\s+)?({IDENT})\s*(&)?\s*({IDENT})\s*(\[\s*\])?", p)
                if pm is None:
                    raise TransformError(f"{_line(path, text, m.start())}: cannot marshal the parameter {p!r}")
                kind = pm.group(2) + ("[]" if pm.group(5) else "")
                if kind not in {"string", "int", "uint", "long", "double", "ushort[]", "uchar[]"}:
                    raise TransformError(f"{_line(path, text, m.start())}: cannot marshal '{kind}' to {library}")
                if pm.group(3) and not pm.group(5) and not (pm.group(1) and kind == "string"):
                    # an output through a reference (int &n, string &s): the wrappers pass values only
                    raise TransformError(
                        f"{_line(path, text, m.start())}: cannot marshal the reference parameter {p!r} to {library}"
                        " (not supported yet)"
                    )
                params.append((kind, pm.group(4)))
            if d.group(1) not in _C_TYPES:
                raise TransformError(f"{_line(path, text, m.start())}: cannot marshal the result type {d.group(1)!r}")
            found.append(Import(library, d.group(1), d.group(2), tuple(params)))
        program.imports.extend(found)
        lines = m.group(0).count("\n")
        return wrappers(found).replace("\n", " ") + "\n" * lines

    return re.sub(r'^\s*#import\s+"([^"]+)"\s*\n(.*?)^\s*#import\s*$', block, text, flags=re.M | re.S)


def wrappers(imports: list[Import]) -> str:
    """C++ wrappers for imported functions: each marshals its arguments and calls through a pointer that the
    harness binds when the EA loads (``mqlrt::ImportSlot`` registers it)."""
    out: list[str] = []
    for imp in imports:
        c_params: list[str] = []
        mql_params: list[str] = []
        args: list[str] = []
        for kind, name in imp.params:
            if kind == "string":
                c_params.append("const char16_t*")
                mql_params.append(f"const string &{name}")
                args.append(f"{name}.c16()")
            elif kind == "ushort[]":
                c_params.append("char16_t*")
                mql_params.append(f"MqlArray<ushort> &{name}")
                args.append(f"reinterpret_cast<char16_t*>({name}.data())")
            elif kind == "uchar[]":
                c_params.append("unsigned char*")
                mql_params.append(f"MqlArray<uchar> &{name}")
                args.append(f"{name}.data()")
            else:
                c_params.append(_C_TYPES[kind])
                mql_params.append(f"{kind} {name}")
                args.append(name)
        ret = _C_TYPES[imp.ret]
        fn = f"mqlrt_import_{imp.name}"
        out.append(f"static {ret} (*{fn})({', '.join(c_params)}) = nullptr;")
        out.append(
            f'static mqlrt::ImportSlot mqlrt_slot_{imp.name}("{imp.library}", "{imp.name}", '
            f"reinterpret_cast<void**>(&{fn}));"
        )
        call = f"{fn}({', '.join(args)})"
        body = f"{call};" if ret == "void" else f"return {call};"
        out.append(f"{imp.ret} {imp.name}({', '.join(mql_params)}) {{ {body} }}")
    return "\n".join(out) + "\n"


def _string_literals(text: str) -> str:
    """``"text"`` → ``string("text")`` outside preprocessor includes: MQL5's literals are strings, so
    ``"a" + "b"`` and ``"a" + MACRO`` concatenate, which C++'s ``const char*`` do not."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif text[i] == "'":
            j = i + 1
            while j < n and text[j] != "'":
                j += 2 if text[j] == "\\" else 1
            j += 1
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            while True:  # adjacent literals are one: "a" "b"
                k = j
                while k < n and text[k] in " \t\r\n":
                    k += 1
                if k >= n or text[k] != '"':
                    break
                j = k + 1
                while j < n and text[j] != '"':
                    j += 2 if text[j] == "\\" else 1
                j += 1
            line_start = text.rfind("\n", 0, i) + 1
            if not re.match(r"\s*#\s*(include|line)\b", text[line_start:i]):
                out.append(f"string({text[i:j]})")
                i = j
                continue
        else:
            j = i + 1
        out.append(text[i:j])
        i = j
    return "".join(out)


def transform_file(path: str, text: str, program: Program, ptrs: _Pointers) -> str:
    if not text.isascii():
        raise TransformError(f"{path}: the sources must be ASCII")
    text = re.sub(r"^\s*#property\b.*$", "", text, flags=re.M)
    text = _INCLUDE.sub(lambda m: f'#include "{m.group(2).replace(chr(92), "/")}"', text)
    text = _imports(path, text, program)

    def input_(m: re.Match[str]) -> str:
        program.inputs.append(Input(m.group(2), m.group(3)))
        return f"{m.group(1)}{m.group(2)} {m.group(3)} {m.group(4) or ''};"

    text = _INPUT.sub(input_, text)
    blanked = blank(text)
    m = re.search(rf"\b{IDENT}\s+{IDENT}\s*\[[^\]]*\]\s*\[", blanked)
    if m is not None:
        raise TransformError(f"{_line(path, text, m.start())}: multi-dimensional arrays are not supported yet")
    for h in HANDLERS:
        if re.search(rf"^\s*\w+\s+{h}\s*\(", blanked, re.M):
            program.handlers.add(h)
    text = _arrows(text, blanked, ptrs)
    blanked = blank(text)
    text = _new_delete(text, blanked)
    text = _arrays(text)
    text = _string_literals(text)
    return f'#line 1 "{path}"\n' + text


def transform(expert: Path, include_root: Path) -> Program:
    """Translate ``expert`` and every file it includes from ``include_root`` (``mql5/Include``)."""
    program = Program()
    sources: dict[str, str] = {}
    pending = [(expert.name, expert)]
    while pending:
        rel, path = pending.pop()
        if rel in sources:
            continue
        text = path.read_text()
        sources[rel] = text
        for m in _INCLUDE.finditer(blank(text, keep_strings=True)):
            target = m.group(2).replace("\\", "/")
            if target.startswith("Trade/"):
                continue  # the runtime's standard library
            base = include_root if m.group(1) == "<" else path.parent
            found = base / target
            if not found.exists():
                raise TransformError(f"{rel}: cannot find the include {target!r}")
            key = str(found.relative_to(include_root)) if found.is_relative_to(include_root) else found.name
            pending.append((key, found))
    ptrs = _Pointers()
    for rel, text in sources.items():
        ptrs.scan(rel, blank(text))
    ptrs.check()
    for rel, text in sources.items():
        program.files[rel] = transform_file(rel, text, program, ptrs)
    return program


def main_unit(program: Program, expert_rel: str) -> str:
    """The translation unit: the runtime, the EA, the import wrappers, the inputs table and the handlers."""
    lines = ["#include <mql5rt.hpp>", f'#include "{expert_rel}"', "", '#line 1 "<harness>"']
    lines.append("void mqlrt_register_inputs() {")
    for inp in program.inputs:
        lines.append(f'  mqlrt::register_input("{inp.name}", "{inp.type}", {inp.name});')
    lines.append("}")
    lines.append("static mqlrt::Handlers mqlrt_handlers() {")
    lines.append("  mqlrt::Handlers h;")
    for name in sorted(program.handlers):
        lines.append(f"  h.{name} = &{name};")
    lines.append("  h.register_inputs = &mqlrt_register_inputs;")
    lines.append("  return h;")
    lines.append("}")
    lines.append("int main(int argc, char **argv) { return mqlrt::run(argc, argv, mqlrt_handlers()); }")
    return "\n".join(lines) + "\n"
