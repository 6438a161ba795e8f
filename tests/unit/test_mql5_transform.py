"""The MQL5 → C++ source transform: each rule on a small source, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgebridge.sim.ea import transform
from hedgebridge.sim.ea.transform import TransformError


def translate(tmp_path: Path, source: str, includes: dict[str, str] | None = None) -> transform.Program:
    expert = tmp_path / "Experts" / "E.mq5"
    expert.parent.mkdir(parents=True, exist_ok=True)
    expert.write_text(source)
    for rel, text in (includes or {}).items():
        path = tmp_path / "Include" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return transform.transform(expert, tmp_path / "Include")


def body(program: transform.Program, name: str = "E.mq5") -> str:
    return program.files[name].split("\n", 1)[1]


def test_pointer_member_access_becomes_an_arrow(tmp_path: Path) -> None:
    src = """class CNode { public: CNode *m_next; int m_v; CNode *Next(void) { return(m_next); } };
CNode *g_items[];
void F(CNode *p, CNode &o) { p.m_v = 1; p.m_next.m_v = 2; g_items[0].m_v = 3; p.Next().m_v = 4; o.m_v = 5;
  this_is_not.x = 6; }"""
    out = body(translate(tmp_path, src))
    assert "p->m_v = 1;" in out
    assert "p->m_next->m_v = 2;" in out
    assert "g_items[0]->m_v = 3;" in out
    assert "p->Next()->m_v = 4;" in out
    assert "o.m_v = 5;" in out  # an object (reference), not a pointer
    assert "this_is_not.x = 6;" in out


def test_a_name_that_is_a_pointer_and_an_object_is_refused(tmp_path: Path) -> None:
    src = "class CA { public: int v; };\nvoid F(void) { CA *a = NULL; }\nvoid G(void) { CA a; a.v = 1; }\n"
    with pytest.raises(TransformError, match=r"E.mq5:2: 'a' is declared as an object pointer here and as an object"):
        translate(tmp_path, src)


def test_arrays_become_mql_arrays(tmp_path: Path) -> None:
    src = (
        "string g_names[];\nint Count(const string &names[], double &out[]) { uchar key[4]; CX *items[]; return(0); }\n"
    )
    out = body(translate(tmp_path, src))
    assert "MqlArray<string> g_names;" in out
    assert "const MqlArray<string> &names, MqlArray<double> &out" in out
    assert "MqlArray<uchar> key{mqlrt::fixed, 4};" in out
    assert "MqlArray<CX*> items;" in out


def test_multi_dimensional_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TransformError, match=r"E\.mq5:2: multi-dimensional arrays are not supported yet"):
        translate(tmp_path, "int x;\ndouble grid[2][3];\n")


def test_string_literals_are_strings_and_adjacent_ones_are_one(tmp_path: Path) -> None:
    src = '#define GREETING "hello"\nstring s = "a" + GREETING;\nstring t = "x"\n   "y";\nushort c = \'"\';\n'
    out = body(translate(tmp_path, src))
    assert '#define GREETING string("hello")' in out
    assert 'string t = string("x"\n   "y");' in out  # the lines stay where they were
    assert "ushort c = '\"';" in out


def test_new_and_delete_go_through_the_registry(tmp_path: Path) -> None:
    out = body(translate(tmp_path, "void F(void) { CX *p = new CX(1, G(2)); delete p; }\n"))
    assert "CX *p = mqlrt::dynamic(new CX(1, G(2)));" in out
    assert "mqlrt::destroy(p);" in out


def test_inputs_properties_and_includes(tmp_path: Path) -> None:
    src = (
        '#property version "1.00"\n#include <Lib\\Util.mqh>\ninput int InpN = 3; // n\n'
        "sinput string InpS;\nint OnInit() { return(0); }\nvoid OnTimer() {}\n"
    )
    program = translate(tmp_path, src, {"Lib/Util.mqh": "int Util(void) { return(1); }\n"})
    out = body(program)
    assert "#property" not in out
    assert '#include "Lib/Util.mqh"' in out
    assert "int InpN = 3;" in out
    assert [(i.type, i.name) for i in program.inputs] == [("int", "InpN"), ("string", "InpS")]
    assert program.handlers == {"OnInit", "OnTimer"}
    assert "Lib/Util.mqh" in program.files
    unit = transform.main_unit(program, "E.mq5")
    assert 'mqlrt::register_input("InpN", "int", InpN);' in unit
    assert "h.OnTimer = &OnTimer;" in unit


def test_a_missing_include_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TransformError, match=r"cannot find the include 'Nowhere\.mqh'"):
        translate(tmp_path, '#include "Nowhere.mqh"\n')


def test_imports_become_bound_wrappers(tmp_path: Path) -> None:
    src = '#import "w.dll"\nint Send(string text);\nint Read(ushort &buf[], int size);\nvoid Stop(void);\n#import\n'
    program = translate(tmp_path, src)
    assert [(i.library, i.name, i.params) for i in program.imports] == [
        ("w.dll", "Send", (("string", "text"),)),
        ("w.dll", "Read", (("ushort[]", "buf"), ("int", "size"))),
        ("w.dll", "Stop", ()),
    ]
    out = body(program)
    assert out.count("\n") == src.count("\n")  # the wrappers take the block's lines
    assert "int Send(const string &text) { return mqlrt_import_Send(text.c16()); }" in out
    assert "reinterpret_cast<char16_t*>(buf.data())" in out


@pytest.mark.parametrize(
    ("decl", "message"),
    [
        ("int F(CObj &o);", "cannot marshal 'CObj'"),
        ("string F(void);", "cannot marshal the result type 'string'"),
        ("int F(int &count);", "cannot marshal the reference parameter 'int &count'"),
        ("int F(string &out);", "cannot marshal the reference parameter 'string &out'"),
    ],
)
def test_imports_it_cannot_marshal_are_refused(tmp_path: Path, decl: str, message: str) -> None:
    with pytest.raises(TransformError, match=message):
        translate(tmp_path, f'#import "w.dll"\n{decl}\n#import\n')


def test_sources_must_be_ascii(tmp_path: Path) -> None:
    with pytest.raises(TransformError, match="must be ASCII"):
        translate(tmp_path, 'string s = "caf\u00e9";\n')
