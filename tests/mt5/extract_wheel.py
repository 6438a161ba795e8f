"""Extract what the test double must agree with from a ``MetaTrader5`` wheel, as JSON on stdout.

    pip download MetaTrader5 --no-deps --only-binary=:all: --platform win_amd64 --python-version 3.11 -d /tmp/mt5
    python tests/mt5/extract_wheel.py /tmp/mt5/metatrader5-*.whl > tests/mt5/mt5_wheel.json

- ``constants``: the integer constants of ``MetaTrader5/__init__.py`` in the families the bridge and the test
  double use (read with ``ast``, nothing of the package is imported or run);
- ``types``: the named-tuple types the compiled ``_core`` module defines, and ``fields``: the field names in
  its string table (the block of identifiers after the message "Terminal: Call failed", each name once; the
  order of each type's fields is MetaQuotes' documentation, it is not recoverable from the binary).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile

FAMILIES = (
    "TRADE_RETCODE_",
    "TRADE_ACTION_",
    "ORDER_TYPE_",
    "ORDER_FILLING_",
    "ORDER_TIME_",
    "POSITION_TYPE_",
    "DEAL_ENTRY_",
    "DEAL_TYPE_BUY",
    "DEAL_TYPE_SELL",
    "DEAL_REASON_",
    "ACCOUNT_MARGIN_MODE_",
    "ACCOUNT_TRADE_MODE_",
    "RES_",
)
TYPES = ("TradePosition", "TradeOrder", "TradeDeal", "TradeRequest", "OrderSendResult", "OrderCheckResult",
         "Tick", "TerminalInfo", "SymbolInfo", "AccountInfo")  # fmt: skip


def _value(node: ast.expr) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_value(node.operand)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _value(node.left) | _value(node.right)
    raise ValueError(f"not an integer expression: {ast.dump(node)}")


def extract(wheel: str) -> dict[str, object]:
    with zipfile.ZipFile(wheel) as archive:
        source = archive.read("MetaTrader5/__init__.py").decode()
        core = next(n for n in archive.namelist() if n.startswith("MetaTrader5/_core"))
        binary = archive.read(core)
    version = ""
    constants: dict[str, int] = {}
    for statement in ast.parse(source).body:
        if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
            continue
        target = statement.targets[0]
        if not isinstance(target, ast.Name):
            continue
        if target.id == "__version__" and isinstance(statement.value, ast.Constant):
            version = str(statement.value.value)
        elif target.id.startswith(FAMILIES):
            constants[target.id] = _value(statement.value)
    start = binary.index(b"Terminal: Call failed")
    block = binary[start : binary.index(b"(Oi)", start)]
    words = {t.decode() for t in re.split(rb"\x00+", block) if re.fullmatch(rb"[a-z_][a-z0-9_]*", t)}
    names = {m.decode() for m in re.findall(rb"[A-Za-z]{4,20}", binary)}
    return {
        "package": "MetaTrader5",
        "version": version,
        "constants": dict(sorted(constants.items())),
        "types": [t for t in TYPES if t in names],
        "fields": sorted(words),
    }


def main() -> None:
    json.dump(extract(sys.argv[1]), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
